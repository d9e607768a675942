"""Training data: render + voxelize objects into a dataset folder (see docs/design.md).

Sources are synthetic objects (`recon.train.shapes`) or the user's mesh files; both go through
the same job: voxelize once, render V random views, write each file atomically, the voxel file
last so its presence marks a finished object and a re-run skips it. Torch-free.

This module runs the jobs and writes the manifest; one object is data_object.py, the folder's files
and reading them back data_files.py, contact sheets data_preview.py (all re-exported here).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Iterable

import numpy as np

from recon.runtime.errors import InputError, first_line
from recon.runtime.fileio import check_output_dir, remove_stale_temps, write_json_atomic
from recon.runtime.meshio import MESH_FORMATS
from recon.train.data_files import (FORMAT_VERSION, check_object_id, load_manifest, load_view, load_voxels, object_path,
                                    view_path)
from recon.train.data_object import ObjectJob, RenderSettings, _run_job, part_colors, random_background, random_light
from recon.train.data_preview import orientation_sheets, preview

# Also the names of data_files.py, data_object.py and data_preview.py that other modules import from here.
__all__ = ["FORMAT_VERSION", "TEST_FRACTION", "LOW_CONFIDENCE", "RenderSettings", "ObjectJob", "random_background",
           "part_colors", "random_light", "check_object_id", "view_path", "object_path", "splits", "prepare_output",
           "fingerprint", "run_jobs", "write_manifest", "synth_jobs", "synth", "find_meshes", "build_jobs", "build",
           "load_manifest", "load_view", "load_voxels", "preview", "orientation_sheets"]

TEST_FRACTION = 0.2  # the paper's 80/20 split, by object


# ---------------------------------------------------------------- the whole dataset


def splits(count: int, seed: int, category: str) -> list[str]:
    """'test' or 'train' for each of a category's `count` objects: a fixed TEST_FRACTION chosen by seed."""
    order = np.random.default_rng([seed, sum(map(ord, category))]).permutation(count)
    n_test = max(1, round(TEST_FRACTION * count)) if count > 1 else 0
    labels = ["train"] * count
    for index in order[:n_test]:
        labels[index] = "test"
    return labels


def prepare_output(out: Path, settings: RenderSettings | None = None, seed: int | None = None) -> Path:
    """Create the folder; refuse to resume into one made with other settings (mixed data)."""
    out = Path(out)
    previous = out / "manifest.json"
    if settings is not None and previous.is_file():
        try:
            old = json.loads(previous.read_text())
        except (OSError, ValueError) as error:
            raise InputError(f"{previous}: unreadable ({first_line(error)}); choose a new --out") from None
        if old.get("settings") != json.loads(json.dumps(dataclasses.asdict(settings))) or old.get("seed") != seed:
            raise InputError(f"{out}: holds a dataset made with other settings or seed; choose a new --out")
    check_output_dir(out, "", owned_by=("manifest.json", "views"))  # ours (also half-written): resumable
    for folder in (out / "views", out / "objects"):  # stale temporary files removed too
        check_output_dir(folder, "")
    return out


def fingerprint(manifest: dict) -> str:
    """A short hash of what defines the data (settings and objects), recorded with trained models."""
    content = {key: manifest[key] for key in ("format_version", "settings", "seed", "objects")}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def run_jobs(jobs: list[ObjectJob], settings: RenderSettings, out: Path, workers: int,
             progress=None) -> tuple[list[dict], list[dict]]:
    """Produce every job across `workers` processes; returns (entries in job order, failures)."""
    tasks = [(job, settings, out) for job in jobs]
    results = {}
    failures = []
    if workers <= 1:
        iterator = map(_run_job, tasks)
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_worker_setup, initargs=(os.getpid(),))
        iterator = pool.imap_unordered(_run_job, tasks)
    try:
        for job, entry, error in iterator:
            if error is None:
                results[job.object_id] = entry
            else:
                failures.append({"id": job.object_id, "source": job.mesh_path, "error": error})
            if progress is not None:
                progress(job, error)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
            for folder in ("views", "objects"):  # what workers stopped mid-write left behind
                remove_stale_temps(out / folder)
    entries = [results[job.object_id] for job in jobs if job.object_id in results]
    return entries, failures


def _worker_setup(parent: int) -> None:
    """In each worker process: Ctrl-C is the parent's to handle (it stops the pool; no traceback per
    worker), and the worker dies with its parent even when that is killed outright (Linux)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers end when the parent's pool is torn down
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def write_manifest(out: Path, kind: str, settings: RenderSettings, seed: int, categories: list[str],
                   entries: list[dict], failures: list[dict], extra: dict | None = None,
                   complete: bool = True) -> dict:
    """Written once before the jobs (complete: false, so a resume can check its settings) and after."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "settings": dataclasses.asdict(settings),
        "seed": seed,
        "image_size": settings.image_size,
        "voxel_res": settings.voxel_res,
        "views": settings.views,
        "categories": categories,
        "split": {"by": "object", "test_fraction": TEST_FRACTION},
        "complete": complete,
        **(extra or {}),
        "objects": entries,
        "failed": failures,
    }
    manifest["fingerprint"] = fingerprint(manifest)
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def synth_jobs(objects: int, categories: Iterable[str], seed: int) -> list[ObjectJob]:
    from recon.train.shapes import CATEGORIES

    jobs = []
    for category in categories:
        if category not in CATEGORIES:
            raise InputError(f"unknown category {category!r}; choose from {', '.join(CATEGORIES)}")
        for index, split in enumerate(splits(objects, seed, category)):
            jobs.append(ObjectJob(object_id=f"{category}_{index:05d}", category=category, split=split,
                                  seed=seed * 1_000_003 + index))
    return jobs


def synth(out: Path, objects: int, categories: list[str], seed: int, settings: RenderSettings,
          workers: int = 1, progress=None) -> dict:
    """`recon-cli data synth`: N procedural objects per category."""
    settings.validate()
    if objects <= 0:
        raise InputError(f"--objects must be positive, got {objects}")
    jobs = synth_jobs(objects, categories, seed)
    out = prepare_output(out, settings, seed)
    write_manifest(out, "synth", settings, seed, list(categories), [], [], complete=False)
    entries, failures = run_jobs(jobs, settings, out, workers, progress)
    return write_manifest(out, "synth", settings, seed, list(categories), entries, failures)


def find_meshes(meshes: Path) -> list[tuple[str, Path]]:
    """(category, path) for every `<category>/<name>.<mesh suffix>` under `meshes`."""
    meshes = Path(meshes)
    if not meshes.is_dir():
        raise InputError(f"{meshes}: meshes folder does not exist")
    found = sorted((path.parent.name, path) for path in meshes.glob("*/*")
                   if path.suffix.lower().lstrip(".") in MESH_FORMATS and path.is_file())
    if not found:
        raise InputError(f"{meshes}: no meshes found (expected <category>/<name>.{{{','.join(MESH_FORMATS)}}})")
    by_id: dict[str, list[Path]] = {}
    for category, path in found:  # object ids are <category>_<stem>: two files of one stem would be one object
        by_id.setdefault(f"{category}_{path.stem}", []).append(path)
    clashes = [paths for paths in by_id.values() if len(paths) > 1]
    if clashes:
        names = "; ".join(" and ".join(str(p) for p in paths) for paths in clashes[:3])
        raise InputError(f"{meshes}: {len(clashes)} name(s) used by two mesh files ({names}); each mesh becomes "
                         "the object <category>_<file name without suffix>: rename one of each pair")
    return found


def build_jobs(found: list[tuple[str, Path]], seed: int, up: str, auto_orient: bool = False,
               overrides: dict[str, int | None] | None = None) -> list[ObjectJob]:
    """One job per mesh, except meshes an override excludes (value None). The split is drawn over all
    meshes first, so excluding one never moves another between train and test."""
    overrides = overrides or {}
    by_category: dict[str, list[Path]] = {}
    for category, path in found:
        by_category.setdefault(category, []).append(path)
    jobs = []
    for category, paths in by_category.items():
        for index, (path, split) in enumerate(zip(paths, splits(len(paths), seed, category))):
            if path.name in overrides and overrides[path.name] is None:
                continue
            jobs.append(ObjectJob(object_id=f"{category}_{path.stem}", category=category, split=split,
                                  seed=seed * 1_000_003 + index, mesh_path=str(path), up=up,
                                  auto_orient=auto_orient, rotation=overrides.get(path.name)))
    return jobs


LOW_CONFIDENCE = 0.3  # auto-orientations below this are listed in the manifest for a person to check


def build(meshes: Path, out: Path, seed: int, settings: RenderSettings, up: str = "y",
          workers: int = 1, progress=None, auto_orient: bool = False, overrides: Path | None = None) -> dict:
    """`recon-cli data build`: the user's own meshes, normalised to the canonical frame; with
    auto_orient also turned into their category's canonical pose (overrides: name -> rotation file)."""
    settings.validate()
    if up not in ("y", "z"):
        raise InputError(f"--up must be 'y' or 'z', got {up!r}")
    found = find_meshes(meshes)
    chosen = None
    if auto_orient:
        from recon.train.orient import load_overrides
        from recon.train.shapes import CATEGORIES

        unknown = sorted({category for category, _ in found} - set(CATEGORIES))
        if unknown:
            raise InputError(f"--auto-orient knows {', '.join(CATEGORIES)}; {meshes} has {', '.join(unknown)}")
        chosen = load_overrides(overrides) if overrides else {}
    elif overrides:
        raise InputError("--overrides needs --auto-orient")
    jobs = build_jobs(found, seed, up, auto_orient, chosen)
    out = prepare_output(out, settings, seed)
    categories = sorted({job.category for job in jobs})
    extra = {"source": str(Path(meshes).resolve()), "up": up, "auto_orient": auto_orient,
             "excluded": sorted(name for name, rotation in (chosen or {}).items() if rotation is None)}
    write_manifest(out, "build", settings, seed, categories, [], [], extra, complete=False)
    entries, failures = run_jobs(jobs, settings, out, workers, progress)
    if auto_orient:
        extra["low_confidence"] = [{"id": e["id"], "source": e["source"], **e["orientation"]} for e in entries
                                   if e["orientation"]["confidence"] < LOW_CONFIDENCE]
    return write_manifest(out, "build", settings, seed, categories, entries, failures, extra)
