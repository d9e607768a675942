"""model.json: what a model folder holds (every file's sha256 and size), its preprocessing metadata,
memory plan, and the training recipe / IoU it came with.

`verify_model_dir` is what the runtime calls before loading anything: it imports nothing but the
standard library (no torch, no onnx), so it can move to `recon.runtime` as is.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from recon.runtime.errors import ModelError

FORMAT = "recon-model"
FORMAT_VERSION = 1
MANIFEST = "model.json"
REQUIRED_FILES = ("sketch.onnx", "voxel.onnx")
# Files made at export that model.json does not list (it cannot list itself).
UNLISTED = {MANIFEST}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entries(folder: str | Path) -> dict:
    """{name: {"sha256", "bytes"}} for every plain file in `folder` except model.json (sorted by name)."""
    folder = Path(folder)
    return {path.name: {"sha256": sha256_file(path), "bytes": path.stat().st_size}
            for path in sorted(folder.iterdir()) if path.is_file() and path.name not in UNLISTED}


def read_json(path: str | Path, what: str = "file") -> dict:
    """A JSON object from `path`; ModelError naming it when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: {what} not found")
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelError(f"{path}: unreadable {what} ({type(error).__name__}: {str(error)[:120]})") from None
    if not isinstance(value, dict):
        raise ModelError(f"{path}: {what} is not a JSON object")
    return value


def build_manifest(folder: str | Path, metadata: dict, plan: dict | None = None, iou: dict | None = None,
                   recipe: dict | None = None, **extra) -> dict:
    """The model.json dict for the files now in `folder` (call after every other file is written)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "files": file_entries(folder),
        "metadata": dict(metadata),
        "plan": plan or {},
        "iou": iou or {},  # filled from RUN/eval.json when the run has one
        "recipe": recipe or {},  # filled from RUN/recipe.json when the run has one
        **extra,
    }


def verify_model_dir(path: str | Path) -> dict:
    """Check a model folder against its model.json; return the manifest dict.

    ModelError (one line, naming the file) for: a missing folder, a missing or unreadable model.json,
    another format or a newer format version, a required net not listed, a listed file missing, or a
    size / sha256 mismatch (a tampered or half-copied file).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found (make one with `recon-cli export --weights RUN --out "
                         f"{folder}`)")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ModelError(f"{folder}: not a model folder (no {MANIFEST}; export it again with `recon-cli export`)")
    manifest = read_json(manifest_path, MANIFEST)
    if manifest.get("format") != FORMAT:
        raise ModelError(f"{manifest_path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ModelError(f"{manifest_path}: format_version {version!r}; this recon reads version {FORMAT_VERSION} "
                         "(update recon or export the model again)")
    files = manifest.get("files")
    if not isinstance(files, dict) or not isinstance(manifest.get("metadata"), dict):
        raise ModelError(f"{manifest_path}: malformed (no files/metadata)")
    for required in REQUIRED_FILES:
        if required not in files:
            raise ModelError(f"{manifest_path}: does not list {required}")
    for name, entry in files.items():
        file = folder / name
        if Path(name).name != name or name in ("", ".", ".."):
            raise ModelError(f"{manifest_path}: bad file name {name!r}")
        if not file.is_file():
            raise ModelError(f"{file}: missing from the model folder (listed in {MANIFEST})")
        if not isinstance(entry, dict) or "sha256" not in entry or "bytes" not in entry:
            raise ModelError(f"{manifest_path}: entry for {name} lacks sha256/bytes")
        size = file.stat().st_size
        if size != entry["bytes"]:
            raise ModelError(f"{file}: {size} bytes, model.json says {entry['bytes']} (truncated or replaced; "
                             "export the model again)")
        if sha256_file(file) != entry["sha256"]:
            raise ModelError(f"{file}: sha256 does not match model.json (modified or corrupt; export the model again)")
    return manifest
