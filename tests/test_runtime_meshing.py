"""Marching cubes and mesh numbers: closed, outward, in the canonical cube, with the right volume."""

from __future__ import annotations


import mcubes
import numpy as np
import pytest
import trimesh

from recon.runtime.errors import InputError
from recon.runtime.meshing import is_closed, marching_cubes, mesh_stats, voxel_to_world
from recon.runtime.meshio import MESH_WRITERS, load_mesh, save_mesh


def ball(res: int, radius: float, centre=(0.0, 0.0, 0.0), sharpness: float = 1.0) -> np.ndarray:
    """Occupancy probabilities of a ball in the canonical cube, a sigmoid across its surface."""
    c = voxel_to_world(np.arange(res), res)
    x, y, z = np.meshgrid(c - centre[0], c - centre[1], c - centre[2], indexing="ij")
    distance = np.sqrt(x ** 2 + y ** 2 + z ** 2)
    return (1.0 / (1.0 + np.exp((distance - radius) * res * sharpness))).astype(np.float32)


@pytest.mark.parametrize("res, radius", [(32, 0.3), (64, 0.45), (128, 0.35)])
def test_sphere_is_closed_with_the_right_volume(res, radius):
    mesh = marching_cubes(ball(res, radius), 0.5)
    stats = mesh_stats(mesh)
    assert stats["watertight"] and mesh.is_watertight and mesh.is_winding_consistent
    assert stats["volume"] == pytest.approx(4 / 3 * np.pi * radius ** 3, rel=0.02)
    assert stats["volume"] == pytest.approx(mesh.volume, rel=1e-9)  # outward faces: positive, trimesh agrees
    np.testing.assert_allclose(stats["bbox"], [[-radius] * 3, [radius] * 3], atol=1.0 / res)
    assert stats["faces"] == len(mesh.faces) and stats["vertices"] == len(mesh.vertices)


def test_same_surface_as_pymcubes():
    """The generated table cuts the same triangles as PyMCubes' classic one where nothing is ambiguous."""
    grid = ball(48, 0.37)
    ours = marching_cubes(grid, 0.5)
    vertices, faces = mcubes.marching_cubes(np.pad(grid, 1), 0.5)
    theirs = trimesh.Trimesh(voxel_to_world(vertices - 1, 48), faces, process=False)
    assert len(ours.faces) == len(theirs.faces)
    assert abs(ours.volume) == pytest.approx(abs(theirs.volume), rel=1e-3)


def test_random_grids_give_closed_oriented_manifolds():
    """Noise hits every case, ambiguous faces included: still closed, each edge twice, opposite ways."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        res = int(rng.integers(2, 10))
        mesh = marching_cubes(rng.random((res, res, res)), 0.5)
        if len(mesh.faces) == 0:
            continue
        assert is_closed(mesh.faces, len(mesh.vertices))
        assert mesh.is_watertight
        assert mesh_stats(mesh)["volume"] > 0


def test_grid_touching_the_border_is_closed_and_in_the_unit_cube():
    grid = np.ones((16, 16, 16), np.float32)
    mesh = marching_cubes(grid, 0.5)
    assert mesh.is_watertight
    lo, hi = mesh.bounds
    # The surface lies between the outermost voxel centres (+-0.5 - half a voxel) and the padding.
    assert np.all(lo >= -0.5 - 1 / 16) and np.all(hi <= 0.5 + 1 / 16)
    assert np.all(lo < -0.5 + 1 / 32) and np.all(hi > 0.5 - 1 / 32)


def test_axes_are_x_y_z_in_the_canonical_frame():
    """Voxel [i, j, k] is x, y, z: a blob at high j sits at +y (up)."""
    res = 32
    grid = np.zeros((res, res, res), np.float32)
    grid[4:8, 24:28, 14:18] = 1.0
    centre = marching_cubes(grid, 0.5).vertices.mean(axis=0)
    expected = voxel_to_world(np.array([5.5, 25.5, 15.5]), res)
    np.testing.assert_allclose(centre, expected, atol=0.02)


def test_single_voxel_is_centred_on_its_voxel():
    grid = np.zeros((8, 8, 8), np.float32)
    grid[2, 5, 7] = 1.0
    mesh = marching_cubes(grid, 0.5)
    assert mesh.is_watertight
    np.testing.assert_allclose(mesh.vertices.mean(axis=0), voxel_to_world(np.array([2, 5, 7]), 8), atol=1e-9)


def test_largest_only_drops_stray_blobs():
    grid = ball(48, 0.3)
    grid[2:5, 2:5, 2:5] = 1.0  # a floater in a corner
    both = marching_cubes(grid, 0.5)
    largest = marching_cubes(grid, 0.5, largest_only=True)
    assert len(both.split(only_watertight=False)) == 2
    assert len(largest.split(only_watertight=False)) == 1
    assert mesh_stats(largest)["volume"] == pytest.approx(4 / 3 * np.pi * 0.3 ** 3, rel=0.02)


def test_smoothing_keeps_the_mesh_closed_and_its_volume():
    grid = (ball(48, 0.35) > 0.5).astype(np.float32)  # blocky: what smoothing is for
    plain, smooth = marching_cubes(grid, 0.5), marching_cubes(grid, 0.5, smooth=10)
    assert smooth.is_watertight
    assert len(smooth.faces) == len(plain.faces)
    assert mesh_stats(smooth)["volume"] == pytest.approx(mesh_stats(plain)["volume"], rel=0.03)


def test_empty_grid_and_bad_arguments():
    empty = marching_cubes(np.zeros((16, 16, 16)), 0.5)
    assert len(empty.faces) == 0
    assert mesh_stats(empty) == {"volume": 0.0, "bbox": None, "vertices": 0, "faces": 0, "watertight": False}
    with pytest.raises(InputError, match="cubic"):
        marching_cubes(np.zeros((4, 4, 5)), 0.5)
    with pytest.raises(InputError, match="threshold"):
        marching_cubes(np.zeros((4, 4, 4)), 1.0)


@pytest.mark.parametrize("fmt", sorted(MESH_WRITERS))
def test_every_mesh_format_round_trips(tmp_path, fmt):
    mesh = marching_cubes(ball(32, 0.4), 0.5)
    path = tmp_path / f"ball.{fmt}"
    save_mesh(mesh, path)
    back = load_mesh(path)
    assert back.is_watertight
    assert back.volume == pytest.approx(mesh.volume, rel=1e-4)
    np.testing.assert_allclose(back.bounds, mesh.bounds, atol=1e-5)
