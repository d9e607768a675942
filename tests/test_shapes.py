"""Procedural shapes: canonical frame, determinism, variety and orientation of every category."""

import json

import numpy as np
import pytest

from recon.runtime.errors import InputError
from recon.train.shapes import CATEGORIES, Shape, make_shape

SEEDS = range(12)
BACKLESS = {"stool", "bar_stool"}


@pytest.fixture(scope="module")
def shapes():
    return {(category, seed): make_shape(category, seed) for category in CATEGORIES for seed in SEEDS}


def test_categories_are_the_three_classes():
    assert list(CATEGORIES) == ["chair", "car", "airplane"]


@pytest.mark.parametrize("category", list(CATEGORIES))
def test_canonical_frame_and_parts(shapes, category):
    for seed in SEEDS:
        shape = shapes[category, seed]
        assert isinstance(shape, Shape) and shape.category == category
        mesh = shape.mesh
        assert 0 < len(mesh.faces) < 20_000
        low, high = mesh.bounds
        assert np.all(low >= -0.5 - 1e-6) and np.all(high <= 0.5 + 1e-6)
        assert abs((high - low).max() - 1.0) < 1e-6
        np.testing.assert_allclose((low + high) / 2, 0.0, atol=1e-6)
        assert shape.part_ids.dtype == np.int32 and shape.part_ids.shape == (len(mesh.faces),)
        assert len(np.unique(shape.part_ids)) >= 4
        json.dumps(shape.params)  # recorded with the dataset manifest


@pytest.mark.parametrize("category", list(CATEGORIES))
def test_every_part_is_closed(shapes, category):
    for seed in SEEDS[:4]:
        shape = shapes[category, seed]
        for part in np.unique(shape.part_ids):
            submesh = shape.mesh.submesh([np.flatnonzero(shape.part_ids == part)], append=True)
            assert submesh.is_watertight, (category, seed, part)


@pytest.mark.parametrize("category", list(CATEGORIES))
def test_deterministic_per_seed(shapes, category):
    again = make_shape(category, 3)
    first = shapes[category, 3]
    np.testing.assert_array_equal(again.mesh.vertices, first.mesh.vertices)
    np.testing.assert_array_equal(again.mesh.faces, first.mesh.faces)
    np.testing.assert_array_equal(again.part_ids, first.part_ids)
    assert again.params == first.params and again.family == first.family
    other = shapes[category, 4]
    assert (other.mesh.vertices.shape != first.mesh.vertices.shape
            or not np.allclose(other.mesh.vertices, first.mesh.vertices))


def test_categories_draw_independently():
    # Same seed, different category: different streams, not the same draws reinterpreted.
    assert make_shape("car", 5).params != make_shape("airplane", 5).params


@pytest.mark.parametrize("category", list(CATEGORIES))
def test_variety(shapes, category):
    families = {shapes[category, seed].family for seed in SEEDS}
    assert len(families) >= 3, families
    aspects = np.array([shapes[category, seed].mesh.extents for seed in SEEDS])
    aspects = aspects / aspects.max(axis=1, keepdims=True)
    # No two objects share proportions.
    distances = np.linalg.norm(aspects[:, None] - aspects[None], axis=-1)
    assert distances[np.triu_indices(len(aspects), 1)].min() > 1e-3
    assert np.ptp(aspects, axis=0).max() > 0.1


def _top_points(vertices, band=0.03):
    return vertices[vertices[:, 1] > vertices[:, 1].max() - band]


def test_chairs_stand_up_with_back_at_plus_z(shapes):
    for seed in SEEDS:
        shape = shapes["chair", seed]
        vertices, extents = shape.mesh.vertices, shape.mesh.extents
        if shape.family not in BACKLESS:
            assert _top_points(vertices)[:, 2].mean() > 0.0, (seed, shape.family)
            assert extents[1] >= extents[0], (seed, shape.family)
        # Left-right symmetric.
        np.testing.assert_allclose(vertices[:, 0].min(), -vertices[:, 0].max(), atol=1e-6)


def test_cars_are_long_in_z_and_face_minus_z(shapes):
    for seed in SEEDS:
        shape = shapes["car", seed]
        extents = shape.mesh.extents
        assert extents[2] == pytest.approx(1.0) and extents[2] > 1.8 * extents[0] and extents[0] > extents[1] * 0.9
        # The widest points are the side mirrors at the windshield base, in the front half.
        vertices = shape.mesh.vertices
        widest = vertices[np.abs(vertices[:, 0]) > np.abs(vertices[:, 0]).max() - 0.01]
        assert widest[:, 2].mean() < -0.05, (seed, shape.family)
        np.testing.assert_allclose(vertices[:, 0].min(), -vertices[:, 0].max(), atol=1e-6)


def test_airplanes_are_flat_with_tail_at_plus_z(shapes):
    for seed in SEEDS:
        shape = shapes["airplane", seed]
        vertices, extents = shape.mesh.vertices, shape.mesh.extents
        assert extents[1] < extents[0] and extents[1] < extents[2]
        assert extents[0] > 0.4 and extents[2] > 0.4  # wingspan and length are the same order
        # The top of the fin (highest point near the plane of symmetry) is at the tail.
        central = vertices[np.abs(vertices[:, 0]) < 0.15]
        assert _top_points(central, 0.02)[:, 2].mean() > 0.05, (seed, shape.family)
        # The nose is the front-most point, on the axis.
        nose = vertices[vertices[:, 2] < vertices[:, 2].min() + 0.01]
        assert abs(nose[:, 0].mean()) < 0.05


def test_unknown_category_lists_the_valid_ones():
    with pytest.raises(InputError, match="chair, car, airplane"):
        make_shape("table", 0)
    with pytest.raises(InputError):
        make_shape("chair", "7")


def test_negative_and_huge_seeds_work():
    assert len(make_shape("chair", -1).mesh.faces) > 0
    assert make_shape("chair", -1).params != make_shape("chair", 1).params or \
        make_shape("chair", -1).family != make_shape("chair", 1).family
    assert len(make_shape("car", 10**15 + 7).mesh.faces) > 0


def test_builders_return_parts_with_family_and_params():
    rng = np.random.default_rng(0)
    parts = CATEGORIES["airplane"](rng)
    assert isinstance(parts, list) and len(parts) >= 5
    assert all(len(p.faces) > 0 for p in parts)
    assert parts.family and isinstance(parts.params, dict)
