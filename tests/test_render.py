import math

import numpy as np
import pytest
import trimesh

from recon.runtime.camera import Camera, backproject, camera_pose
from recon.runtime.errors import InputError
from recon.runtime.render import render_preview, render_view, render_voxels

CAMERAS = [Camera(0, 0), Camera(90, 0), Camera(37, 25), Camera(-140, -50), Camera(10, 90), Camera(75, 10, 1.6, 60)]


@pytest.fixture(scope="module")
def sphere():
    return trimesh.creation.icosphere(subdivisions=4, radius=0.4)


class _NoEmbree:
    """Stands in for trimesh's ray intersector to force the pure-numpy path."""


def _check_maps(view, size):
    assert view["rgb"].shape == (size, size, 3) and view["rgb"].dtype == np.uint8
    assert view["normals"].shape == (size, size, 3) and view["normals"].dtype == np.float32
    assert view["depth"].shape == (size, size) and view["depth"].dtype == np.float32
    assert view["mask"].dtype == bool
    np.testing.assert_array_equal(view["mask"], view["depth"] > 0)
    mask = view["mask"]
    np.testing.assert_allclose(np.linalg.norm(view["normals"][mask], axis=1), 1.0, atol=1e-5)
    assert np.all(view["normals"][mask][:, 2] >= 0)  # facing the camera
    assert not view["normals"][~mask].any()
    assert np.all(view["rgb"][~mask] == 255)  # white background


@pytest.mark.parametrize("cam", CAMERAS, ids=str)
def test_sphere(sphere, cam):
    size = 65  # odd: the centre pixel looks exactly at the origin
    view = render_view(sphere, cam, size)
    _check_maps(view, size)
    assert view["depth"][32, 32] == pytest.approx(cam.distance - 0.4, abs=1e-2)
    np.testing.assert_allclose(view["normals"][32, 32], [0, 0, 1], atol=0.05)  # facets tilt up to ~0.04 rad
    points = backproject(view["depth"], cam)
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 0.4, atol=5e-3)
    # The silhouette of a sphere seen from distance d is a disc of angular radius asin(r / d).
    tan_half = math.tan(math.radians(cam.fov) / 2)
    radius_px = math.tan(math.asin(0.4 / cam.distance)) / tan_half * size / 2
    assert view["mask"].sum() == pytest.approx(math.pi * radius_px**2, rel=0.03)


def test_box_faces():
    box = trimesh.creation.box((0.5, 0.4, 0.3))
    for cam, world_normal, dist in [
        (Camera(0, 0), [0, 0, 1], 0.15),
        (Camera(90, 0), [1, 0, 0], 0.25),
        (Camera(180, 0), [0, 0, -1], 0.15),
        (Camera(0, 90), [0, 1, 0], 0.2),
    ]:
        view = render_view(box, cam, 33)
        n = view["normals"][16, 16]
        np.testing.assert_allclose(n, [0, 0, 1], atol=1e-6)  # the face seen head-on
        R, _ = camera_pose(cam)
        np.testing.assert_allclose(R.T @ n, world_normal, atol=1e-6)
        assert view["depth"][16, 16] == pytest.approx(2.2 - dist, abs=1e-5)


def test_up_is_up():
    # A post standing on a slab: from the front and slightly above, the post is in the upper half.
    slab = trimesh.creation.box((0.8, 0.1, 0.8))
    post = trimesh.creation.box((0.1, 0.6, 0.1))
    post.apply_translation([0, 0.35, 0])
    view = render_view(trimesh.util.concatenate([slab, post]), Camera(0, 10), 64)
    rows = np.nonzero(view["mask"][:, 32])[0]
    assert rows.min() < 20  # the post reaches far above the centre
    assert view["mask"][:, 20].any() and not view["mask"][:26, 20].any()  # beside the post, only the slab, lower down
    # Right is right: a marker at +x shows in the right half from az=0.
    marker = trimesh.creation.box((0.1, 0.1, 0.1))
    marker.apply_translation([0.4, 0, 0])
    cols = np.nonzero(render_view(marker, Camera(0, 0), 64)["mask"].any(axis=0))[0]
    assert cols.min() > 32


def test_shading_colors_and_background():
    box = trimesh.creation.box((0.5, 0.5, 0.5))
    cam = Camera(0, 0)
    colors = np.tile([1.0, 0.0, 0.0], (len(box.faces), 1))
    lit = render_view(box, cam, 33, face_colors=colors, light_dir=[0, 0, 1])["rgb"][16, 16]
    assert lit.tolist() == [255, 0, 0]  # full diffuse on the face looking at the light
    unlit = render_view(box, cam, 33, face_colors=colors, light_dir=[0, 0, -1], ambient=0.35)["rgb"][16, 16]
    assert unlit.tolist() == [round(0.35 * 255), 0, 0]  # ambient only
    grey = render_view(box, cam, 33)["rgb"]
    assert 100 < grey[16, 16, 0] < 255 and grey[16, 16, 0] == grey[16, 16, 1] == grey[16, 16, 2]
    background = np.zeros((33, 33, 3), dtype=np.uint8)
    background[..., 2] = 200
    view = render_view(box, cam, 33, background=background)
    assert np.all(view["rgb"][~view["mask"]] == [0, 0, 200])
    with pytest.raises(InputError, match="face_colors"):
        render_view(box, cam, 33, face_colors=np.ones((3, 3)))
    with pytest.raises(InputError, match="background"):
        render_view(box, cam, 33, background=np.zeros((8, 8, 3), dtype=np.uint8))


def test_empty_mesh_and_miss():
    empty = trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    view = render_view(empty, Camera(0, 0), 16)
    assert not view["mask"].any() and np.all(view["rgb"] == 255)
    far = trimesh.creation.box((0.1, 0.1, 0.1))
    far.apply_translation([0, 0, 5.0])  # behind the camera
    assert not render_view(far, Camera(0, 0), 16)["mask"].any()


@pytest.mark.parametrize("cam", [Camera(30, 20), Camera(0, 90), Camera(200, -40, 1.2, 60)], ids=str)
def test_numpy_ray_caster_matches_trimesh(cam):
    mesh = trimesh.util.concatenate([trimesh.creation.icosphere(3, radius=0.3), trimesh.creation.box((0.8, 0.2, 0.2))])
    reference = render_view(mesh, cam, 48)
    plain = mesh.copy()
    plain.ray = _NoEmbree()
    view = render_view(plain, cam, 48)
    _check_maps(view, 48)
    assert (view["mask"] != reference["mask"]).sum() <= 2
    both = view["mask"] & reference["mask"]
    np.testing.assert_allclose(view["depth"][both], reference["depth"][both], atol=1e-4)


def test_preview_and_voxels():
    box = trimesh.creation.box((0.6, 0.4, 0.3))
    sheet = render_preview(box, size=40)
    assert sheet.shape == (40, 120, 3) and sheet.dtype == np.uint8
    for k in range(3):
        tile = sheet[:, 40 * k: 40 * (k + 1)]
        assert np.all(tile[0, 0] == 255) and (tile < 250).any()
    assert render_preview(box, size=24, views=((0, 0),)).shape == (24, 24, 3)

    grid = np.zeros((16, 16, 16), dtype=bool)
    grid[4:12, 2:10, 6:10] = True
    image = render_voxels(grid, size=48)
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert np.all(image[0, 0] == 255) and (image < 250).any()
    assert np.all(render_voxels(np.zeros((8, 8, 8), dtype=bool), size=16) == 255)
    # A single voxel at the top of the grid shows in the upper part of the picture.
    top = np.zeros((8, 8, 8), dtype=bool)
    top[4, 7, 4] = True
    rows = np.nonzero((render_voxels(top, size=64, azimuth=0, elevation=0) < 250).any(axis=(1, 2)))[0]
    assert rows.max() < 24
