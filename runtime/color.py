"""Vertex colours from the photo: find the view the networks implied, then look the vertices up in it.

The networks give a mesh in the canonical frame and a 2.5D sketch of the framed crop, but no camera.
The camera is found by render-and-compare at low resolution: the mesh's vertices are projected for
every candidate orbit camera of the training distribution (recon.train.data.RenderSettings: distance
2.2, fov 49.13, elevation -10..40, any azimuth), framed the way the crop was (their box placed on the
predicted silhouette's box), splatted into a small grid, and scored against the predicted silhouette
(IoU) and the predicted depth (mean absolute error of the nearest surface). The best coarse candidate
and the next two are refined on finer local grids. Depth matters: a left-right symmetric object looks the same
from azimuth a and 180 - a in silhouette; only the depth says which side is near.

With the camera, every vertex is projected into the crop (Result.image); a vertex whose depth is
within a voxel or two of the nearest surface at its pixel, inside the eroded silhouette, takes that
pixel's colour. The others take the colour of the seen vertex nearest to their mirror image across
x = 0 (objects are left-right symmetric in the canonical frame) when one is close, else of the seen
vertex nearest to them. benchmarks/bench_color.py measures the pose and colour errors and the cost.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from recon.runtime.camera import Camera
from recon.runtime.errors import InputError

__all__ = ["ViewFit", "find_view", "vertex_colors", "mesh_view", "paint", "UNSEEN_FILLS"]

SEARCH_GRID = 32  # splat resolution of the pose search (pixels per crop side)
SEARCH_POINTS = 600  # vertices projected per candidate camera (an even subsample of the mesh)
AZIMUTHS = np.arange(0.0, 360.0, 30.0)  # the coarse grid; any azimuth is possible
ELEVATIONS = np.array([-5.0, 15.0, 35.0])  # over the training renders' -10..40 (RenderSettings)
KEEP = 3  # coarse candidates refined
REFINEMENTS = 3  # local 3x3 grids around the best, each at half the previous step
DEPTH_WEIGHT = 1.0  # score = silhouette IoU - DEPTH_WEIGHT * mean |depth error| (unit-cube units)
VISIBLE_TOLERANCE = 0.06  # how far behind the nearest surface a vertex may be and still count as seen
MIRROR_REACH = 0.05  # a mirrored vertex takes the seen colour only if a seen vertex is this close
UNSEEN_FILLS = ("mirror", "nearest")


@dataclass
class ViewFit:
    """The camera that explains the crop best, and how well it does."""

    camera: Camera
    overlap: float  # F1 of the predicted silhouette and the mesh's, at SEARCH_GRID resolution
    depth_error: float  # mean |depth difference| where both show the object (unit-cube units)
    seen: float = 0.0  # fraction of vertices that took a pixel's colour directly


def _rotations(azimuths: np.ndarray, elevations: np.ndarray) -> np.ndarray:
    """(C, 3, 3) world->camera rotations (rows: right, up, back), as recon.runtime.camera.camera_pose."""
    az, el = np.radians(azimuths), np.radians(elevations)
    back = np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], axis=-1)
    right = np.stack([np.cos(az), np.zeros_like(az), -np.sin(az)], axis=-1)
    return np.stack([right, np.cross(back, right), back], axis=1)


def _target_box(silhouette: np.ndarray) -> tuple[float, float, float]:
    """(centre row, centre col, longer side) of the silhouette's box, in the crop's pixel edges."""
    rows = np.flatnonzero(silhouette.any(axis=1))
    cols = np.flatnonzero(silhouette.any(axis=0))
    if rows.size == 0:
        raise InputError("silhouette: empty, no view to fit")
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return (top + bottom) / 2, (left + right) / 2, float(max(bottom - top, right - left))


def _project(points: np.ndarray, rotations: np.ndarray, box, grid_scale: float, camera: Camera):
    """Pixel (row, col) in the crop and depth offset of each point for each camera: (C, N) arrays each.

    The points' projected box is placed on the target box (centre on centre, longer side on longer
    side), which is what framing did to the picture. Depth offset is depth minus camera distance, the
    sketch net's depth meaning.
    """
    count = len(rotations)
    rotated = (rotations.reshape(-1, 3) @ points.T).reshape(count, 3, -1)  # (C, 3, N) camera axes
    depth = camera.distance - rotated[:, 2]
    tan_half = math.tan(math.radians(camera.fov) / 2)
    x = rotated[:, 0] / depth / tan_half
    y = rotated[:, 1] / depth / tan_half
    x_lo, x_hi, y_lo, y_hi = x.min(1), x.max(1), y.min(1), y.max(1)
    scale = box[2] / np.maximum(np.maximum(x_hi - x_lo, y_hi - y_lo), 1e-9)  # crop pixels per image unit
    col = box[1] + (x - ((x_lo + x_hi) / 2)[:, None]) * scale[:, None]
    row = box[0] - (y - ((y_lo + y_hi) / 2)[:, None]) * scale[:, None]
    return row * grid_scale, col * grid_scale, depth - camera.distance


def _downsample(values: np.ndarray, grid: int) -> np.ndarray:
    """Block mean of an (S, S) map down to (grid, grid), for any S >= grid (blocks differ by a pixel at most)."""
    size = values.shape[0]
    if size < grid:
        raise InputError(f"sketch size {size} is smaller than the pose search grid {grid}")
    edges = np.arange(grid) * size // grid
    counts = np.diff(np.append(edges, size))
    sums = np.add.reduceat(np.add.reduceat(np.asarray(values, np.float64), edges, axis=0), edges, axis=1)
    return sums / (counts[:, None] * counts[None, :])


def _score(points, azimuths, elevations, box, target, target_any, target_depth, camera, depth_weight):
    """(score, overlap, depth error) per candidate camera, each (C,)."""
    grid = target.shape[0]
    row, col, offset = _project(points, _rotations(azimuths, elevations), box, grid / box[3], camera)
    r, c = np.floor(row).astype(np.int64), np.floor(col).astype(np.int64)
    inside = (r >= 0) & (r < grid) & (c >= 0) & (c < grid)
    cells = np.arange(len(azimuths))[:, None] * grid * grid + r * grid + c
    nearest = np.full(len(azimuths) * grid * grid, np.inf)
    np.minimum.at(nearest, cells[inside], offset[inside])
    nearest = nearest.reshape(-1, grid, grid)
    splat = np.isfinite(nearest)
    # F1 of the silhouettes: precision counts points (no holes to fear), recall counts covered cells.
    landed = np.where(inside, target_any.reshape(-1)[np.clip(r, 0, grid - 1) * grid + np.clip(c, 0, grid - 1)], False)
    precision = landed.mean(axis=1)
    recall = (splat & target[None]).sum(axis=(1, 2)) / max(int(target.sum()), 1)
    overlap = 2 * precision * recall / np.maximum(precision + recall, 1e-9)
    compared = splat & target[None]
    error = np.where(compared, np.abs(np.where(compared, nearest, 0) - target_depth[None]), 0).sum(axis=(1, 2))
    depth_error = error / np.maximum(compared.sum(axis=(1, 2)), 1)
    return overlap - depth_weight * depth_error, overlap, depth_error


def find_view(vertices: np.ndarray, silhouette: np.ndarray, depth: np.ndarray | None = None,
              camera: Camera = Camera(0.0, 0.0), depth_weight: float = DEPTH_WEIGHT) -> ViewFit:
    """The orbit camera (distance and fov of `camera`) under which the mesh's vertices best match the
    predicted (S, S) silhouette probabilities and depth offsets of the crop; depth None: silhouette only."""
    points = np.asarray(vertices, dtype=np.float32)
    if len(points) == 0:
        raise InputError("mesh: no vertices, no view to fit")
    points = points[:: max(1, len(points) // SEARCH_POINTS)]
    mask = np.asarray(silhouette) > 0.5
    box = (*_target_box(mask), mask.shape[0])
    coverage = _downsample(mask.astype(np.float32), SEARCH_GRID)
    target, target_any = coverage > 0.5, coverage > 0
    weight = depth_weight if depth is not None else 0.0
    target_depth = np.zeros(target.shape) if depth is None else (
        _downsample(np.where(mask, depth, 0), SEARCH_GRID) / np.maximum(coverage, 1e-6))
    az, el = (grid.ravel() for grid in np.meshgrid(AZIMUTHS, ELEVATIONS, indexing="ij"))
    step = np.array([AZIMUTHS[1] - AZIMUTHS[0], ELEVATIONS[1] - ELEVATIONS[0]]) / 2
    offsets = np.stack(np.meshgrid([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], indexing="ij"), axis=-1).reshape(-1, 2)
    score, overlap, error = _score(points, az, el, box, target, target_any, target_depth, camera, weight)
    starts = np.argsort(-score)[:KEEP]  # a few coarse winners: the right view may come second at 30 degrees
    candidates = [(score[i], az[i], el[i], overlap[i], error[i]) for i in starts]
    for _ in range(REFINEMENTS):
        around = np.concatenate([[a, e] + offsets * step for _, a, e, _, _ in candidates])
        score, overlap, error = _score(points, around[:, 0], around[:, 1], box, target, target_any, target_depth,
                                       camera, weight)
        best = int(np.argmax(score))
        candidates = [(score[best], around[best, 0], around[best, 1], overlap[best], error[best])]
        step = step / 2
    _, best_az, best_el, best_overlap, best_error = candidates[0]
    return ViewFit(Camera(float(best_az % 360), float(best_el), camera.distance, camera.fov), float(best_overlap),
                   float(best_error))


def _inside_eroded(mask: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Whether the pixel at each (row, col) and its 8 neighbours all show the object (no background
    blended into the colour); past the crop's edge the edge pixel stands in, which is an erosion whose
    outside counts as object. One erosion of the crop's mask, then one lookup per vertex, not nine."""
    from scipy import ndimage

    eroded = ndimage.binary_erosion(mask, np.ones((3, 3), dtype=bool), border_value=1)
    return eroded[row, col]


def _bilinear(image: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """(N, C) float colours of an (S, S, C) image at float pixel coordinates (integers = pixel centres)."""
    size = image.shape[0]
    row, col = np.clip(row, 0, size - 1), np.clip(col, 0, size - 1)
    r0, c0 = np.minimum(row.astype(np.int64), size - 2), np.minimum(col.astype(np.int64), size - 2)
    fr, fc = (row - r0)[:, None], (col - c0)[:, None]
    image = image.astype(np.float32)
    top = image[r0, c0] * (1 - fc) + image[r0, c0 + 1] * fc
    bottom = image[r0 + 1, c0] * (1 - fc) + image[r0 + 1, c0 + 1] * fc
    return top * (1 - fr) + bottom * fr


def _fill_unseen(points: np.ndarray, seen: np.ndarray, seen_colors: np.ndarray, hidden: np.ndarray,
                 unseen: str) -> np.ndarray:
    """(H, 3) colours of the hidden vertices from the seen ones (vertex_colors' `unseen`). The mirror
    lookup is bounded (cheap) and goes first, so the unbounded nearest-vertex search, the costly one
    (hidden vertices lie far behind the seen surface), runs only for the vertices it leaves."""
    tree = cKDTree(points[seen])
    filled = np.empty((hidden.size, 3), dtype=seen_colors.dtype)
    todo = np.ones(hidden.size, dtype=bool)
    if unseen == "mirror":
        mirrored = points[hidden] * np.array([-1.0, 1.0, 1.0])
        distance, mirror_seen = tree.query(mirrored, distance_upper_bound=MIRROR_REACH)
        close = np.isfinite(distance)
        filled[close] = seen_colors[mirror_seen[close]]
        todo = ~close
    _, nearest_seen = tree.query(points[hidden[todo]])
    filled[todo] = seen_colors[nearest_seen]
    return filled


def vertex_colors(vertices: np.ndarray, image: np.ndarray, silhouette: np.ndarray, depth: np.ndarray | None,
                  fit: ViewFit | None = None, unseen: str = "mirror") -> tuple[np.ndarray, ViewFit]:
    """((V, 4) uint8 RGBA per vertex, the view used) from the (S, S, 3) crop the networks saw.

    fit: a known view (None: find_view). unseen: how vertices the view does not show get a colour:
    "mirror" (the seen vertex nearest their mirror image across x = 0, else the nearest seen one) or
    "nearest" (the nearest seen vertex).
    """
    if unseen not in UNSEEN_FILLS:
        raise InputError(f"unseen: {unseen!r} not supported; valid: {', '.join(UNSEEN_FILLS)}")
    points = np.asarray(vertices, dtype=np.float64)
    mask = np.asarray(silhouette) > 0.5
    fit = fit or find_view(points, silhouette, depth)
    size = mask.shape[0]
    box = (*_target_box(mask), size)
    rotation = _rotations(np.array([fit.camera.azimuth]), np.array([fit.camera.elevation]))
    row, col, offset = (a[0] for a in _project(points, rotation, box, 1.0, fit.camera))
    row, col = row - 0.5, col - 0.5  # pixel edges -> pixel centres
    # The nearest surface per pixel of a coarse grid (vertices are too sparse to cover a fine one).
    grid = SEARCH_GRID
    cell_r = np.clip(((row + 0.5) * grid / size).astype(np.int64), 0, grid - 1)
    cell_c = np.clip(((col + 0.5) * grid / size).astype(np.int64), 0, grid - 1)
    nearest = np.full(grid * grid, np.inf)
    np.minimum.at(nearest, cell_r * grid + cell_c, offset)
    seen = offset <= nearest[cell_r * grid + cell_c] + VISIBLE_TOLERANCE
    pixel_r = np.clip(np.rint(row).astype(np.int64), 0, size - 1)
    pixel_c = np.clip(np.rint(col).astype(np.int64), 0, size - 1)
    seen &= _inside_eroded(mask, pixel_r, pixel_c)
    colors = np.full((len(points), 3), 200.0, dtype=np.float32)  # light grey when nothing is seen at all
    if seen.any():
        colors[seen] = _bilinear(image, row[seen], col[seen])
        hidden = np.flatnonzero(~seen)
        if hidden.size:
            colors[hidden] = _fill_unseen(points, seen, colors[seen], hidden, unseen)
    fit.seen = float(seen.mean()) if len(points) else 0.0
    rgba = np.empty((len(points), 4), dtype=np.uint8)
    rgba[:, :3] = np.clip(np.rint(colors), 0, 255)
    rgba[:, 3] = 255
    return rgba, fit


def mesh_view(result) -> ViewFit | None:
    """find_view of a Result's mesh against its sketch, or None when it has no mesh. The pipeline finds it
    once per picture: the confidence's evidence uses it, and `paint` reuses it."""
    if result.mesh is None or len(result.mesh.vertices) == 0 or result.sketch is None:
        return None
    return find_view(result.mesh.vertices, result.sketch["silhouette"], result.sketch["depth"])


def paint(result, unseen: str = "mirror", fit: ViewFit | None = None) -> None:
    """Give a Result's mesh vertex colours from its crop (result.view: the camera used; timings["color"]).
    fit: its mesh_view when already found (None: found here)."""
    if result.mesh is None or len(result.mesh.vertices) == 0 or result.sketch is None:
        return
    start = time.perf_counter()
    rgba, result.view = vertex_colors(result.mesh.vertices, result.image, result.sketch["silhouette"],
                                      result.sketch["depth"], fit=fit, unseen=unseen)
    result.mesh.visual.vertex_colors = rgba
    result.timings["color"] = (time.perf_counter() - start) * 1000.0
