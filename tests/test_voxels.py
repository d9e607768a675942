import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy import ndimage

from recon.runtime.errors import InputError
from recon.runtime.voxels import (
    downsample,
    iou,
    read_binvox,
    surface_voxels,
    voxel_centers,
    voxelize_solid,
    write_binvox,
)

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "shapenet"
SHAPENET = [
    ("03001627", "362f53ee8de161fac653c0205ce8ff57"),  # chair
    ("02691156", "4de653411d132abdf1e2558bb9cfc329"),  # airplane
]


def _centres(res):
    c = voxel_centers(res)
    return np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1)


def _box_truth(res, lo, hi):
    p = _centres(res)
    return np.all((p > np.asarray(lo)) & (p < np.asarray(hi)), axis=-1)


def test_voxel_centers():
    np.testing.assert_allclose(voxel_centers(4), [-0.375, -0.125, 0.125, 0.375])
    assert voxel_centers(32)[0] == pytest.approx(-0.5 + 0.5 / 32)


def test_sphere_volume_and_interior():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.4)
    grid = voxelize_solid(sphere, 64, surface="centre")
    assert grid.shape == (64, 64, 64) and grid.dtype == bool
    fraction = grid.mean()
    assert fraction == pytest.approx(4 / 3 * math.pi * 0.4**3, rel=0.02)
    assert grid[32, 32, 32] and grid[20:44, 20:44, 20:44].all()  # interior filled
    assert not grid[0].any() and not grid[:, :, -1].any()
    truth = np.linalg.norm(_centres(64), axis=-1) < 0.4
    assert iou(grid, truth) > 0.98
    # Axis order [x, y, z]: an ellipsoid stretched along y is longest along axis 1.
    ellipsoid = sphere.copy()
    ellipsoid.apply_scale([0.5, 1.2, 0.8])
    g = voxelize_solid(ellipsoid, 32)
    extents = [np.ptp(np.nonzero(g.any(axis=tuple(a for a in range(3) if a != k)))[0]) for k in range(3)]
    assert extents[1] > extents[2] > extents[0]


def test_box_exact():
    box = trimesh.creation.box((0.6, 0.2, 0.45))
    box.apply_translation([0.05, -0.1, 0.02])
    grid = voxelize_solid(box, 32, surface="centre")
    truth = _box_truth(32, [-0.25, -0.2, -0.205], [0.35, 0.0, 0.245])
    assert iou(grid, truth) > 0.97


def test_overlapping_parts_fill_their_union():
    a = trimesh.creation.box((0.62, 0.22, 0.22))
    b = trimesh.creation.box((0.22, 0.62, 0.22))
    c = trimesh.creation.icosphere(3, radius=0.2)
    c.apply_translation([0.2, 0.2, 0.0])
    union = trimesh.util.concatenate([a, b, c])
    grid = voxelize_solid(union, 32, surface="centre")
    p = _centres(32)
    truth = _box_truth(32, [-0.31, -0.11, -0.11], [0.31, 0.11, 0.11]) | _box_truth(32, [-0.11, -0.31, -0.11], [0.11, 0.31, 0.11])
    truth |= np.linalg.norm(p - [0.2, 0.2, 0.0], axis=-1) < 0.2
    assert iou(grid, truth) > 0.95
    assert grid[16, 16, 16] and grid[6, 16, 16] and grid[16, 6, 16]  # overlap and each arm filled


def test_small_hole_is_closed():
    box = trimesh.creation.box((0.6, 0.6, 0.6))
    for _ in range(3):
        box = box.subdivide()  # each face: 8 x 8 squares 0.075 wide
    res = 40  # a square is 3 voxels wide
    centre = box.triangles_center
    # Remove one square (two triangles) of the +z face: a hole 3 voxels wide.
    square = np.isclose(centre[:, 2], 0.3) & np.all((centre[:, :2] > 0) & (centre[:, :2] < 0.075), axis=1)
    assert square.sum() == 2
    box.update_faces(~square)
    assert not box.is_watertight
    assert not ndimage.binary_fill_holes(surface_voxels(box, res))[20, 20, 20]  # a plain fill leaks
    grid = voxelize_solid(box, res, surface="centre")
    truth = _box_truth(res, [-0.3] * 3, [0.3] * 3)
    assert iou(grid, truth) > 0.99
    assert voxelize_solid(box, res)[20, 20, 20]  # the default (touching) surface fills too


def test_gap_between_parts_stays_open():
    res = 32
    gap = 2.4 / res
    left = trimesh.creation.box((0.3, 0.6, 0.6))
    left.apply_translation([-0.15 - gap / 2, 0, 0])
    right = left.copy()
    right.apply_translation([0.3 + gap, 0, 0])
    grid = voxelize_solid(trimesh.util.concatenate([left, right]), res)
    assert not grid[15:17].any()  # the two middle slabs stay empty
    assert grid[10, 16, 16] and grid[21, 16, 16]


def test_thin_sheet_kept_and_boundary_clipped():
    # An open, zero-thickness square sheet still gives one layer of voxels.
    sheet = trimesh.Trimesh([[-0.3, 0.01, -0.3], [0.3, 0.01, -0.3], [0.3, 0.01, 0.3], [-0.3, 0.01, 0.3]], [[0, 1, 2], [0, 2, 3]])
    grid = voxelize_solid(sheet, 16)
    assert grid[:, 8].sum() >= 8 * 8 and grid.sum() == grid[:, 8].sum()
    # A mesh filling the whole cube (faces exactly on its boundary) lands inside the grid.
    cube = trimesh.creation.box((1.0, 1.0, 1.0))
    full = voxelize_solid(cube, 8)
    assert full.all()


def test_empty_and_bad_res():
    empty = trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    assert not voxelize_solid(empty, 8).any()
    with pytest.raises(InputError, match="res"):
        voxelize_solid(trimesh.creation.box(), 0)


def test_downsample_max_pools():
    grid = np.zeros((8, 8, 8), dtype=bool)
    grid[0, 0, 0] = True
    grid[7, 4, 5] = True
    small = downsample(grid, 4)
    assert small.shape == (4, 4, 4)
    expected = np.zeros((4, 4, 4), dtype=bool)
    expected[0, 0, 0] = expected[3, 2, 2] = True
    np.testing.assert_array_equal(small, expected)
    values = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    assert downsample(values, 1)[0, 0, 0] == 63
    assert downsample(values, 2)[0, 0, 0] == values[:2, :2, :2].max()
    with pytest.raises(InputError, match="res"):
        downsample(grid, 3)
    with pytest.raises(InputError, match="cubic"):
        downsample(np.zeros((4, 4, 8), dtype=bool), 2)


def test_iou():
    a = np.zeros((4, 4, 4), dtype=bool)
    b = np.zeros((4, 4, 4), dtype=bool)
    assert iou(a, b) == 1.0
    a[0, :2] = True  # 8 voxels
    b[0, 1:3] = True  # 8 voxels, 4 shared
    assert iou(a, b) == pytest.approx(4 / 12)
    assert iou(a, a) == 1.0
    assert iou(a.astype(np.float32) * 0.9, b.astype(np.float32) * 0.9) == pytest.approx(4 / 12)
    with pytest.raises(InputError, match="shapes"):
        iou(a, np.zeros((2, 2, 2), dtype=bool))


def test_binvox_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    grid = rng.random((20, 20, 20)) < 0.3
    grid[:, :, :5] = True  # long runs (> 255) too
    path = tmp_path / "grid.binvox"
    write_binvox(path, grid)
    voxels, translate, scale = read_binvox(path)
    np.testing.assert_array_equal(voxels, grid)
    np.testing.assert_allclose(translate, [-0.5, -0.5, -0.5])
    assert scale == 1.0
    raw = path.read_bytes()
    assert raw.startswith(b"#binvox 1\ndim 20 20 20\ntranslate -0.5 -0.5 -0.5\nscale 1\ndata\n")
    # binvox's data order is x-z-y: the first voxels written run along y.
    single = np.zeros((4, 4, 4), dtype=bool)
    single[0, 1, 0] = True
    write_binvox(path, single, translate=(0.1, 0.2, 0.3), scale=2.0)
    data = path.read_bytes().split(b"data\n", 1)[1]
    assert list(data[:6]) == [0, 1, 1, 1, 0, 62]
    voxels, translate, scale = read_binvox(path)
    np.testing.assert_array_equal(voxels, single)
    np.testing.assert_allclose(translate, [0.1, 0.2, 0.3])
    assert scale == 2.0
    assert list(tmp_path.iterdir()) == [path]  # atomic write leaves no temporary behind


def test_binvox_errors(tmp_path):
    bad = tmp_path / "bad.binvox"
    bad.write_bytes(b"hello\n")
    with pytest.raises(InputError, match="bad.binvox"):
        read_binvox(bad)
    short = tmp_path / "short.binvox"
    short.write_bytes(b"#binvox 1\ndim 4 4 4\ntranslate 0 0 0\nscale 1\ndata\n" + bytes([1, 10]))
    with pytest.raises(InputError, match="short.binvox"):
        read_binvox(short)
    with pytest.raises(InputError, match="missing.binvox"):
        read_binvox(tmp_path / "missing.binvox")


@pytest.mark.parametrize("synset, model", SHAPENET, ids=["chair", "airplane"])
def test_shapenet_fixture_alignment(synset, model):
    folder = FIXTURES / synset / model
    if not folder.is_dir():
        pytest.skip(f"ShapeNet fixtures not found at {folder}")
    from recon.runtime.meshio import load_mesh

    mesh = load_mesh(folder / "model_normalized.obj")
    voxels, translate, scale = read_binvox(folder / "model_normalized.solid.binvox")
    dim = voxels.shape[0]
    assert voxels.shape == (128, 128, 128) and 0.005 < voxels.mean() < 0.2

    def near_fraction(grid):
        # Voxel i spans translate + scale * [i, i+1) / D: the vertices fall in or next to occupied voxels.
        idx = np.clip(np.floor((mesh.vertices - translate) / scale * dim).astype(int), 0, dim - 1)
        near = ndimage.binary_dilation(grid, structure=np.ones((3, 3, 3), dtype=bool))
        return near[idx[:, 0], idx[:, 1], idx[:, 2]].mean()

    assert near_fraction(voxels) > 0.99
    # Any other axis order would not line up.
    for perm in itertools.permutations(range(3)):
        if perm != (0, 1, 2):
            assert near_fraction(voxels.transpose(perm)) < 0.5

    # Our voxelization of the mesh in the binvox's frame agrees with ShapeNet's.
    local = mesh.copy()
    local.apply_translation(-translate)
    local.apply_scale(1.0 / scale)
    local.apply_translation([-0.5, -0.5, -0.5])
    ours = voxelize_solid(local, dim)
    assert iou(ours, voxels) > 0.8


def test_touching_surface_keeps_thin_parts_and_contains_the_centre_rule():
    # A wing-like slab a third of a voxel thick: the centre rule may drop it, the default keeps it.
    slab = trimesh.creation.box((0.8, 0.01, 0.3))
    touching = voxelize_solid(slab, 32)
    centre = voxelize_solid(slab, 32, surface="centre")
    assert touching[:, 15:17].any(axis=1).sum() >= 0.9 * 26 * 10  # the whole slab footprint
    assert (centre <= touching).all()
    with pytest.raises(InputError):
        voxelize_solid(slab, 32, surface="outer")
