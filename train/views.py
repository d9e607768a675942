"""Which (object, view) pairs of a dataset split are used, torch-free: evaluating an ONNX model folder
needs no torch (`recon.train.dataset.ViewDataset` adds the tensors for training).

A damaged dataset: objects whose files are missing, or whose category the manifest does not list, are
skipped and listed in `skipped` (the CLI prints the count); a file that exists but does not decode stops
the run with one line naming it (`recon.train.data.load_view`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.runtime.errors import InputError
from recon.runtime.preprocess import DEFAULT_FILL
from recon.runtime.voxels import downsample
from recon.train.data import check_object_id, load_manifest, load_voxels, object_path, view_path

SPLITS = ("train", "test", "all")


def usable_objects(root: Path, manifest: dict, entries: list[dict]) -> tuple[list[dict], list[str]]:
    """The entries whose id, category and files are sound (one stat per file), and one line per other
    one. Objects with missing files or unknown categories are skipped (and counted) so one lost object
    does not stop a run; a file that exists but is damaged stops the run when it is read (load_view)."""
    categories = set(manifest.get("categories", []))
    kept, skipped = [], []
    for entry in entries:
        try:
            object_id = check_object_id(entry.get("id") if isinstance(entry, dict) else None)
            if entry.get("category") not in categories:
                raise InputError(f"{object_id}: unknown category {entry.get('category')!r} (manifest.json lists "
                                 f"{', '.join(sorted(categories))})")
            views = entry.get("views")
            if not isinstance(views, int) or views < 1:
                raise InputError(f"{object_id}: bad view count {views!r} in manifest.json")
            for path in [object_path(root, object_id)] + [view_path(root, object_id, v) for v in range(views)]:
                if not path.is_file():
                    raise InputError(f"{path}: missing")
        except InputError as error:
            skipped.append(str(error))
            continue
        kept.append(entry)
    return kept, skipped


class DatasetViews:
    """A split's usable objects (`skipped`: one line per object left out), its (object, view) items and
    the objects' voxels at `voxel_res`, cached."""

    def __init__(self, root: str | Path, split: str = "train", image_size: int = 128, voxel_res: int = 32,
                 categories: list[str] | None = None, fill: float = DEFAULT_FILL, max_objects: int | None = None):
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        if max_objects is not None and max_objects < 1:
            raise InputError(f"--max-objects {max_objects}: must be an integer >= 1 (leave it out for all objects)")
        self.root = Path(root)
        self.manifest = load_manifest(self.root)
        if voxel_res > self.manifest["voxel_res"] or self.manifest["voxel_res"] % voxel_res:
            raise InputError(f"{root}: voxels are {self.manifest['voxel_res']}^3, cannot make {voxel_res}^3 "
                             "(needs an equal or larger grid divisible by it)")
        self.categories = list(self.manifest["categories"])
        objects = [entry for entry in self.manifest["objects"] if isinstance(entry, dict)
                   and split in ("all", entry.get("split")) and (categories is None or entry.get("category") in categories)]
        objects, self.skipped = usable_objects(self.root, self.manifest, objects)
        if max_objects:  # the first N of each category, so quick runs still see every category
            seen: dict[str, int] = {}
            kept = []
            for entry in objects:
                seen[entry["category"]] = seen.get(entry["category"], 0) + 1
                if seen[entry["category"]] <= max_objects:
                    kept.append(entry)
            objects = kept
        self.objects = objects
        self.items = [(index, view) for index, entry in enumerate(self.objects) for view in range(entry["views"])]
        self.image_size, self.voxel_res, self.fill = image_size, voxel_res, fill
        self._voxels: dict[int, np.ndarray] = {}  # small at training resolutions: always kept

    def __len__(self) -> int:
        return len(self.items)

    def voxels(self, object_index: int) -> np.ndarray:
        if object_index not in self._voxels:
            grid = load_voxels(self.root, self.objects[object_index]["id"])
            self._voxels[object_index] = downsample(grid, self.voxel_res)
        return self._voxels[object_index]
