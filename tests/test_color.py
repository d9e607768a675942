"""Vertex colours: the view search finds the camera of a real render, colours land on the right side,
and the pipeline's meshes carry them into GLB, PLY and OBJ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from recon.runtime.camera import Camera
from recon.runtime.color import find_view, vertex_colors
from recon.runtime.errors import InputError
from recon.runtime.meshing import marching_cubes
from recon.runtime.meshio import load_mesh
from recon.runtime.preprocess import crop_image, crop_map, frame_box
from recon.runtime.render import render_view

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SIZE = 128


def l_shape_mesh() -> trimesh.Trimesh:
    """An asymmetric solid (a tall block with a foot towards +x and -z), meshed as the pipeline meshes voxels."""
    grid = np.zeros((32, 32, 32), np.float32)
    grid[6:14, 2:30, 8:24] = 1  # the tall block, left of centre
    grid[14:28, 2:10, 4:16] = 1  # the foot: to the right (+x), at the front (-z)
    return marching_cubes(grid, 0.5)


def framed_view(mesh, camera: Camera, face_colors=None, size: int = SIZE) -> dict:
    """What the networks would give for a render: the framed crop, its silhouette and depth offsets."""
    rendered = render_view(mesh, camera, 256, face_colors=face_colors, ambient=1.0)
    box = frame_box(rendered["mask"], 0.8)
    mask = crop_map(rendered["mask"], box, size)
    depth = np.where(mask, crop_map(rendered["depth"], box, size) - camera.distance, 0.0)
    return {"image": crop_image(rendered["rgb"], box, size), "silhouette": mask.astype(np.float32), "depth": depth}


def angle_error(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


@pytest.mark.parametrize("azimuth, elevation, size", [(40.0, 20.0, 128), (200.0, 5.0, 128), (300.0, 30.0, 100)])
def test_find_view_recovers_the_render_camera(azimuth, elevation, size):
    """Any crop side works (100 is no multiple of the search grid)."""
    mesh = l_shape_mesh()
    view = framed_view(mesh, Camera(azimuth, elevation), size=size)
    fit = find_view(mesh.vertices, view["silhouette"], view["depth"])
    assert angle_error(fit.camera.azimuth, azimuth) < 12, fit
    assert abs(fit.camera.elevation - elevation) < 12, fit
    assert fit.overlap > 0.8


def split_colors(mesh, axis: int):
    """Faces red where the face centre is on the + side of `axis`, blue on the - side; and per vertex."""
    red, blue = np.array([0.9, 0.1, 0.1]), np.array([0.1, 0.2, 0.9])
    centre = (mesh.bounds[0] + mesh.bounds[1]) / 2
    faces = np.where((mesh.triangles_center[:, axis] > centre[axis])[:, None], red, blue)
    vertices = np.where((mesh.vertices[:, axis] > centre[axis])[:, None], red, blue)
    return faces, vertices, centre


@pytest.mark.parametrize("unseen, axis", [("nearest", 0), ("mirror", 1)])
def test_vertices_take_the_colour_of_their_side(unseen, axis):
    """Seen vertices take their pixel's colour; unseen ones the nearest (or mirrored) seen one's: either
    way, a mesh painted red on one side and blue on the other comes back painted the same way."""
    mesh = l_shape_mesh()
    faces, truth, centre = split_colors(mesh, axis)
    view = framed_view(mesh, Camera(60.0, 25.0), face_colors=faces)
    rgba, fit = vertex_colors(mesh.vertices, view["image"], view["silhouette"], view["depth"], unseen=unseen)
    assert rgba.shape == (len(mesh.vertices), 4) and rgba.dtype == np.uint8
    assert 0.1 < fit.seen < 0.9  # some seen, some filled
    away = np.abs(mesh.vertices[:, axis] - centre[axis]) > 0.06  # vertices not on the colour border
    is_red = rgba[:, 0].astype(int) > rgba[:, 2]
    agree = is_red[away] == (truth[away, 0] > truth[away, 2])
    assert agree.mean() > 0.9, agree.mean()


def test_eroded_lookup_and_unseen_fill_match_their_plain_definitions():
    """The one-erosion lookup is the 8-neighbour test with the crop's edge repeated outward; the
    mirror-first fill gives every hidden vertex what nearest-then-mirror-overrides gives."""
    from scipy.spatial import cKDTree

    from recon.runtime.color import MIRROR_REACH, _fill_unseen, _inside_eroded

    rng = np.random.default_rng(0)
    mask = rng.random((40, 40)) > 0.2
    mask[:, :8] = True  # object running off the crop's edge
    row, col = (a.ravel() for a in np.indices(mask.shape))
    neighbours = [mask[np.clip(row + dr, 0, 39), np.clip(col + dc, 0, 39)] for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
    assert np.array_equal(_inside_eroded(mask, row, col), np.logical_and.reduce(neighbours))

    points = l_shape_mesh().vertices
    seen = points[:, 2] < points[:, 2].mean()  # the front half
    colors = rng.uniform(0, 255, (int(seen.sum()), 3)).astype(np.float32)
    hidden = np.flatnonzero(~seen)
    tree = cKDTree(points[seen])
    nearest = colors[tree.query(points[hidden])[1]]
    distance, mirror = tree.query(points[hidden] * [-1.0, 1.0, 1.0], distance_upper_bound=MIRROR_REACH)
    mirrored = nearest.copy()
    mirrored[np.isfinite(distance)] = colors[mirror[np.isfinite(distance)]]
    assert 0 < np.isfinite(distance).sum() < hidden.size
    assert np.array_equal(_fill_unseen(points, seen, colors, hidden, "nearest"), nearest)
    assert np.array_equal(_fill_unseen(points, seen, colors, hidden, "mirror"), mirrored)


def test_unknown_fill_is_refused():
    mesh = l_shape_mesh()
    view = framed_view(mesh, Camera(60.0, 25.0))
    with pytest.raises(InputError, match="unseen"):
        vertex_colors(mesh.vertices, view["image"], view["silhouette"], view["depth"], unseen="guess")


@pytest.fixture(scope="module")
def reconstructor():
    from recon.runtime.pipeline import Reconstructor

    with Reconstructor(threads=1) as reconstruct:
        yield reconstruct


def test_pipeline_meshes_carry_the_photos_colours(reconstructor, tmp_path):
    result = reconstructor(str(EXAMPLES / "chair_test.png"))
    assert result.ok and result.view is not None and "color" in result.timings
    colors = np.asarray(result.mesh.visual.vertex_colors)[:, :3].astype(float)
    assert colors.std(axis=0).max() > 10  # not one flat colour
    object_pixels = result.image[result.sketch["silhouette"] > 0.5].astype(float)
    # The mesh's colours are the object's, not the background's: closer to its mean than white is.
    assert np.abs(colors.mean(axis=0) - object_pixels.mean(axis=0)).max() < 40
    written = result.save(tmp_path, formats=("glb", "ply", "obj"), preview=False)
    for fmt, path in written.items():
        loaded = load_mesh(path)
        assert loaded.visual.kind == "vertex", fmt
        assert np.abs(np.asarray(loaded.visual.vertex_colors)[:, :3].mean(axis=0) - colors.mean(axis=0)).max() < 3, fmt


def test_no_color_leaves_the_mesh_grey(reconstructor):
    result = reconstructor(str(EXAMPLES / "chair_test.png"), color=False)
    assert result.ok and result.view is None and "color" not in result.timings
    assert result.mesh.visual.kind != "vertex"
