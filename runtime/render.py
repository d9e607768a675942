"""Ray-cast rendering of meshes (and voxel grids) into rgb, normals, depth and mask maps.

Rays go through every pixel centre (`recon.runtime.camera.pixel_rays`) and take their first hit
via trimesh's Embree intersector (`mesh.ray.intersects_first`, when embreex is installed) or, without
embreex, a vectorized numpy ray caster (trimesh's own fallback needs rtree). Shading and the normals
map use face normals; the normals map is in camera space, flipped to the z > 0 side
(docs/design.md), zeros on the background.
"""

from __future__ import annotations

import numpy as np
import trimesh

from recon.runtime.camera import Camera, camera_pose, pixel_rays
from recon.runtime.errors import InputError

__all__ = ["render_view", "render_preview", "render_voxels", "default_light", "voxel_boxes_mesh"]

_DEFAULT_COLOR = (0.8, 0.8, 0.8)
_VOXEL_COLOR = (0.62, 0.72, 0.86)


def default_light(camera) -> np.ndarray:
    """World-space unit vector towards the default light: above and in front, from the viewer's side.

    It follows the camera (up, slightly right, towards the eye) so every view is lit, whatever
    its azimuth.
    """
    R, _ = camera_pose(camera)
    right, up, back = R
    light = 0.35 * right + 0.75 * up + 0.55 * back
    return light / np.linalg.norm(light)


def _uses_embree(mesh) -> bool:
    return type(getattr(mesh, "ray", None)).__module__.endswith("ray_pyembree")


def _first_hits(mesh: trimesh.Trimesh, camera: Camera, size: int, origins: np.ndarray, directions: np.ndarray):
    """(locations (H,3), ray index (H,), triangle index (H,)) of the first hit of each pixel ray.

    With embreex installed this is trimesh's Embree intersector (`mesh.ray`); otherwise a vectorized
    numpy ray caster (`_first_hits_numpy`) shoots the same rays, since trimesh's own fallback
    intersector needs rtree, which the runtime does not depend on.
    """
    if not _uses_embree(mesh):
        return _first_hits_numpy(mesh, camera, size, directions)
    first = np.asarray(mesh.ray.intersects_first(origins, directions), dtype=np.int64)
    index_ray = np.flatnonzero(first >= 0)
    index_tri = first[index_ray]
    # Hit points in float64: where each ray meets the plane of the triangle Embree found.
    normal = np.asarray(mesh.face_normals, dtype=np.float64)[index_tri]
    corner = np.asarray(mesh.vertices, dtype=np.float64)[np.asarray(mesh.faces)[index_tri, 0]]
    d = directions[index_ray]
    o = origins[index_ray]
    denom = np.einsum("ij,ij->i", normal, d)
    t = np.einsum("ij,ij->i", normal, corner - o) / np.where(np.abs(denom) > 1e-12, denom, 1e-12)
    return o + t[:, None] * d, index_ray, index_tri


_PAIRS_PER_CHUNK = 2_000_000


def _first_hits_numpy(mesh: trimesh.Trimesh, camera: Camera, size: int, directions: np.ndarray):
    """Pure-numpy first hits of the pixel rays: each triangle is tested (Moller-Trumbore) only against
    the pixels inside its projected bounding box, and each pixel keeps its nearest hit."""
    R, eye = camera_pose(camera)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    tri = vertices[np.asarray(mesh.faces, dtype=np.int64)]  # (F,3,3)
    tan_half = np.tan(np.radians(camera.fov) / 2.0)
    cam = (tri - eye) @ R.T
    depth = -cam[..., 2]
    in_front = depth > 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        col = (cam[..., 0] / depth / tan_half + 1.0) * 0.5 * size - 0.5
        row = (1.0 - cam[..., 1] / depth / tan_half) * 0.5 * size - 0.5
    all_front = in_front.all(axis=1)
    # Pixel-centre ranges covered by each triangle's projection (whole image when it crosses the eye plane).
    r0 = np.where(all_front, np.ceil(row.min(axis=1, initial=np.inf, where=in_front)), 0)
    r1 = np.where(all_front, np.floor(row.max(axis=1, initial=-np.inf, where=in_front)), size - 1)
    c0 = np.where(all_front, np.ceil(col.min(axis=1, initial=np.inf, where=in_front)), 0)
    c1 = np.where(all_front, np.floor(col.max(axis=1, initial=-np.inf, where=in_front)), size - 1)
    r0, c0 = np.clip(r0, 0, size), np.clip(c0, 0, size)
    r1, c1 = np.clip(r1, -1, size - 1), np.clip(c1, -1, size - 1)
    visible = in_front.any(axis=1) & (r1 >= r0) & (c1 >= c0)
    ids = np.flatnonzero(visible)
    r0, r1, c0, c1 = (a[ids].astype(np.int64) for a in (r0, r1, c0, c1))
    height, width = r1 - r0 + 1, c1 - c0 + 1
    counts = height * width

    best_t = np.full(size * size, np.inf)
    best_tri = np.full(size * size, -1, dtype=np.int64)
    ends = np.cumsum(counts)
    start = 0
    while start < len(ids):
        stop = max(int(np.searchsorted(ends, ends[start] - counts[start] + _PAIRS_PER_CHUNK, side="right")), start + 1)
        n = counts[start:stop]
        owner = np.repeat(np.arange(start, stop), n)
        local = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        pixel = (r0[owner] + local // width[owner]) * size + c0[owner] + local % width[owner]
        face = ids[owner]
        t = _moller_trumbore(eye, directions[pixel], tri[face])
        hit = np.isfinite(t)
        pixel, face, t = pixel[hit], face[hit], t[hit]
        order = np.lexsort((t, pixel))
        first = np.ones(len(order), dtype=bool)
        first[1:] = pixel[order][1:] != pixel[order][:-1]
        sel = order[first]
        better = t[sel] < best_t[pixel[sel]]
        best_t[pixel[sel][better]] = t[sel][better]
        best_tri[pixel[sel][better]] = face[sel][better]
        start = stop
    index_ray = np.flatnonzero(best_tri >= 0)
    locations = eye + best_t[index_ray, None] * directions[index_ray]
    return locations, index_ray, best_tri[index_ray]


def _moller_trumbore(origin: np.ndarray, directions: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Ray parameter t of each (ray, triangle) pair's intersection, inf where they miss."""
    eps = 1e-12
    e1 = tri[:, 1] - tri[:, 0]
    e2 = tri[:, 2] - tri[:, 0]
    p = np.cross(directions, e2)
    det = np.einsum("ij,ij->i", e1, p)
    ok = np.abs(det) > eps
    inv = np.divide(1.0, det, out=np.zeros_like(det), where=ok)
    s = origin - tri[:, 0]
    u = np.einsum("ij,ij->i", s, p) * inv
    q = np.cross(s, e1)
    v = np.einsum("ij,ij->i", directions, q) * inv
    t = np.einsum("ij,ij->i", e2, q) * inv
    tol = 1e-9  # closes cracks along shared edges
    hit = ok & (u >= -tol) & (v >= -tol) & (u + v <= 1 + tol) & (t > 0)
    return np.where(hit, t, np.inf)


def render_view(mesh, camera, size, face_colors=None, light_dir=None, ambient=0.35, background=None) -> dict:
    """Render one view of a mesh.

    Returns a dict: rgb (S,S,3) uint8, normals (S,S,3) float32 (camera space, unit, z > 0 side,
    zeros on the background), depth (S,S) float32 (distance along the viewing axis, 0 on the
    background) and mask (S,S) bool (== depth > 0).

    face_colors: (F,3) floats in [0,1], one per face (default light grey). light_dir: world-space
    unit vector pointing towards the light (default `default_light(camera)`: above-front of the
    viewer). Shading is ambient + (1 - ambient) * max(0, n . light) with the face normal turned
    towards the viewer. background: (S,S,3) uint8 image behind the object, or None for white.
    """
    camera = camera if isinstance(camera, Camera) else Camera.from_array(camera)
    size = int(size)
    if size <= 0:
        raise InputError(f"size: must be a positive integer, got {size}")
    if background is None:
        rgb = np.full((size, size, 3), 255, dtype=np.uint8)
    else:
        background = np.asarray(background)
        if background.shape != (size, size, 3):
            raise InputError(f"background: expected shape {(size, size, 3)}, got {background.shape}")
        rgb = background.astype(np.uint8, copy=True)
    normals = np.zeros((size, size, 3), dtype=np.float32)
    depth = np.zeros((size, size), dtype=np.float32)
    n_faces = len(mesh.faces)
    if face_colors is not None:
        face_colors = np.asarray(face_colors, dtype=np.float64)
        if face_colors.shape != (n_faces, 3):
            raise InputError(f"face_colors: expected shape {(n_faces, 3)}, got {face_colors.shape}")
    if n_faces == 0:
        return {"rgb": rgb, "normals": normals, "depth": depth, "mask": depth > 0}

    R, eye = camera_pose(camera)
    origins, directions = pixel_rays(camera, size)
    locations, index_ray, index_tri = _first_hits(mesh, camera, size, origins, directions)

    # Depth: distance along the viewing axis (-z_cam) from the eye.
    z = -((locations - eye) @ R[2])
    keep = z > 0
    locations, index_ray, index_tri, z = locations[keep], index_ray[keep], index_tri[keep], z[keep]

    face_normals = np.asarray(mesh.face_normals, dtype=np.float64)[index_tri]
    # Shading normal: the side of the face the ray sees.
    towards_viewer = np.where((np.einsum("ij,ij->i", face_normals, directions[index_ray]) > 0)[:, None], -face_normals, face_normals)
    # Normals map: camera space, flipped to the z > 0 side (docs/design.md).
    n_cam = face_normals @ R.T
    n_cam = np.where((n_cam[:, 2] < 0)[:, None], -n_cam, n_cam)
    n_cam /= np.maximum(np.linalg.norm(n_cam, axis=1, keepdims=True), 1e-12)

    light = default_light(camera) if light_dir is None else np.asarray(light_dir, dtype=np.float64).reshape(3)
    light = light / max(np.linalg.norm(light), 1e-12)
    shade = ambient + (1.0 - ambient) * np.clip(towards_viewer @ light, 0.0, 1.0)
    base = np.broadcast_to(np.asarray(_DEFAULT_COLOR), (len(index_tri), 3)) if face_colors is None else face_colors[index_tri]
    color = np.clip(base * shade[:, None], 0.0, 1.0)

    rows, cols = np.divmod(index_ray, size)
    depth[rows, cols] = z
    normals[rows, cols] = n_cam
    rgb[rows, cols] = np.round(color * 255.0).astype(np.uint8)
    return {"rgb": rgb, "normals": normals, "depth": depth, "mask": depth > 0}


def render_preview(mesh, size=192, views=((30, 20), (120, 20), (-60, 35))) -> np.ndarray:
    """(size, size * len(views), 3) uint8: the shaded mesh from each (azimuth, elevation), side by side;
    in its vertex colours (recon.runtime.color) when it has them, else grey."""
    colors = None
    if getattr(mesh.visual, "kind", None) == "vertex" and len(mesh.faces):
        colors = np.asarray(mesh.visual.vertex_colors)[:, :3][mesh.faces].mean(axis=1) / 255.0  # (F, 3)
    tiles = [render_view(mesh, Camera(float(az), float(el)), size, face_colors=colors)["rgb"] for az, el in views]
    return np.concatenate(tiles, axis=1) if tiles else np.zeros((size, 0, 3), dtype=np.uint8)


# Exposed-face quads of a unit voxel: for each of the 6 directions (axis, sign), the 4 corners
# (offsets in voxel units from the voxel's min corner), ordered counter-clockwise seen from outside.
_QUADS = {
    (0, -1): [(0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0)],
    (0, +1): [(1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1)],
    (1, -1): [(0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)],
    (1, +1): [(0, 1, 0), (0, 1, 1), (1, 1, 1), (1, 1, 0)],
    (2, -1): [(0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 0)],
    (2, +1): [(0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)],
}


def voxel_boxes_mesh(voxels) -> trimesh.Trimesh:
    """The exposed faces of the occupied voxels of an (R,R,R) grid, in the canonical cube [-0.5, 0.5]^3."""
    occ = np.asarray(voxels)
    if occ.ndim != 3:
        raise InputError(f"voxels: expected a 3-D grid, got shape {occ.shape}")
    occ = occ > 0.5 if occ.dtype != bool else occ
    padded = np.pad(occ, 1)
    res = np.array(occ.shape, dtype=np.float64)
    vertices, faces = [], []
    count = 0
    for (axis, sign), corners in _QUADS.items():
        neighbour = np.roll(padded, -sign, axis=axis)[1:-1, 1:-1, 1:-1]
        idx = np.argwhere(occ & ~neighbour)
        if len(idx) == 0:
            continue
        quad = idx[:, None, :] + np.asarray(corners)[None]  # (Q, 4, 3) voxel-corner coordinates
        vertices.append((quad.reshape(-1, 3) / res) - 0.5)
        base = count + 4 * np.arange(len(idx))[:, None]
        faces.append(np.concatenate([base + [0, 1, 2], base + [0, 2, 3]], axis=0))
        count += 4 * len(idx)
    if not vertices:
        return trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), process=False)
    return trimesh.Trimesh(np.concatenate(vertices), np.concatenate(faces), process=False)


def render_voxels(voxels, size=128, azimuth=30, elevation=25) -> np.ndarray:
    """(S,S,3) uint8 picture of a voxel grid's occupied boxes (bool, or float > 0.5), for contact sheets."""
    mesh = voxel_boxes_mesh(voxels)
    colors = np.broadcast_to(np.asarray(_VOXEL_COLOR), (len(mesh.faces), 3))
    return render_view(mesh, Camera(float(azimuth), float(elevation)), size, face_colors=colors)["rgb"]
