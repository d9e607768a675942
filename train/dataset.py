"""PyTorch view of a dataset folder: one item per (object, view) of a split.

Views are framed exactly as the runtime frames user photos (`recon.runtime.preprocess.frame_view`), then
resized to the preset's input size; voxels are max-pooled to the preset's resolution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from recon.runtime.preprocess import DEFAULT_FILL, frame_view
from recon.train.data import load_view
from recon.train.views import DatasetViews


class ViewDataset(DatasetViews, Dataset):
    """recon.train.views.DatasetViews (split, skipped objects, voxels) as tensors, one item per view."""

    def __init__(self, root: str | Path, split: str = "train", image_size: int = 128, voxel_res: int = 32,
                 categories: list[str] | None = None, fill: float = DEFAULT_FILL, cache: bool = False,
                 max_objects: int | None = None, clutter: float = 0.0):
        super().__init__(root, split, image_size, voxel_res, categories, fill, max_objects)
        self.clutter = clutter  # fraction of views pasted into cluttered scenes (recon.train.augment)
        self.cache = {} if cache else None

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        object_index, view = self.items[index]
        entry = self.objects[object_index]
        view_data = load_view(self.root, entry["id"], view)
        # Seeded from torch's generator, which the loop reseeds every epoch: resumes replay exactly.
        rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, ()))) if self.clutter else None
        if rng is not None and rng.uniform() < self.clutter:
            from recon.train.augment import cluttered_view

            others = [load_view(self.root, self.objects[i]["id"], int(rng.integers(self.objects[i]["views"])))
                      for i in rng.integers(len(self.objects), size=int(rng.integers(0, 3)))]
            framed = cluttered_view(view_data, self.image_size, self.fill, rng, others)
        else:
            framed = frame_view(view_data, self.image_size, self.fill)
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
