"""Framing and normalisation shared by training and inference: one implementation for both.

Every image the networks see (training renders and user photos alike) is framed the same way:
a square crop centred on the object's silhouette box, sized so the box's longer side fills
`fill` of the crop, then resized to the network's input size. The runtime reads `fill`, the
input size and mean/std from the ONNX metadata written at export.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

DEFAULT_FILL = 0.8  # fraction of the crop the object's longer side covers


class Box(NamedTuple):
    """A square crop in pixel coordinates (may reach past the image; the outside is padded)."""

    top: float
    left: float
    side: float


def frame_box(mask: np.ndarray, fill: float = DEFAULT_FILL) -> Box | None:
    """The square crop that centres the silhouette and fills `fill` of it; None if mask is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = max(bottom - top, right - left) / fill
    return Box((top + bottom - side) / 2, (left + right - side) / 2, side)


def main_component(mask: np.ndarray, keep: float = 0.1, weights: np.ndarray | None = None) -> np.ndarray:
    """The largest connected region of a silhouette, plus the regions of at least `keep` of its area
    that overlap its bounding box (an object's parts that a coarse pass split apart); a cluttered
    picture's stray false positives and other objects beside it are dropped. weights: the area each
    pixel stands for (None: 1), so a small mask answers for its block-enlarged picture."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    areas = np.bincount(labels.ravel(), None if weights is None else weights.ravel())[1:]
    largest = int(np.argmax(areas)) + 1
    (rows, cols), = ndimage.find_objects((labels == largest).astype(np.int32))
    kept = {largest} | {int(i) for i in np.unique(labels[rows, cols]) if i and areas[i - 1] >= keep * areas.max()}
    return np.isin(labels, sorted(kept))


def _source_pixels(size: int, start: float, side: float, length: int) -> tuple[np.ndarray, int]:
    """Along one axis: the (S,) mask's pixel under each picture pixel that the box covers, and the first
    such picture pixel. The index only grows along the axis, so the covered pixels are one run."""
    index = np.floor((np.arange(length) + 0.5 - start) * size / side).astype(np.int64)
    first, end = np.searchsorted(index, [0, size])
    return index[first:end], int(first)


def to_picture(silhouette: np.ndarray, box: Box, height: int, width: int) -> np.ndarray:
    """An (S, S) mask over `box` -> (height, width) mask over the picture (nearest neighbour)."""
    size = silhouette.shape[0]
    (rows, top), (cols, left) = (_source_pixels(size, box.top, box.side, height),
                                 _source_pixels(size, box.left, box.side, width))
    mask = np.zeros((height, width), dtype=silhouette.dtype)
    mask[top:top + rows.size, left:left + cols.size] = silhouette[rows][:, cols]  # two 1-D gathers
    return mask


def picture_component(silhouette: np.ndarray, box: Box, height: int, width: int) -> np.ndarray:
    """main_component(to_picture(...)), labelled at the silhouette's resolution, not the picture's.

    The picture mask is the mask's rows and columns that the picture shows, each repeated over the
    picture pixels it covers: regions, their raster order and their bounding boxes carry over block
    by block, and a pixel's area is its block's (the weights). Same mask, a fraction of the pixels."""
    size = silhouette.shape[0]
    (rows, _), (cols, _) = (_source_pixels(size, box.top, box.side, height),
                            _source_pixels(size, box.left, box.side, width))
    (rows, row_counts), (cols, col_counts) = (np.unique(rows, return_counts=True),
                                              np.unique(cols, return_counts=True))
    kept = np.zeros_like(silhouette)
    shown = np.ix_(rows, cols)
    kept[shown] = main_component(silhouette[shown], weights=np.outer(row_counts, col_counts))
    return to_picture(kept, box, height, width)


def box_iou(a: Box | None, b: Box | None) -> float:
    """Intersection over union of two square crops (0 when either is missing)."""
    if a is None or b is None:
        return 0.0
    top, left = max(a.top, b.top), max(a.left, b.left)
    bottom, right = min(a.top + a.side, b.top + b.side), min(a.left + a.side, b.left + b.side)
    inter = max(0.0, bottom - top) * max(0.0, right - left)
    return inter / (a.side ** 2 + b.side ** 2 - inter)


def whole_image_box(height: int, width: int) -> Box:
    """The centred square over a whole image (used when there is no silhouette yet)."""
    side = max(height, width)
    return Box((height - side) / 2, (width - side) / 2, side)


# The padded canvas may hold this many times (picture + output) pixels, and at most CANVAS_MAX_PIXELS,
# before the picture is shrunk first: every ordinary photo (up to ~16:1) and training view stays exact.
CANVAS_BUDGET, CANVAS_MAX_PIXELS = 16, 1 << 26


def crop_image(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Anti-aliased crop + resize of an (H, W, C) uint8 picture; outside pixels repeat the edge.

    The picture is padded to cover the box, then resized. Where that canvas would dwarf the picture
    (a 100000x16 strip's box is 100000 px square: 28 GiB), the picture and box are first shrunk by an
    integer factor (Pillow's box-filter reduce) so the canvas is about (2 x size)^2: memory follows the
    picture and the crop, never the box's side squared. Ordinary pictures take the exact path."""
    height, width = image.shape[:2]
    canvas = ((max(height, box.top + box.side) - min(0.0, box.top))
              * (max(width, box.left + box.side) - min(0.0, box.left)))
    factor = int(box.side // (2 * size))
    if canvas > min(CANVAS_BUDGET * (height * width + size * size), CANVAS_MAX_PIXELS) and factor >= 2:
        image = np.asarray(Image.fromarray(image).reduce(factor))
        box = Box(box.top / factor, box.left / factor, box.side / factor)
        height, width = image.shape[:2]
    pad_top = max(0, int(np.ceil(-box.top)))
    pad_left = max(0, int(np.ceil(-box.left)))
    pad_bottom = max(0, int(np.ceil(box.top + box.side - height)))
    pad_right = max(0, int(np.ceil(box.left + box.side - width)))
    padded = np.pad(image, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)), mode="edge")
    source = (box.left + pad_left, box.top + pad_top, box.left + pad_left + box.side, box.top + pad_top + box.side)
    resized = Image.fromarray(padded).resize((size, size), Image.BILINEAR, box=source)
    return np.array(resized)  # a writable copy: callers hand it to torch.from_numpy


def crop_map(values: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Nearest-neighbour crop + resize of a per-pixel map (normals, depth, mask): no blending
    of object and background values; outside pixels are zero."""
    height, width = values.shape[:2]
    centres = (np.arange(size) + 0.5) * box.side / size
    rows = np.floor(box.top + centres).astype(np.int64)
    cols = np.floor(box.left + centres).astype(np.int64)
    inside = (rows[:, None] >= 0) & (rows[:, None] < height) & (cols[None] >= 0) & (cols[None] < width)
    out = values[rows.clip(0, height - 1)[:, None], cols.clip(0, width - 1)[None]]
    out[~inside] = 0
    return out


def frame_view(view: dict, image_size: int, fill: float = DEFAULT_FILL) -> dict[str, np.ndarray]:
    """Crop a stored view around its silhouette and resize; depth becomes an offset from the object
    centre (depth - camera distance), the one depth meaning that survives re-framing."""
    box = frame_box(view["mask"], fill)
    if box is None:  # nothing visible: keep the whole picture
        box = frame_box(np.ones_like(view["mask"]), 1.0)
    mask = crop_map(view["mask"], box, image_size)
    depth = crop_map(view["depth"].astype(np.float32), box, image_size)
    depth = np.where(mask, depth - float(view["camera"][2]), 0.0).astype(np.float32)
    return {
        "rgb": crop_image(view["rgb"], box, image_size),  # (S, S, 3) uint8
        "normals": crop_map(view["normals"].astype(np.float32), box, image_size),  # (S, S, 3)
        "depth": depth,  # (S, S)
        "mask": mask,  # (S, S) bool
    }


def normalize_image(rgb: np.ndarray, mean, std) -> np.ndarray:
    """(B, H, W, 3) or (H, W, 3) uint8 -> float32 (B, 3, H, W) standardised channels."""
    batch = np.asarray(rgb, np.float32).reshape((-1, *rgb.shape[-3:])) / 255.0
    batch = (batch - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

