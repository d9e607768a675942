"""The dataset folder's files: where each object's views and voxels lie, and reading them back.

A dataset folder (docs/design.md) holds manifest.json, views/<id>_<view>.npz and objects/<id>.npz;
recon.train.data writes it, this module names and reads its files. Torch-free.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from recon.runtime.errors import InputError, first_line

FORMAT_VERSION = 1


def check_object_id(object_id) -> str:
    """An object id names files inside the dataset folder: a plain name, never a path (`../x`)."""
    if (not isinstance(object_id, str) or object_id in ("", ".", "..") or object_id.startswith(".")
            or any(c in object_id for c in "/\\\0") or Path(object_id).name != object_id):
        raise InputError(f"object id {object_id!r}: not a plain file name (the manifest may be damaged or "
                         "hand-edited); ids name files inside the dataset folder")
    return object_id


def view_path(root: Path, object_id: str, view: int) -> Path:
    return root / "views" / f"{check_object_id(object_id)}_{view:02d}.npz"


def object_path(root: Path, object_id: str) -> Path:
    return root / "objects" / f"{check_object_id(object_id)}.npz"


def load_manifest(root: Path) -> dict:
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise InputError(f"{root}: not a dataset folder (no manifest.json; make one with `recon-cli data synth`)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: unreadable manifest ({error})") from None
    if not manifest.get("complete", False):
        raise InputError(f"{root}: dataset is incomplete (generation was interrupted); re-run the same command to finish it")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: dataset format {manifest.get('format_version')!r}, "
                         f"this recon reads format {FORMAT_VERSION}")
    return manifest


VIEW_KEYS = ("rgb", "normals", "depth", "mask", "camera")


def _read_npz(path: Path, keys) -> dict[str, np.ndarray]:
    """The arrays `keys` of a dataset file; InputError naming the file when it is missing or damaged."""
    hint = "re-run the `recon-cli data` command that made the dataset, or remove the object from manifest.json"
    if not path.is_file():
        raise InputError(f"{path}: missing from the dataset ({hint})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in keys}
    except KeyError as error:
        raise InputError(f"{path}: damaged (no {error} array; {hint})") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(f"{path}: damaged ({first_line(error, 120)}; {hint})") from None


def load_view(root: Path, object_id: str, view: int) -> dict[str, np.ndarray]:
    return _read_npz(view_path(Path(root), object_id, view), VIEW_KEYS)


def load_voxels(root: Path, object_id: str) -> np.ndarray:
    return _read_npz(object_path(Path(root), object_id), ("voxels",))["voxels"]
