"""PyTorch view of a dataset folder: one item per (object, view) of a split.

Views are framed exactly as the runtime frames user photos (`recon.runtime.preprocess.frame_view`), then
resized to the preset's input size; voxels are max-pooled to the preset's resolution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from recon.runtime.errors import InputError
from recon.runtime.preprocess import DEFAULT_FILL, frame_view
from recon.runtime.voxels import downsample
from recon.train.data import load_manifest, load_view, load_voxels

SPLITS = ("train", "test", "all")


class ViewDataset(Dataset):
    def __init__(self, root: str | Path, split: str = "train", image_size: int = 128, voxel_res: int = 32,
                 categories: list[str] | None = None, fill: float = DEFAULT_FILL, cache: bool = False,
                 max_objects: int | None = None):
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        self.root = Path(root)
        self.manifest = load_manifest(self.root)
        if voxel_res > self.manifest["voxel_res"] or self.manifest["voxel_res"] % voxel_res:
            raise InputError(f"{root}: voxels are {self.manifest['voxel_res']}^3, cannot make {voxel_res}^3 "
                             "(needs an equal or larger grid divisible by it)")
        self.categories = list(self.manifest["categories"])
        objects = [entry for entry in self.manifest["objects"]
                   if split in ("all", entry["split"]) and (categories is None or entry["category"] in categories)]
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
        self.cache = {} if cache else None
        self._voxels: dict[int, np.ndarray] = {}  # small at training resolutions: always kept

    def __len__(self) -> int:
        return len(self.items)

    def voxels(self, object_index: int) -> np.ndarray:
        if object_index not in self._voxels:
            grid = load_voxels(self.root, self.objects[object_index]["id"])
            self._voxels[object_index] = downsample(grid, self.voxel_res)
        return self._voxels[object_index]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        object_index, view = self.items[index]
        entry = self.objects[object_index]
        framed = frame_view(load_view(self.root, entry["id"], view), self.image_size, self.fill)
        item = {
            "rgb": torch.from_numpy(framed["rgb"]).permute(2, 0, 1).float() / 255,  # (3, S, S) in [0, 1]
            "normals": torch.from_numpy(framed["normals"]).permute(2, 0, 1),  # (3, S, S)
            "depth": torch.from_numpy(framed["depth"])[None],  # (1, S, S)
            "mask": torch.from_numpy(framed["mask"])[None].float(),  # (1, S, S)
            "voxels": torch.from_numpy(self.voxels(object_index)).float(),  # (R, R, R)
            "category": torch.tensor(self.categories.index(entry["category"])),
        }
        if self.cache is not None:
            self.cache[index] = item
        return item


class ObjectVoxels(Dataset):
    """One item per object: its voxels only (the shape prior never sees images)."""

    def __init__(self, views: ViewDataset):
        self.views = views

    def __len__(self) -> int:
        return len(self.views.objects)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"voxels": torch.from_numpy(self.views.voxels(index)).float()}  # (R, R, R)
