"""Orientation canonicalisation: the 24 rotations, recovery of every rotation, confidence, overrides."""

import json

import numpy as np
import pytest
import trimesh

from recon.runtime.errors import InputError
from recon.runtime.voxels import iou, voxelize_solid
from recon.train import orient as O
from recon.train.shapes import make_shape

RES = 24


def _rotated(mesh, rotation):
    """The mesh with p -> rotation^T p applied, so `rotation` is the right answer for orient()."""
    transform = np.eye(4)
    transform[:3, :3] = np.asarray(rotation).T
    out = mesh.copy()
    out.apply_transform(transform)
    return out


def test_rotations_are_24_distinct_proper_rotations():
    assert len(O.ROTATIONS) == 24
    assert np.allclose(O.ROTATIONS[0], np.eye(3))
    for r in O.ROTATIONS:
        assert r.shape == (3, 3)
        assert np.allclose(r @ r.T, np.eye(3))
        assert np.isclose(np.linalg.det(r), 1.0)
        assert set(np.abs(r).ravel()) == {0.0, 1.0}
    keys = {tuple(np.round(r).astype(int).ravel()) for r in O.ROTATIONS}
    assert len(keys) == 24
    # closed under composition (a group)
    for a in O.ROTATIONS[::5]:
        for b in O.ROTATIONS[::7]:
            assert tuple(np.round(a @ b).astype(int).ravel()) in keys


def test_grid_rotation_matches_rotating_the_mesh():
    mesh = make_shape("chair", 10_003).mesh
    grid = voxelize_solid(mesh, RES)
    for index in range(24):
        expected = voxelize_solid(O.apply_orientation(mesh, index), RES)
        assert iou(O.rotate_grid(grid, index), expected) > 0.99


@pytest.mark.parametrize("category", ["chair", "car"])
@pytest.mark.parametrize("k", [0, 1])
def test_orient_recovers_every_rotation(category, k):
    mesh = make_shape(category, 10_000 + k).mesh
    reference = voxelize_solid(mesh, RES)
    for index, rotation in enumerate(O.ROTATIONS):
        result = O.orient(_rotated(mesh, rotation), category)
        assert 0 <= result.rotation_index < 24
        assert np.array_equal(result.rotation, O.ROTATIONS[result.rotation_index])
        assert 0.0 <= result.confidence <= 1.0 and result.margin >= 0.0
        fixed = O.apply_orientation(_rotated(mesh, rotation), result)
        assert iou(voxelize_solid(fixed, RES), reference) > 0.9, (category, k, index, result)


def test_symmetric_meshes_get_low_confidence():
    chair = O.orient(_rotated(make_shape("chair", 10_001).mesh, O.ROTATIONS[7]), "chair")
    for mesh in (trimesh.creation.icosphere(subdivisions=3), trimesh.creation.box((1.0, 1.0, 1.0))):
        for category in ("chair", "car"):
            result = O.orient(mesh, category)
            assert result.confidence < 0.2, (category, result)
            assert chair.confidence > result.confidence + 0.3


def test_apply_orientation_accepts_index_matrix_and_orientation():
    mesh = make_shape("car", 10_002).mesh
    a = O.apply_orientation(mesh, 5)
    b = O.apply_orientation(mesh, O.ROTATIONS[5])
    assert np.allclose(a.vertices, b.vertices)
    assert np.allclose(a.bounds.sum(axis=0), 0.0) and np.isclose((a.bounds[1] - a.bounds[0]).max(), 1.0)
    assert np.allclose(mesh.vertices, make_shape("car", 10_002).mesh.vertices)  # input untouched
    with pytest.raises(InputError):
        O.apply_orientation(mesh, 24)
    with pytest.raises(InputError):
        O.apply_orientation(mesh, np.diag([1.0, 1.0, -1.0]))


def test_load_overrides_tsv_and_json(tmp_path):
    tsv = tmp_path / "overrides.tsv"
    tsv.write_text("# name\tindex\nchair_a\t3\n\ncar_b\t0\ntilted\texclude\n")
    assert O.load_overrides(tsv) == {"chair_a": 3, "car_b": 0, "tilted": None}
    js = tmp_path / "overrides.json"
    js.write_text(json.dumps({"plane": 23, "chair": 1, "broken": "exclude"}, indent=1))
    assert O.load_overrides(js) == {"plane": 23, "chair": 1, "broken": None}


def test_up_choices_are_the_best_pose_per_up_direction():
    mesh = _rotated(make_shape("chair", 10_003).mesh, O.ROTATIONS[11])
    result = O.orient(mesh, "chair")
    scores, _ = O.score_rotations(mesh, "chair")
    ups = [tuple(O.ROTATIONS[i][1]) for i in result.up_choices]
    assert result.up_choices[0] == result.rotation_index and len(set(ups)) == len(ups) == 6
    for index, up in zip(result.up_choices, ups):  # nothing with the same up direction scores higher
        assert all(scores[i] <= scores[index] for i in range(24) if tuple(O.ROTATIONS[i][1]) == up)
    assert list(scores[list(result.up_choices)]) == sorted(scores[list(result.up_choices)], reverse=True)


@pytest.mark.parametrize("body, line", [
    ("chair_a\t3\ncar_b\t24\n", "line 2"),
    ("chair_a\t-1\n", "line 1"),
    ("a\t1\n# c\nb 2\n", "line 3"),
    ("a\t1\na\t2\n", "line 2"),
    ("a\tx\n", "line 1"),
    ("a\texcluded\n", "line 1"),
])
def test_load_overrides_rejects_bad_tsv_lines(tmp_path, body, line):
    path = tmp_path / "bad.tsv"
    path.write_text(body)
    with pytest.raises(InputError, match=line) as error:
        O.load_overrides(path)
    assert str(path) in str(error.value)


def test_load_overrides_rejects_bad_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "ok": 2,\n  "bad": 30\n}\n')
    with pytest.raises(InputError, match=r"line 3.*bad.*30"):
        O.load_overrides(path)
    path.write_text('{"a": true}')
    with pytest.raises(InputError, match="rotation index"):
        O.load_overrides(path)
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        O.load_overrides(path)
    with pytest.raises(InputError, match="cannot read"):
        O.load_overrides(tmp_path / "missing.tsv")


@pytest.mark.parametrize("category", ["chair", "car", "airplane"])
def test_orient_many_held_out_objects(category):
    """One rotation each for 12 more held-out objects (stools, seat heights, car bodies vary)."""
    for k in range(2, 14):
        mesh = make_shape(category, 10_000 + k).mesh
        rotation = O.ROTATIONS[(5 * k) % 24]
        result = O.orient(_rotated(mesh, rotation), category)
        fixed = O.apply_orientation(_rotated(mesh, rotation), result)
        assert iou(voxelize_solid(fixed, RES), voxelize_solid(mesh, RES)) > 0.9, (category, k, result)


def test_unknown_category():
    with pytest.raises(InputError, match="unknown shape category"):
        O.orient(trimesh.creation.box(), "lamp")
