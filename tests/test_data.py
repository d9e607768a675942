"""The data pipeline on real renders: geometry consistency, determinism, splits, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.ndimage import binary_dilation, binary_fill_holes

from cli_runner import assert_one_line_error, run_cli
from recon.runtime.camera import Camera, backproject
from recon.runtime.voxels import write_binvox
from recon.train.data import RenderSettings, build, load_manifest, load_view, load_voxels, object_path, synth

SETTINGS = RenderSettings(views=3, image_size=64, voxel_res=32)
CATEGORIES = ["chair", "car", "airplane"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "tiny"
    synth(out, objects=3, categories=CATEGORIES, seed=3, settings=SETTINGS)
    return out


def all_views(root: Path):
    manifest = load_manifest(root)
    for entry in manifest["objects"]:
        for view in range(entry["views"]):
            yield entry, load_view(root, entry["id"], view)


def test_view_arrays_have_the_documented_keys_and_types(dataset):
    entry, view = next(all_views(dataset))
    assert view["rgb"].shape == (64, 64, 3) and view["rgb"].dtype == np.uint8
    assert view["normals"].shape == (64, 64, 3) and view["normals"].dtype == np.float16
    assert view["depth"].shape == (64, 64) and view["depth"].dtype == np.float16
    assert view["mask"].dtype == bool and view["camera"].dtype == np.float32
    assert load_voxels(dataset, entry["id"]).shape == (32, 32, 32)


def test_mask_is_depth_and_normals_are_unit_on_the_mask(dataset):
    for _, view in all_views(dataset):
        assert view["mask"].any()
        np.testing.assert_array_equal(view["mask"], view["depth"] > 0)
        lengths = np.linalg.norm(view["normals"][view["mask"]].astype(np.float32), axis=-1)
        np.testing.assert_allclose(lengths, 1, atol=2e-3)
        assert not view["normals"][~view["mask"]].any()
        # camera-space normals of visible surfaces face the camera
        assert (view["normals"][view["mask"]][:, 2] >= -1e-3).all()


def test_depth_back_projects_onto_the_voxels(dataset):
    for entry, view in all_views(dataset):
        voxels = load_voxels(dataset, entry["id"])
        near = binary_dilation(voxels, iterations=1)  # "inside or next to"
        points = backproject(view["depth"].astype(np.float32), Camera.from_array(view["camera"]))
        index = np.clip(np.floor((points + 0.5) * 32).astype(int), 0, 31)
        assert near[index[:, 0], index[:, 1], index[:, 2]].mean() >= 0.95, entry["id"]


def test_voxels_are_solid_and_non_empty(dataset):
    manifest = load_manifest(dataset)
    interior_seen = False
    for entry in manifest["objects"]:
        voxels = load_voxels(dataset, entry["id"])
        assert voxels.any()
        np.testing.assert_array_equal(binary_fill_holes(voxels), voxels)  # no enclosed empty space
        interior = voxels[1:-1, 1:-1, 1:-1] & voxels[:-2, 1:-1, 1:-1] & voxels[2:, 1:-1, 1:-1] \
            & voxels[1:-1, :-2, 1:-1] & voxels[1:-1, 2:, 1:-1] & voxels[1:-1, 1:-1, :-2] & voxels[1:-1, 1:-1, 2:]
        interior_seen |= bool(interior.any())
    assert interior_seen  # cars' bodies are filled, not shells


def test_split_is_by_object_with_no_overlap(dataset):
    manifest = load_manifest(dataset)
    splits = {entry["id"]: entry["split"] for entry in manifest["objects"]}
    assert set(splits.values()) == {"train", "test"}
    for category in CATEGORIES:
        assert {s for i, s in splits.items() if i.startswith(category)} == {"train", "test"}
    views = sorted(p.name for p in (dataset / "views").glob("*.npz"))
    for name in views:  # every view belongs to exactly one object, hence one split
        assert name.rsplit("_", 1)[0] in splits


def test_same_seed_same_bytes_other_seed_differs(dataset, tmp_path):
    settings = RenderSettings(views=2, image_size=32, voxel_res=16)
    first = synth(tmp_path / "a", 1, ["car"], seed=3, settings=settings)
    second = synth(tmp_path / "b", 1, ["car"], seed=3, settings=settings)
    other = synth(tmp_path / "c", 1, ["car"], seed=4, settings=settings)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.npz"))
    assert files
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert any((tmp_path / "a" / n).read_bytes() != (tmp_path / "c" / n).read_bytes() for n in files)
    assert first["fingerprint"] == second["fingerprint"] != other["fingerprint"]


def test_rerun_skips_finished_objects_and_redoes_missing_ones(tmp_path):
    settings = RenderSettings(views=2, image_size=32, voxel_res=16)
    synth(tmp_path, 2, ["chair"], seed=1, settings=settings)
    done = object_path(tmp_path, "chair_00000")
    redo = object_path(tmp_path, "chair_00001")
    kept_mtime, expected = done.stat().st_mtime_ns, redo.read_bytes()
    redo.unlink()  # as if the run had been interrupted before this object finished
    synth(tmp_path, 2, ["chair"], seed=1, settings=settings)
    assert done.stat().st_mtime_ns == kept_mtime
    assert redo.read_bytes() == expected
    assert not list(tmp_path.rglob("*.tmp"))


def test_resume_into_a_folder_of_other_settings_is_refused(tmp_path):
    synth(tmp_path, 1, ["chair"], seed=1, settings=RenderSettings(views=1, image_size=32, voxel_res=16))
    result = run_cli("data", "synth", "--out", tmp_path, "--objects", "1", "--views", "2",
                     "--image-size", "32", "--voxel-res", "16", "--categories", "chair", "--seed", "1")
    assert_one_line_error(result, "other settings")


def write_box_meshes(root: Path) -> None:
    (root / "chair").mkdir(parents=True)
    (root / "car").mkdir()
    trimesh.creation.box((0.4, 1.0, 0.4)).export(root / "chair" / "tall_box.obj")
    trimesh.creation.box((0.5, 0.3, 1.2)).export(root / "car" / "long_box.ply")
    trimesh.creation.icosphere(radius=0.3).export(root / "car" / "ball.stl")


def test_build_normalises_user_meshes(tmp_path):
    write_box_meshes(tmp_path / "meshes")
    manifest = build(tmp_path / "meshes", tmp_path / "out", seed=0, settings=SETTINGS)
    ids = {entry["id"] for entry in manifest["objects"]}
    assert ids == {"chair_tall_box", "car_long_box", "car_ball"}
    tall = load_voxels(tmp_path / "out", "chair_tall_box")
    extent = [np.ptp(np.nonzero(tall)[axis]) + 1 for axis in range(3)]
    assert extent[1] == 32 and extent[0] < 16 and extent[2] < 16  # largest extent (y) fills the cube


def test_build_with_z_up_turns_meshes_upright(tmp_path):
    (tmp_path / "meshes" / "chair").mkdir(parents=True)
    trimesh.creation.box((0.4, 0.4, 1.0)).export(tmp_path / "meshes" / "chair" / "z_tall.off")
    build(tmp_path / "meshes", tmp_path / "out", seed=0, settings=SETTINGS, up="z")
    voxels = load_voxels(tmp_path / "out", "chair_z_tall")
    assert np.ptp(np.nonzero(voxels)[1]) + 1 == 32  # tall along y now


def test_corrupt_mesh_is_reported_by_name_and_the_rest_succeed(tmp_path):
    write_box_meshes(tmp_path / "meshes")
    (tmp_path / "meshes" / "chair" / "broken.obj").write_text("v 0 0 nonsense\nf 1 2 9\n")
    result = run_cli("data", "build", "--meshes", tmp_path / "meshes", "--out", tmp_path / "out",
                     "--views", "2", "--image-size", "32", "--voxel-res", "16", "--workers", "1")
    assert result.returncode == 1
    assert "broken.obj" in result.stderr and "Traceback" not in result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(manifest["objects"]) == 3
    assert [Path(f["source"]).name for f in manifest["failed"]] == ["broken.obj"]


def test_r2n2_reader_converts_the_shapenet_layout(tmp_path):
    from PIL import Image

    from recon.train.r2n2 import convert

    model = "1a2b3c"
    voxels = np.zeros((32, 32, 32), bool)
    voxels[8:24, 4:28, 10:20] = True  # [x, y, z]: tall in y
    (tmp_path / "vox" / "03001627" / model).mkdir(parents=True)
    write_binvox(tmp_path / "vox" / "03001627" / model / "model.binvox", voxels)
    rendering = tmp_path / "img" / "03001627" / model / "rendering"
    rendering.mkdir(parents=True)
    (rendering / "rendering_metadata.txt").write_text("45.0 30.0 0 0.8 25\n120.0 20.0 0 0.9 25\n")
    for view in range(2):
        rgba = np.zeros((137, 137, 4), np.uint8)
        rgba[40:100, 50:90] = (200, 30, 30, 255)
        Image.fromarray(rgba).save(rendering / f"{view:02d}.png")
    manifest = convert(tmp_path / "img", tmp_path / "vox", tmp_path / "out", image_size=64)
    assert [e["id"] for e in manifest["objects"]] == [f"chair_{model}"] and manifest["sketch"] is False
    np.testing.assert_array_equal(load_voxels(tmp_path / "out", f"chair_{model}"), voxels)
    view = load_view(tmp_path / "out", f"chair_{model}", 1)
    np.testing.assert_allclose(view["camera"], [120.0, 20.0, 0.9 * 1.75, 25], rtol=1e-6)
    assert view["mask"].sum() == pytest.approx(64 * 64 * (60 * 40) / 137**2, rel=0.1)
    assert (view["rgb"][:8, :8] == 255).all()  # background composited on white
    assert (view["rgb"][view["mask"]].mean(axis=0) > [150, 0, 0]).all() and view["rgb"][view["mask"]][:, 1].mean() < 80


def test_preview_sheet_is_written(dataset, tmp_path):
    from PIL import Image

    result = run_cli("data", "preview", dataset, "--out", tmp_path / "sheet.png", "--samples", "3")
    assert result.returncode == 0, result.stderr
    sheet = np.asarray(Image.open(tmp_path / "sheet.png"))
    assert sheet.shape[0] > 3 * 100 and sheet.shape[1] > 5 * 100  # 3 rows x 5 panels
    assert sheet.std() > 10  # pictures, not a blank page


@pytest.mark.parametrize("args, fragment", [
    (["--objects", "0"], "--objects 0: must be an integer >= 1"),
    (["--views", "-2"], "--views -2: must be an integer >= 1"),
    (["--image-size", "0"], "--image-size 0: must be an integer >= 16"),
    (["--categories", "chair,boat"], "unknown category 'boat'"),
])
def test_synth_bad_arguments(tmp_path, args, fragment):
    result = run_cli("data", "synth", "--out", tmp_path / "out", *args)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "out").exists()


def test_unwritable_or_impossible_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_cli("data", "synth", "--out", blocker / "sub", "--objects", "1")
    assert_one_line_error(result, "cannot create the output folder")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert_one_line_error(run_cli("data", "synth", "--out", locked / "x", "--objects", "1"), "locked")


def test_meshes_folder_without_meshes(tmp_path):
    (tmp_path / "meshes" / "chair").mkdir(parents=True)
    (tmp_path / "meshes" / "chair" / "notes.txt").write_text("no meshes here")
    result = run_cli("data", "build", "--meshes", tmp_path / "meshes", "--out", tmp_path / "out")
    assert_one_line_error(result, "no meshes found")
    assert_one_line_error(run_cli("data", "build", "--meshes", tmp_path / "nope", "--out", tmp_path / "o"),
                          "does not exist")


def test_preview_of_a_folder_without_manifest(tmp_path):
    assert_one_line_error(run_cli("data", "preview", tmp_path), "no manifest.json")


def test_build_auto_orients_a_turned_mesh_and_applies_overrides(tmp_path):
    from recon.train.shapes import make_shape
    from recon.runtime.voxels import iou, voxelize_solid

    chair = make_shape("chair", 20_001).mesh
    turned = _turned(chair, 7)
    (tmp_path / "meshes" / "chair").mkdir(parents=True)
    turned.export(tmp_path / "meshes" / "chair" / "turned.obj")
    turned.export(tmp_path / "meshes" / "chair" / "fixed.obj")
    (tmp_path / "overrides.tsv").write_text("fixed.obj\t0\n")
    manifest = build(tmp_path / "meshes", tmp_path / "out", seed=0, settings=SETTINGS, auto_orient=True,
                     overrides=tmp_path / "overrides.tsv")
    orientation = {e["id"]: e["orientation"] for e in manifest["objects"]}
    assert orientation["chair_fixed"] == {"rotation_index": 0, "override": True, "confidence": 1.0}
    assert not orientation["chair_turned"]["override"]
    canonical = voxelize_solid(chair, 32)
    assert iou(load_voxels(tmp_path / "out", "chair_turned"), canonical) > 0.8  # back in the canonical pose
    assert iou(load_voxels(tmp_path / "out", "chair_fixed"), canonical) < 0.8  # the override kept it turned


def _turned(mesh: trimesh.Trimesh, rotation: int) -> trimesh.Trimesh:
    """A copy with p -> ROTATIONS[rotation]^T p applied: auto-orientation should undo it."""
    from recon.train.orient import ROTATIONS

    turned = mesh.copy()
    turned.vertices = turned.vertices @ ROTATIONS[rotation]
    return turned


def _turned_chairs(folder: Path, names: list[str]) -> None:
    from recon.train.shapes import make_shape

    (folder / "chair").mkdir(parents=True)
    for index, name in enumerate(names):
        _turned(make_shape("chair", 20_010 + index).mesh, 5).export(folder / "chair" / f"{name}.obj")


def test_excluded_meshes_are_left_out_without_moving_the_split(tmp_path):
    _turned_chairs(tmp_path / "meshes", ["a", "b", "c", "d", "e"])
    plain = build(tmp_path / "meshes", tmp_path / "plain", seed=0, settings=SETTINGS, auto_orient=True)
    (tmp_path / "overrides.tsv").write_text("b.obj\texclude\nd.obj\texclude\n")
    kept = build(tmp_path / "meshes", tmp_path / "kept", seed=0, settings=SETTINGS, auto_orient=True,
                 overrides=tmp_path / "overrides.tsv")
    assert kept["excluded"] == ["b.obj", "d.obj"]
    assert [e["id"] for e in kept["objects"]] == ["chair_a", "chair_c", "chair_e"]
    split = {e["id"]: e["split"] for e in plain["objects"]}
    assert all(e["split"] == split[e["id"]] for e in kept["objects"])


def test_a_changed_override_re_renders_only_that_mesh(tmp_path):
    _turned_chairs(tmp_path / "meshes", ["a", "b"])
    out = tmp_path / "out"
    first = build(tmp_path / "meshes", out, seed=0, settings=SETTINGS, auto_orient=True)
    before = {e["id"]: object_path(out, e["id"]).stat().st_mtime_ns for e in first["objects"]}
    (tmp_path / "overrides.tsv").write_text("a.obj\t13\n")
    second = build(tmp_path / "meshes", out, seed=0, settings=SETTINGS, auto_orient=True,
                   overrides=tmp_path / "overrides.tsv")
    pose = {e["id"]: e["orientation"] for e in second["objects"]}
    assert pose["chair_a"] == {"rotation_index": 13, "override": True, "confidence": 1.0}
    assert pose["chair_b"] == {e["id"]: e["orientation"] for e in first["objects"]}["chair_b"]
    assert object_path(out, "chair_a").stat().st_mtime_ns != before["chair_a"]
    assert object_path(out, "chair_b").stat().st_mtime_ns == before["chair_b"]


def test_orientation_sheets_page_the_low_confidence_meshes(tmp_path):
    from PIL import Image

    from recon.train.data import orientation_sheets

    (tmp_path / "meshes" / "car").mkdir(parents=True)
    for index, mesh in enumerate([trimesh.creation.icosphere(subdivisions=2), trimesh.creation.box((1, 1, 1)),
                                  trimesh.creation.cylinder(0.5, 1.0)]):
        mesh.export(tmp_path / "meshes" / "car" / f"symmetric{index}.obj")  # no pose wins: all low confidence
    manifest = build(tmp_path / "meshes", tmp_path / "out", seed=0, settings=SETTINGS, auto_orient=True)
    assert len(manifest["low_confidence"]) == 3
    pages, failures = orientation_sheets(tmp_path / "out", tmp_path / "sheet.png", per_page=2)
    assert [p.name for p in pages] == ["sheet-01.png", "sheet-02.png"] and failures == []
    heights = [Image.open(p).size[1] for p in pages]
    assert heights[0] > heights[1]  # two rows, then one
    result = run_cli("data", "preview", tmp_path / "out", "--orientations", "--out", tmp_path / "one.png")
    assert result.returncode == 0 and (tmp_path / "one.png").is_file()
    (tmp_path / "meshes" / "car" / "symmetric1.obj").write_text("not a mesh\n")  # the others are still drawn
    result = run_cli("data", "preview", tmp_path / "out", "--orientations", "--out", tmp_path / "two.png")
    assert result.returncode == 1 and "symmetric1.obj" in result.stdout + result.stderr
    assert Image.open(tmp_path / "two.png").size[1] < Image.open(tmp_path / "one.png").size[1]


def test_orientation_sheets_need_an_auto_orient_build(dataset, tmp_path):
    result = run_cli("data", "preview", dataset, "--orientations", "--out", tmp_path / "sheet.png")
    assert_one_line_error(result, "--auto-orient")
    assert not (tmp_path / "sheet.png").exists()


def test_a_folder_with_other_files_is_refused_and_left_alone(tmp_path):
    """A mistyped --out (say, a checkout's examples/) gets no dataset scattered into it; an interrupted
    dataset of ours (views/ but no finished manifest) still resumes."""
    foreign = tmp_path / "examples"
    foreign.mkdir()
    (foreign / "chair_photo.jpg").write_bytes(b"a picture")
    result = run_cli("data", "synth", "--out", foreign, "--objects", "1", "--views", "1", "--image-size", "64",
                     "--voxel-res", "32", "--workers", "1")
    assert_one_line_error(result, "holds other files", "choose a new or empty folder")
    assert sorted(p.name for p in foreign.iterdir()) == ["chair_photo.jpg"]
    ours = tmp_path / "ours"
    (ours / "views").mkdir(parents=True)
    (ours / "views" / "leftover.npz").write_bytes(b"")
    result = run_cli("data", "synth", "--out", ours, "--objects", "1", "--views", "1", "--image-size", "64",
                     "--voxel-res", "32", "--workers", "1")
    assert result.returncode == 0, result.stderr
