"""Writing model.json: what a model folder holds (every file's sha256 and size), its preprocessing
metadata, memory plan, and the training recipe / IoU it came with.

Reading and checking it is the runtime's job (`recon.runtime.model.verify_model_dir`, torch-free);
this module only writes what that function reads, with the same constants and hash.
"""

from __future__ import annotations

from pathlib import Path

from recon.runtime.model import FORMAT, FORMAT_VERSION, MANIFEST, sha256_file

# Files made at export that model.json does not list (it cannot list itself).
UNLISTED = {MANIFEST}


def file_entries(folder: str | Path) -> dict:
    """{name: {"sha256", "bytes"}} for every plain file in `folder` except model.json (sorted by name)."""
    folder = Path(folder)
    return {path.name: {"sha256": sha256_file(path), "bytes": path.stat().st_size}
            for path in sorted(folder.iterdir()) if path.is_file() and path.name not in UNLISTED}


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
