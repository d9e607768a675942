"""The pinhole camera of docs/design.md: orbit pose, pixel rays, back-projection and projection.

Conventions (docs/design.md, "Camera"): the camera looks at the origin from distance `d`,
`eye = d * (cos(el) sin(az), sin(el), cos(el) cos(az))`, up = +y; camera space is OpenGL's
(x right, y up, looking down -z); `fov` is the full vertical (= horizontal) field of view; pixel
(row r, column c) looks through its centre, row 0 at the top. Depth is the distance along the viewing
axis (camera-space -z), 0 on the background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from recon.runtime.errors import InputError

__all__ = ["Camera", "camera_pose", "pixel_rays", "backproject", "project"]


@dataclass(frozen=True)
class Camera:
    """An orbit camera looking at the origin; angles in degrees."""

    azimuth: float
    elevation: float
    distance: float = 2.2
    fov: float = 49.13

    def to_array(self) -> np.ndarray:
        """float32 [azimuth_deg, elevation_deg, distance, fov_deg], as stored per view."""
        return np.array([self.azimuth, self.elevation, self.distance, self.fov], dtype=np.float32)

    @classmethod
    def from_array(cls, a) -> "Camera":
        a = np.asarray(a, dtype=np.float64).reshape(-1)
        if a.shape != (4,) or not np.all(np.isfinite(a)):
            raise InputError(f"camera: expected 4 finite numbers [azimuth, elevation, distance, fov], got {a.tolist()}")
        return cls(float(a[0]), float(a[1]), float(a[2]), float(a[3]))


def _as_camera(camera) -> Camera:
    return camera if isinstance(camera, Camera) else Camera.from_array(camera)


def camera_pose(camera) -> tuple[np.ndarray, np.ndarray]:
    """(R, eye): R (3,3) the world->camera rotation and eye (3,), so x_cam = R @ (x_world - eye).

    The rows of R are the camera's right, up and backward (+z_cam, pointing from the origin to the
    eye) axes in world coordinates. The right axis (cos az, 0, -sin az) does not depend on the
    elevation, so the pose stays well defined when looking straight down or up.
    """
    camera = _as_camera(camera)
    az, el = math.radians(camera.azimuth), math.radians(camera.elevation)
    back = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    right = np.array([math.cos(az), 0.0, -math.sin(az)])
    up = np.cross(back, right)
    R = np.stack([right, up, back])
    return R, camera.distance * back


def _focal(camera: Camera) -> float:
    """tan(fov / 2): the image-plane half extent at unit distance."""
    return math.tan(math.radians(camera.fov) / 2.0)


def _pixel_plane(size: int, tan_half: float) -> tuple[np.ndarray, np.ndarray]:
    """Image-plane (x, y) at unit depth of every pixel centre, each (S, S)."""
    t = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0  # -1..1 left->right
    x = np.broadcast_to(t[None, :] * tan_half, (size, size))
    y = np.broadcast_to(-t[:, None] * tan_half, (size, size))  # row 0 is the top (+y)
    return x, y


def pixel_rays(camera, size) -> tuple[np.ndarray, np.ndarray]:
    """World-space ray origins (S*S, 3) and unit directions (S*S, 3) in row-major pixel order."""
    camera = _as_camera(camera)
    size = int(size)
    R, eye = camera_pose(camera)
    t = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0  # -1..1 left->right
    t *= _focal(camera)
    # World direction of pixel (r, c): x_c * right + y_r * up - back (camera-space (x, y, -1)), normalized.
    row_part = (-t)[:, None] * R[1] - R[2]  # (S, 3): image y goes up as the row decreases
    col_part = t[:, None] * R[0]  # (S, 3)
    directions = (row_part[:, None, :] + col_part[None, :, :]).reshape(-1, 3)
    norm_sq = ((-t)[:, None] ** 2 + t[None, :] ** 2 + 1.0).reshape(-1, 1)
    directions /= np.sqrt(norm_sq)
    origins = np.empty_like(directions)
    origins[:] = eye
    return origins, directions


def backproject(depth, camera) -> np.ndarray:
    """(N, 3) world points of the pixels with depth > 0, in row-major pixel order."""
    camera = _as_camera(camera)
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2 or depth.shape[0] != depth.shape[1]:
        raise InputError(f"depth: expected a square (S, S) map, got shape {depth.shape}")
    R, eye = camera_pose(camera)
    x, y = _pixel_plane(depth.shape[0], _focal(camera))
    valid = depth > 0
    z = depth[valid]
    p_cam = np.stack([x[valid] * z, y[valid] * z, -z], axis=1)
    return p_cam @ R + eye


def project(points_world, camera, size) -> np.ndarray:
    """(N, 2) float (row, col) pixel coordinates of world points; integer values are pixel centres."""
    camera = _as_camera(camera)
    points = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
    R, eye = camera_pose(camera)
    p_cam = (points - eye) @ R.T
    depth = -p_cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = p_cam[:, 0] / depth / _focal(camera)
        y = p_cam[:, 1] / depth / _focal(camera)
    col = (x + 1.0) * 0.5 * size - 0.5
    row = (1.0 - y) * 0.5 * size - 0.5
    return np.stack([row, col], axis=1)
