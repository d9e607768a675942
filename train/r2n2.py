"""Reader for the 3D-R2N2 release of ShapeNet (ShapeNetRendering + ShapeNetVox32).

Converts it into a recon dataset folder so users who have ShapeNet can train and evaluate on it:
    ShapeNetRendering/<synset>/<model>/rendering/{00..23}.png + rendering_metadata.txt
    ShapeNetVox32/<synset>/<model>/model.binvox
The renderings carry no normals or depth: those are stored as zeros and the manifest says
`"sketch": false` (usable for the voxel, direct and evaluation stages, not the sketch stage).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from recon.runtime.camera import Camera
from recon.runtime.errors import InputError
from recon.runtime.fileio import save_npz_atomic
from recon.runtime.voxels import read_binvox
from recon.train.data import RenderSettings, object_path, prepare_output, splits, view_path, write_manifest

SYNSETS = {"03001627": "chair", "02958343": "car", "02691156": "airplane"}
R2N2_MAX_CAMERA_DISTANCE = 1.75  # rendering_metadata.txt stores distance as a fraction of this


def read_rendering_metadata(path: Path) -> list[Camera]:
    """One camera per line: azimuth, elevation, in-plane rotation, distance ratio, fov (degrees)."""
    cameras = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            azimuth, elevation, _, distance_ratio, fov = (float(v) for v in line.split()[:5])
            cameras.append(Camera(azimuth, elevation, distance_ratio * R2N2_MAX_CAMERA_DISTANCE, fov))
    return cameras


def load_rendering(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(rgb composited on white, mask from alpha), both resized to size x size."""
    image = Image.open(path).convert("RGBA").resize((size, size), Image.BILINEAR)
    rgba = np.asarray(image).astype(np.float32) / 255
    alpha = rgba[..., 3:]
    rgb = rgba[..., :3] * alpha + (1 - alpha)
    return (rgb * 255).round().astype(np.uint8), alpha[..., 0] > 0.5


def convert(renderings: Path, voxels: Path, out: Path, image_size: int = 128, seed: int = 0,
            categories: list[str] | None = None) -> dict:
    renderings, voxels = Path(renderings), Path(voxels)
    for folder in (renderings, voxels):
        if not folder.is_dir():
            raise InputError(f"{folder}: folder does not exist")
    wanted = {synset: name for synset, name in SYNSETS.items() if categories is None or name in categories}
    out = prepare_output(out)
    entries, failures = [], []
    voxel_res = None
    for synset, category in wanted.items():
        models = sorted(p.parent.name for p in (voxels / synset).glob("*/model.binvox"))
        for model, split in zip(models, splits(len(models), seed, category)):
            object_id = f"{category}_{model}"
            try:
                grid, _, _ = read_binvox(voxels / synset / model / "model.binvox")
                folder = renderings / synset / model / "rendering"
                cameras = read_rendering_metadata(folder / "rendering_metadata.txt")
                for view, camera in enumerate(cameras):
                    rgb, mask = load_rendering(folder / f"{view:02d}.png", image_size)
                    zeros = np.zeros(mask.shape, np.float16)
                    save_npz_atomic(view_path(out, object_id, view), rgb=rgb,
                                    normals=np.zeros((*mask.shape, 3), np.float16), depth=zeros,
                                    mask=mask, camera=camera.to_array())
            except (OSError, ValueError, InputError) as error:
                failures.append({"id": object_id, "source": f"{synset}/{model}", "error": str(error)})
                continue
            voxel_res = grid.shape[0]
            entry = {"id": object_id, "category": category, "views": len(cameras),
                     "split": split, "source": f"{synset}/{model}"}
            save_npz_atomic(object_path(out, object_id), voxels=grid, meta=np.array(json.dumps(entry)))
            entries.append(entry)
    if not entries:
        raise InputError(f"{voxels}: no <synset>/<model>/model.binvox for {', '.join(wanted) or 'no synset'}")
    settings = RenderSettings(views=max(e["views"] for e in entries), image_size=image_size,
                              voxel_res=voxel_res, distance=0.0, fov=25.0)
    return write_manifest(out, "r2n2", settings, seed, sorted({e["category"] for e in entries}),
                          entries, failures, extra={"sketch": False})
