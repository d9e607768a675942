"""Training-time augmentation: cluttered scenes for the sketch net, sketch errors for the voxel net.

`cluttered_view` is `dataset.frame_view` for a view pasted into a cluttered room
(recon.train.clutter): half the time framed as the runtime's main pass frames a photo (the object
filling about `fill` of the crop), half the time as the framing pass sees a whole photo (the object
anywhere, at a quarter to most of the picture, sometimes cut by the frame edge), so one sketch net
serves both passes. `noisy_sketch` adds the kinds of error the sketch net makes (ragged silhouette
edges, noisy depth and normals) to ground-truth sketches, so the voxel net trained on them does not
rely on perfect input. `half_resolution` shows a batch as the runtime's framing pass sees a whole
picture: at half the side.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from recon.runtime.preprocess import Box, crop_image, crop_map, frame_box
from recon.train.clutter import compose, distractor, scene_box, soft_alpha


def cluttered_view(view: dict, image_size: int, fill: float, rng: np.random.Generator, others=()) -> dict:
    """A stored view as `frame_view` returns it, in a cluttered scene; `others`: views to put behind."""
    if rng.uniform() < 0.5:
        tight = frame_box(view["mask"], fill)
        jitter = rng.normal(0, 0.03, 3) * tight.side  # the framing pass's box is not exact
        box = Box(tight.top + jitter[0], tight.left + jitter[1], tight.side * (1 + jitter[2] / tight.side))
    else:
        box = scene_box(view["mask"], rng)
    mask = crop_map(view["mask"], box, image_size)
    depth = crop_map(view["depth"].astype(np.float32), box, image_size)
    rgb = compose(crop_image(view["rgb"], box, image_size), soft_alpha(view["mask"], box, image_size), rng,
                  [distractor(other, rng, image_size) for other in others])
    return {
        "rgb": rgb,
        "normals": crop_map(view["normals"].astype(np.float32), box, image_size),
        "depth": np.where(mask, depth - float(view["camera"][2]), 0.0).astype(np.float32),
        "mask": mask,
    }


def noisy_sketch(sketch: torch.Tensor, strength: float) -> torch.Tensor:
    """(B, 5, H, W) normals, depth, silhouette -> the same with sketch-net-like errors; `strength`
    scales them (1: about the sketch net's own depth and normal errors on test views)."""
    normals, depth, mask = sketch[:, :3], sketch[:, 3:4], sketch[:, 4:5]
    b = sketch.shape[0]
    # Silhouette: dilate or erode some samples by one pixel (edges the net gets a pixel wrong).
    grow = F.max_pool2d(mask, 3, stride=1, padding=1)
    shrink = -F.max_pool2d(-mask, 3, stride=1, padding=1)
    pick = torch.rand(b, 1, 1, 1, device=sketch.device)
    mask = torch.where(pick < 0.25, grow, torch.where(pick < 0.5, shrink, mask))
    # Depth and normals: smooth (coarse) plus fine noise.
    coarse = F.interpolate(torch.randn(b, 4, 8, 8, device=sketch.device), size=sketch.shape[-2:], mode="bilinear",
                           align_corners=False)
    depth = depth + strength * (0.03 * coarse[:, 3:] + 0.01 * torch.randn_like(depth))
    normals = F.normalize(normals + strength * (0.15 * coarse[:, :3] + 0.1 * torch.randn_like(normals)), dim=1)
    return torch.cat([normals, depth, mask], dim=1)


def half_resolution(batch: dict) -> dict:
    """A sketch batch at half the side: pictures area-averaged, per-pixel targets subsampled (no
    blending of object and background values)."""
    out = dict(batch)
    out["rgb"] = F.avg_pool2d(batch["rgb"], 2)
    for key in ("normals", "depth", "mask"):
        out[key] = batch[key][..., ::2, ::2]
    return out
