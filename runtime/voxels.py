"""Voxel grids over the canonical cube: solid voxelization, pooling, binvox files, IoU.

Grids are (R, R, R) arrays indexed [x, y, z] over [-0.5, 0.5]^3; voxel i has its centre at
-0.5 + (i + 0.5) / R (docs/design.md).
"""

from __future__ import annotations

import os

import numpy as np
import trimesh.triangles
from scipy import ndimage

from recon.runtime.errors import InputError
from recon.runtime.fileio import write_bytes_atomic

__all__ = ["voxel_centers", "surface_voxels", "voxelize_solid", "downsample", "read_binvox", "write_binvox", "iou"]

_BALL = ndimage.generate_binary_structure(3, 1)  # 6-connectivity
_CUBE = ndimage.generate_binary_structure(3, 3)  # 26-neighbourhood (3x3x3)


def voxel_centers(res) -> np.ndarray:
    """(res,) coordinates of the voxel centres along one axis of the canonical cube."""
    res = int(res)
    return -0.5 + (np.arange(res, dtype=np.float64) + 0.5) / res


def _check_res(res) -> int:
    try:
        value = int(res)
    except (TypeError, ValueError):
        raise InputError(f"res: expected a positive integer, got {res!r}") from None
    if value <= 0 or value != res:
        raise InputError(f"res: expected a positive integer, got {res!r}")
    return value


_BATCH = 2_000_000  # candidate points per batch: bounds the sampling memory


def ragged_indices(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For counts (n,), the owner index and the local index 0..count-1 of every one of sum(counts) items."""
    owner = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(int(counts.sum())) - starts[owner]


def _triangle_samples(tri: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Points on triangles (T,3,3): a square grid of pitch `spacing` in each triangle's plane (the
    grid points inside it) plus points every <= `spacing` along its three edges; and their triangle index."""
    # Frame: origin A, u along the longest edge AB, v perpendicular to it in the plane, towards C.
    sq = np.stack([((tri[:, (k + 1) % 3] - tri[:, k]) ** 2).sum(1) for k in range(3)], axis=1)
    k = sq.argmax(axis=1)
    rows = np.arange(len(tri))
    a, b, c = tri[rows, k], tri[rows, (k + 1) % 3], tri[rows, (k + 2) % 3]
    length = np.sqrt(sq[rows, k])
    u = np.divide(b - a, length[:, None], out=np.zeros_like(a), where=length[:, None] > 0)
    w = c - a
    cx = (w * u).sum(1)
    hv = w - cx[:, None] * u
    h = np.linalg.norm(hv, axis=1)
    v = np.divide(hv, h[:, None], out=np.zeros_like(a), where=h[:, None] > 0)
    nx = np.floor(length / spacing).astype(np.int64) + 1
    ny = np.floor(h / spacing).astype(np.int64) + 1
    owner, local = ragged_indices(nx * ny)
    x = (local // ny[owner]) * spacing
    y = (local % ny[owner]) * spacing
    hh = np.maximum(h[owner], 1e-300)
    inside = (h[owner] > 0) & (y <= h[owner]) & (x * hh >= cx[owner] * y) & ((x - length[owner]) * hh <= (cx[owner] - length[owner]) * y)
    owner, x, y = owner[inside], x[inside], y[inside]
    grid = a[owner] + x[:, None] * u[owner] + y[:, None] * v[owner]
    # Edges (including the corners).
    points, owners = [grid], [owner]
    for p, q in ((a, b), (b, c), (c, a)):
        m = np.maximum(np.ceil(np.linalg.norm(q - p, axis=1) / spacing), 1).astype(np.int64)
        e_owner, e_local = ragged_indices(m)
        t = (e_local / m[e_owner])[:, None]
        points.append(p[e_owner] + t * (q - p)[e_owner])
        owners.append(e_owner)
    return np.concatenate(points), np.concatenate(owners)


def _surface_samples(vertices: np.ndarray, faces: np.ndarray, spacing: float):
    """Yield (points (N,3), face index (N,)) batches covering every triangle: each point of a
    triangle lies within about `spacing` of a sample of that triangle (see _triangle_samples).

    The number of samples is about area / spacing^2 + perimeter / spacing, whatever the triangles' shapes.
    """
    tri = vertices[faces]  # (F, 3, 3)
    sq = np.stack([((tri[:, (k + 1) % 3] - tri[:, k]) ** 2).sum(1) for k in range(3)], axis=1)
    longest = np.sqrt(sq.max(axis=1))
    cost = (np.floor(longest / spacing) + 2) ** 2  # bound on the grid candidates of each triangle
    ends = np.cumsum(cost)
    start = 0
    while start < len(faces):
        stop = max(int(np.searchsorted(ends, ends[start] - cost[start] + _BATCH, side="right")), start + 1)
        points, owner = _triangle_samples(tri[start:stop], spacing)
        yield points, owner + start
        start = stop


def _voxel_index(points: np.ndarray, res: int) -> np.ndarray:
    """(N,3) voxel indices of points, clipped into the grid (points on or beyond the cube's faces land on the border)."""
    return np.clip(np.floor((points + 0.5) * res), 0, res - 1).astype(np.intp)


def _mesh_arrays(mesh) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(mesh.vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) and not np.all(np.isfinite(vertices)):
        raise InputError("mesh: vertices hold NaN or infinite values")
    return vertices, faces


def surface_voxels(mesh, res) -> np.ndarray:
    """(res,res,res) bool: the voxels of the canonical cube that the mesh surface passes through.

    Points outside the cube (including exactly on its boundary) are clipped onto the border voxels.
    """
    res = _check_res(res)
    vertices, faces = _mesh_arrays(mesh)
    grid = np.zeros((res, res, res), dtype=bool)
    for points, _ in _surface_samples(vertices, faces, 0.5 / res):
        idx = _voxel_index(points, res)
        grid[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return grid


def _fill(shell: np.ndarray) -> np.ndarray:
    """shell plus every voxel not reachable from outside the grid through 6-connected empty voxels."""
    return ndimage.binary_fill_holes(shell, structure=_BALL)


def _close_small_holes(shell: np.ndarray) -> np.ndarray:
    """Interior voxels that a fill of the 1-voxel dilated shell encloses (closes holes up to ~3 voxels wide).

    Only the core of that fill (enclosed voxels not part of the dilated shell) grown back by one
    voxel is returned, so gaps between separate parts (which the dilation also bridges) stay open.
    """
    pad = 2  # objects touching the border still get closed
    shell_p = np.pad(shell, pad)
    dilated = ndimage.binary_dilation(shell_p, structure=_CUBE)
    filled = _fill(dilated)
    core = filled & ~dilated
    if not core.any():
        return np.zeros_like(shell)
    grown = ndimage.binary_dilation(core, structure=_CUBE) & filled
    return grown[pad:-pad, pad:-pad, pad:-pad]


def voxelize_solid(mesh, res, surface: str = "touching") -> np.ndarray:
    """(res,res,res) bool solid occupancy, indexed [x, y, z] over the canonical cube, interior filled.

    surface "touching" (default, ShapeNet's binvox convention) keeps every voxel the surface passes
    through, so parts thinner than a voxel (wings, chair legs) survive at 32^3; "centre" keeps
    only voxels whose centre is inside (unbiased volume, step 3 below).

    1. Surface voxels: every voxel the surface passes through (triangles sampled at pitch/2).
    2. Fill: every voxel not reachable from outside the grid through 6-connected empty voxels, so
       unions of overlapping closed parts fill their union. Small holes of non-watertight meshes
       (up to ~3 voxels wide) are closed by also filling the 1-voxel dilated shell (see _close_small_holes).
    3. Surface voxels whose centre lies outside the surface are dropped, so the grid holds the
       voxels whose centres are inside (unbiased volume) rather than every voxel the surface
       touches. A surface sample votes for its face's outward side when, 1.5 voxels along the face
       normal, one side is exterior (after the fill) and the other is not. For each surface
       voxel, among the oriented faces passing through it, the one whose exact nearest point to
       the voxel centre is closest decides on which side of it the centre lies. Voxels without an
       oriented face (sheets and parts under ~1.5 voxels thick, internal faces, narrow gaps) are kept.

    Points outside the cube are clipped onto its border voxels.
    """
    res = _check_res(res)
    vertices, faces = _mesh_arrays(mesh)
    shell = np.zeros((res, res, res), dtype=bool)
    if len(faces) == 0:
        return shell
    batches = [(_voxel_index(points, res), points, face) for points, face in _surface_samples(vertices, faces, 0.5 / res)]
    for idx, _, _ in batches:
        shell[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    solid = _fill(shell) | _close_small_holes(shell)
    if surface == "touching":
        return solid
    if surface != "centre":
        raise InputError(f"surface must be 'touching' or 'centre', got {surface!r}")

    # 3. Trim the outer half of the surface layer.
    exterior = ~solid
    normal = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    normal = np.divide(normal, length, out=np.zeros_like(normal), where=length > 0)
    probe = 1.5 / res  # far enough along the normal to leave the (up to ~1.7 voxels thick) surface layer
    keys, votes = [], []
    for idx, points, face in batches:
        n = normal[face]
        plus = _voxel_index(points + n * probe, res)
        minus = _voxel_index(points - n * probe, res)
        orient = exterior[plus[:, 0], plus[:, 1], plus[:, 2]].astype(np.int8) - exterior[minus[:, 0], minus[:, 1], minus[:, 2]]
        known = orient != 0  # +1: the normal points outwards, -1: inwards, 0: unknown (no vote)
        keys.append(np.ravel_multi_index(idx[known].T, shell.shape).astype(np.int64) * len(faces) + face[known])
        votes.append(orient[known])
    keys, votes = np.concatenate(keys), np.concatenate(votes)
    # One (voxel, face) pair per voxel a face passes through, oriented by its samples' majority.
    pairs, inverse = np.unique(keys, return_inverse=True)
    side = np.sign(np.bincount(inverse.reshape(-1), weights=votes, minlength=len(pairs)))
    pairs, side = pairs[side != 0], side[side != 0]
    voxel, face = np.divmod(pairs, len(faces))
    centre = (np.stack(np.unravel_index(voxel, shell.shape), axis=1) + 0.5) / res - 0.5
    # The exact nearest point of each pair's triangle to the voxel centre: the nearest triangle decides.
    nearest = trimesh.triangles.closest_point(vertices[faces[face]], centre)
    dist = ((centre - nearest) ** 2).sum(axis=1)
    outside_pair = np.einsum("ij,ij->i", centre - nearest, normal[face]) * side > 0
    order = np.lexsort((dist, voxel))
    first = np.ones(len(order), dtype=bool)
    first[1:] = voxel[order][1:] != voxel[order][:-1]
    best = order[first]
    outside = voxel[best][outside_pair[best]]
    # Only voxels next to the exterior can have their centre outside (guards against internal faces of overlapping parts).
    near_exterior = ndimage.binary_dilation(exterior, structure=_CUBE, iterations=2)
    outside = outside[near_exterior.reshape(-1)[outside]]
    np.put(solid, outside, False)
    return solid


def downsample(voxels, res) -> np.ndarray:
    """Max-pool an (R,R,R) grid to (res,res,res); R must be a multiple of res."""
    voxels = np.asarray(voxels)
    res = _check_res(res)
    if voxels.ndim != 3 or len(set(voxels.shape)) != 1:
        raise InputError(f"voxels: expected a cubic (R,R,R) grid, got shape {voxels.shape}")
    big = voxels.shape[0]
    if big % res:
        raise InputError(f"res: {res} does not divide the grid size {big}; choose a divisor of {big}")
    f = big // res
    return voxels.reshape(res, f, res, f, res, f).max(axis=(1, 3, 5))


def read_binvox(path) -> tuple[np.ndarray, np.ndarray, float]:
    """(voxels [x,y,z] bool (D,D,D), translate (3,), scale) of a .binvox file.

    Voxel (i,j,k) has its centre at translate + scale * ((i,j,k) + 0.5) / D in the mesh's frame.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read binvox file ({exc.strerror or exc})") from None
    dims = translate = scale = None
    pos = 0
    first = True
    while True:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise InputError(f"{path}: not a binvox file (header has no 'data' line)")
        line = raw[pos:end].strip()
        pos = end + 1
        if first:
            if not line.startswith(b"#binvox"):
                raise InputError(f"{path}: not a binvox file (missing '#binvox' header)")
            first = False
            continue
        if not line or line.startswith(b"#"):
            continue
        key, *values = line.split()
        try:
            if key == b"dim":
                dims = [int(v) for v in values]
            elif key == b"translate":
                translate = np.array([float(v) for v in values], dtype=np.float64)
            elif key == b"scale":
                scale = float(values[0])
            elif key == b"data":
                break
        except (ValueError, IndexError):
            raise InputError(f"{path}: malformed binvox header line {line.decode(errors='replace')!r}") from None
    if dims is None or len(dims) != 3 or len(set(dims)) != 1 or dims[0] <= 0:
        raise InputError(f"{path}: binvox header needs 'dim D D D' with three equal positive sizes, got {dims}")
    if translate is None or translate.shape != (3,):
        translate = np.zeros(3)
    if scale is None:
        scale = 1.0
    d = dims[0]
    data = np.frombuffer(raw, dtype=np.uint8, offset=pos)
    if len(data) % 2:
        raise InputError(f"{path}: binvox data is truncated (odd number of run-length bytes)")
    values, counts = data[0::2], data[1::2].astype(np.int64)
    if counts.sum() != d ** 3:
        raise InputError(f"{path}: binvox data holds {int(counts.sum())} voxels, expected {d}^3 = {d ** 3}")
    flat = np.repeat(values > 0, counts)
    voxels = flat.reshape(d, d, d).transpose(0, 2, 1)  # stored [x, z, y] -> [x, y, z]
    return np.ascontiguousarray(voxels), translate, float(scale)


def _rle(flat: np.ndarray) -> bytes:
    """binvox run-length pairs (value, count <= 255) of a flat bool array."""
    flat = flat.astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [len(flat)]]))
    values = flat[starts]
    # Split runs longer than 255.
    pieces = (lengths + 254) // 255
    vals = np.repeat(values, pieces)
    counts = np.full(int(pieces.sum()), 255, dtype=np.int64)
    last = np.cumsum(pieces) - 1
    counts[last] = lengths - 255 * (pieces - 1)
    out = np.empty(2 * len(vals), dtype=np.uint8)
    out[0::2] = vals
    out[1::2] = counts
    return out.tobytes()


def write_binvox(path, voxels, translate=(-0.5, -0.5, -0.5), scale=1.0) -> None:
    """Write a cubic [x,y,z] grid as a .binvox file (atomically); the defaults map it onto the canonical cube."""
    voxels = np.asarray(voxels)
    if voxels.ndim != 3 or len(set(voxels.shape)) != 1 or voxels.shape[0] == 0:
        raise InputError(f"voxels: binvox needs a cubic (D,D,D) grid, got shape {voxels.shape}")
    occ = voxels if voxels.dtype == bool else voxels > 0.5
    translate = np.asarray(translate, dtype=np.float64).reshape(3)
    d = voxels.shape[0]
    header = (
        f"#binvox 1\ndim {d} {d} {d}\ntranslate {translate[0]:.9g} {translate[1]:.9g} {translate[2]:.9g}\n"
        f"scale {float(scale):.9g}\ndata\n"
    ).encode()
    write_bytes_atomic(path, header + _rle(occ.transpose(0, 2, 1).ravel()))


def iou(a, b) -> float:
    """Intersection over union of two occupancy grids (bool, or float thresholded at 0.5); 1.0 when both are empty."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise InputError(f"iou: grids have different shapes {a.shape} and {b.shape}")
    a = a if a.dtype == bool else a > 0.5
    b = b if b.dtype == bool else b > 0.5
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(a & b) / union)
