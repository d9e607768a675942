import math

import numpy as np
import pytest

from recon.runtime.camera import Camera, backproject, camera_pose, pixel_rays, project
from recon.runtime.errors import InputError


def test_array_round_trip():
    cam = Camera(12.5, -30.0, 1.75, 40.0)
    a = cam.to_array()
    assert a.dtype == np.float32 and a.shape == (4,)
    assert Camera.from_array(a) == cam
    assert Camera(10, 20).to_array().tolist() == pytest.approx([10, 20, 2.2, 49.13])
    with pytest.raises(InputError, match="camera"):
        Camera.from_array([1, 2, 3])
    with pytest.raises(InputError, match="camera"):
        Camera.from_array([1, 2, np.nan, 4])


@pytest.mark.parametrize(
    "az, el, eye",
    [
        (0, 0, (0, 0, 2.2)),
        (90, 0, (2.2, 0, 0)),
        (180, 0, (0, 0, -2.2)),
        (-90, 0, (-2.2, 0, 0)),
        (0, 90, (0, 2.2, 0)),
        (0, -90, (0, -2.2, 0)),
    ],
)
def test_eye_position(az, el, eye):
    _, e = camera_pose(Camera(az, el))
    np.testing.assert_allclose(e, eye, atol=1e-12)


def test_eye_formula_and_rotation():
    for az, el in [(33, 17), (-120, 45), (250, -60), (10, 90)]:
        cam = Camera(az, el, 3.0)
        R, eye = camera_pose(cam)
        a, b = math.radians(az), math.radians(el)
        np.testing.assert_allclose(eye, 3.0 * np.array([math.cos(b) * math.sin(a), math.sin(b), math.cos(b) * math.cos(a)]), atol=1e-12)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        # The origin is straight ahead (camera-space -z) at the camera distance.
        np.testing.assert_allclose(R @ (np.zeros(3) - eye), [0, 0, -3.0], atol=1e-12)


def test_axes_at_zero_azimuth():
    R, eye = camera_pose(Camera(0, 0))
    # x_cam = R (x - eye): world +x is camera right, world +y camera up, world +z towards the camera.
    np.testing.assert_allclose(R, np.eye(3), atol=1e-12)
    R, _ = camera_pose(Camera(90, 0))
    np.testing.assert_allclose(R @ [0, 0, -1], [1, 0, 0], atol=1e-12)  # looking from +x, -z is to the right
    R, _ = camera_pose(Camera(30, 40))
    assert (R @ [0, 1, 0])[1] > 0  # world up is up in the picture


def test_pixel_rays():
    cam = Camera(25, 15)
    size = 8
    origins, dirs = pixel_rays(cam, size)
    _, eye = camera_pose(cam)
    assert origins.shape == dirs.shape == (size * size, 3)
    np.testing.assert_allclose(origins, np.broadcast_to(eye, origins.shape))
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0)
    # The four centre pixels surround the direction to the origin.
    centre = dirs.reshape(size, size, 3)[3:5, 3:5].reshape(4, 3).mean(axis=0)
    np.testing.assert_allclose(centre / np.linalg.norm(centre), -eye / np.linalg.norm(eye), atol=1e-12)
    # Pixel (0, S-1) is the top-right corner: its camera-space direction goes right and up, at the
    # angle of the pixel centre (half a pixel inside the field of view).
    R, _ = camera_pose(cam)
    d = R @ dirs[size - 1]
    tan_half = math.tan(math.radians(cam.fov) / 2)
    expected = (1 - 1 / size) * tan_half
    assert d[2] < 0
    assert d[0] / -d[2] == pytest.approx(expected)
    assert d[1] / -d[2] == pytest.approx(expected)


def test_project_orientation():
    cam = Camera(0, 0)
    size = 64
    rc = project(np.array([[0, 0, 0], [0, 0.3, 0], [0.3, 0, 0]]), cam, size)
    np.testing.assert_allclose(rc[0], [31.5, 31.5])  # the origin is in the middle of the picture
    assert rc[1][0] < 31.5 and rc[1][1] == pytest.approx(31.5)  # +y is up (smaller row)
    assert rc[2][1] > 31.5 and rc[2][0] == pytest.approx(31.5)  # +x is right from az=0
    # A point at the top edge of the field of view projects onto the top edge of the image.
    half = math.tan(math.radians(cam.fov) / 2) * 2.2
    np.testing.assert_allclose(project([[0, half, 0]], cam, size), [[-0.5, 31.5]], atol=1e-9)


def test_backproject_project_round_trip():
    rng = np.random.default_rng(0)
    size = 16
    depth = rng.uniform(1.5, 3.0, (size, size)).astype(np.float32)
    depth[rng.random((size, size)) < 0.3] = 0
    for cam in [Camera(0, 0), Camera(47, -23, 2.5, 35), Camera(200, 70)]:
        points = backproject(depth, cam)
        rows, cols = np.nonzero(depth > 0)
        assert points.shape == (len(rows), 3)
        np.testing.assert_allclose(project(points, cam, size), np.stack([rows, cols], 1), atol=1e-6)
        # Depth is the distance along the viewing axis.
        R, eye = camera_pose(cam)
        np.testing.assert_allclose(-((points - eye) @ R[2]), depth[rows, cols], rtol=1e-6)
        # Points lie on the pixel rays.
        _, dirs = pixel_rays(cam, size)
        d = dirs[rows * size + cols]
        v = points - eye
        np.testing.assert_allclose(np.cross(v, d), 0, atol=1e-9)


def test_backproject_rejects_non_square():
    with pytest.raises(InputError, match="depth"):
        backproject(np.ones((4, 5)), Camera(0, 0))
