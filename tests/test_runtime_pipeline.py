"""Reconstructor on a real exported model folder (fresh `edge` nets: structure, not quality)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import trimesh

from recon.runtime.errors import InputError
from recon.runtime.images import load_image
from recon.runtime.pipeline import OUTPUT_FORMATS, Reconstructor, Result
from recon.runtime.preprocess import crop_image, frame_box, whole_image_box


def cutout(height=300, width=400, box=(80, 150, 220, 260), seed=0) -> np.ndarray:
    """RGBA: a textured object on a transparent background (alpha gives the silhouette)."""
    rgba = np.zeros((height, width, 4), np.uint8)
    top, left, bottom, right = box
    rng = np.random.default_rng(seed)
    rgba[top:bottom, left:right, :3] = rng.integers(40, 200, (bottom - top, right - left, 3))
    rgba[top:bottom, left:right, 3] = 255
    return rgba


def photo(height=240, width=320, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def reconstruct(model_dir):
    with Reconstructor(model_dir, device="cpu", threads=2, batch=2) as reconstructor:
        yield reconstructor


def test_result_structure(reconstruct):
    info = reconstruct.model
    s, r = info.image_size, info.voxel_res
    result = reconstruct(cutout())
    assert isinstance(result, Result) and result.ok and result.error is None, result.error
    assert result.image.shape == (s, s, 3) and result.image.dtype == np.uint8
    assert result.sketch["normals"].shape == (s, s, 3) and result.sketch["depth"].shape == (s, s)
    assert result.sketch["silhouette"].shape == (s, s)
    assert result.voxels.shape == (r, r, r) and result.voxels.dtype == np.float32
    assert 0 <= result.voxels.min() and result.voxels.max() <= 1
    assert isinstance(result.mesh, trimesh.Trimesh) and result.watertight and result.mesh.is_watertight
    assert result.volume == pytest.approx(result.mesh.volume) and result.volume > 0
    assert result.vertices == len(result.mesh.vertices) and result.faces == len(result.mesh.faces)
    assert np.all(np.asarray(result.bbox) >= -0.5 - 1 / r) and np.all(np.asarray(result.bbox) <= 0.5 + 1 / r)
    assert set(result.timings) == {"preprocess", "sketch", "voxel", "mesh", "color"}
    assert all(v >= 0 for v in result.timings.values())
    assert result.threshold == reconstruct.threshold == info.threshold
    assert reconstruct.providers == {"sketch": "CPUExecutionProvider", "voxel": "CPUExecutionProvider"}
    json.dumps(result.summary())  # JSON-able


def test_framing_is_what_training_did(reconstruct):
    """Alpha mask -> frame_box(mask, fill) -> crop_image of the picture composited on white."""
    rgba = cutout(box=(10, 30, 120, 90))
    result = reconstruct(rgba)
    picture = load_image(rgba, background=reconstruct.model.background)
    box = frame_box(picture.mask, reconstruct.model.fill)
    assert result.box == box
    np.testing.assert_array_equal(result.image, crop_image(picture.rgb, box, reconstruct.model.image_size))
    # The silhouette channel comes from the alpha: the object's box fills `fill` of the crop.
    silhouette = result.sketch["silhouette"] > 0.5
    rows, cols = np.flatnonzero(silhouette.any(1)), np.flatnonzero(silhouette.any(0))
    longest = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) / reconstruct.model.image_size
    assert longest == pytest.approx(reconstruct.model.fill, abs=0.02)


def test_pictures_without_alpha_are_framed_from_a_first_pass(reconstruct):
    """No alpha: the sketch net's silhouette over the centred whole picture decides the crop. (The
    test model's silhouette head calls most pixels object, see conftest.make_run.)"""
    result = reconstruct(photo(200, 500))
    assert result.ok, result.error
    whole = whole_image_box(200, 500)
    # The crop lies within the whole-picture square and is no larger than it allows.
    assert result.box.side <= whole.side / reconstruct.model.fill + 1e-6
    assert result.timings["sketch"] > 0


@pytest.mark.parametrize("shape", [(8, 8), (16, 900), (700, 30), (1200, 1600)])
def test_any_size_and_aspect(reconstruct, shape):
    result = reconstruct(photo(*shape))
    assert result.ok, result.error
    assert result.image.shape[:2] == (reconstruct.model.image_size,) * 2


def test_batch_keeps_order_and_matches_single_calls(reconstruct):
    images = [cutout(seed=0), photo(seed=2), cutout(seed=3, box=(20, 20, 200, 100))]
    batched = reconstruct.batch(images)  # batch=2: two network runs, one of them partial
    assert [r.name for r in batched] == ["image0", "image1", "image2"]
    for image, result in zip(images, batched):
        single = reconstruct(image)
        assert result.box == single.box
        np.testing.assert_allclose(result.voxels, single.voxels, atol=1e-5)


def test_failures_do_not_stop_the_others(reconstruct, tmp_path):
    (tmp_path / "broken.png").write_text("not a picture")
    images = [cutout(), str(tmp_path / "broken.png"), np.zeros((50, 50, 3), np.uint8),
              np.full((64, 64, 3), 255, np.uint8), str(tmp_path / "missing.jpg"), cutout(seed=5)]
    results = reconstruct.batch(images)
    assert [r.status for r in results] == ["ok", "failed", "failed", "failed", "failed", "ok"]
    assert results[1].error.startswith(str(tmp_path / "broken.png") + ":")
    assert results[2].error == "image2: no object found (the picture is one flat colour)"
    assert "no object found" in results[3].error
    assert "no such file" in results[4].error
    assert all(r.mesh is None for r in results if not r.ok)


def test_transparent_picture_is_no_object(reconstruct):
    rgba = cutout()
    rgba[..., 3] = 0
    rgba[0, 0, 3] = 255  # one pixel is not an object
    result = reconstruct(rgba)
    assert result.status == "failed" and "no object found" in result.error


def test_threshold_above_every_probability_fails_cleanly(reconstruct, tmp_path):
    result = reconstruct(cutout(), threshold=0.999)
    assert result.status == "failed" and "no voxel above threshold 0.999" in result.error
    assert result.save(tmp_path) == {} and list(tmp_path.iterdir()) == []  # no empty mesh written


def test_real_units(reconstruct):
    plain = reconstruct(cutout())
    tall = reconstruct(cutout(), height_m=2.0)
    extent = np.subtract(tall.bbox[1], tall.bbox[0])
    assert tall.scale_m == pytest.approx(2.0 / extent[1])
    assert tall.volume_m3 == pytest.approx(plain.volume * tall.scale_m ** 3)
    assert np.subtract(tall.bbox_m[1], tall.bbox_m[0])[1] == pytest.approx(2.0)
    wide = reconstruct(cutout(), width_m=0.5)
    assert wide.scale_m == pytest.approx(0.5 / extent[0])
    assert plain.scale_m is None and plain.volume_m3 is None
    with pytest.raises(InputError, match="height_m"):
        reconstruct(cutout(), height_m=-1)
    with pytest.raises(InputError, match="one of them"):
        reconstruct(cutout(), height_m=1, width_m=1)


def test_bgr_arrays(reconstruct):
    rgb = photo()
    a, b = reconstruct(rgb), reconstruct(rgb[..., ::-1].copy(), bgr=True)
    np.testing.assert_allclose(a.voxels, b.voxels, atol=1e-6)


def test_save_writes_every_format_atomically(reconstruct, tmp_path):
    result = reconstruct(cutout())
    written = result.save(tmp_path, "chair", formats=OUTPUT_FORMATS)
    assert set(written) == set(OUTPUT_FORMATS) | {"preview"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"chair.{f}" for f in OUTPUT_FORMATS] + ["chair.preview.png"])  # no temp files left
    np.testing.assert_array_equal(np.load(written["npy"]), result.voxels)
    from recon.runtime.voxels import read_binvox

    np.testing.assert_array_equal(read_binvox(written["binvox"])[0], result.voxels > result.threshold)
    from PIL import Image

    preview = np.asarray(Image.open(written["preview"]))
    assert preview.shape[1] > 4 * preview.shape[0]  # input | normals | depth | silhouette | 3 mesh views
    with pytest.raises(InputError, match="not supported; valid: obj"):
        result.save(tmp_path, formats=("fbx",))
    made = result.save(tmp_path / "new" / "folder", formats=("obj",))  # a missing folder is made, as --out does
    assert made["obj"].parent == tmp_path / "new" / "folder" and made["obj"].stat().st_size > 0


def test_constructor_arguments(model_dir):
    with pytest.raises(InputError, match="batch"):
        Reconstructor(model_dir, batch=0)
    with pytest.raises(InputError, match="threshold"):
        Reconstructor(model_dir, threshold=1.5)
    with pytest.raises(InputError, match="device 'gpu' is not one of"):
        Reconstructor(model_dir, device="gpu")


def test_inference_never_imports_torch(model_dir, tmp_path):
    """The runtime is torch-free: a whole inference and save in a fresh process, then check sys.modules."""
    script = f"""
import sys
import numpy as np
import recon
assert "onnxruntime" not in sys.modules, "import recon must stay light"
rgba = np.zeros((120, 160, 4), np.uint8); rgba[30:90, 40:120] = (90, 120, 150, 255)
with recon.Reconstructor({str(model_dir)!r}, device="cpu") as reconstruct:
    result = reconstruct(rgba)
    assert result.ok, result.error
    result.save({str(tmp_path)!r}, "x", formats=("obj", "glb", "binvox"))
print("torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_folder_with_a_plan_runs_on_onnx_without_tensorrt(model_dir, tmp_path):
    """A model folder carrying TensorRT plans still works where TensorRT is missing (or the plan was
    built for another GPU): the ONNX files run instead."""
    import hashlib
    import importlib.util
    import shutil

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: the plan would be tried")
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    (folder / "sketch.engine").write_bytes(b"a plan for some other machine")
    (folder / "sketch.engine.json").write_text(json.dumps({"format": "recon-engine", "tensorrt": "10.3.0"}))
    manifest = json.loads((folder / "model.json").read_text())
    for name in ("sketch.engine", "sketch.engine.json"):
        data = (folder / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / "model.json").write_text(json.dumps(manifest))
    with Reconstructor(folder, device="auto", threads=1) as reconstructor:
        assert reconstructor.model.engine("sketch") == folder / "sketch.engine"
        assert reconstructor.runners["sketch"].name == "sketch.onnx"  # on ONNX Runtime, or OpenVINO where installed
        assert reconstructor.providers["sketch"] != "TensorRT"
        assert reconstructor(cutout()).ok


def test_masks_come_back_to_the_picture_as_at_full_resolution():
    """picture_component labels the (S, S) mask, not the picture: the same mask as labelling the
    picture-sized nearest-neighbour enlargement, for boxes larger and smaller than S, inside the
    picture or reaching past it."""
    from scipy import ndimage

    from recon.runtime.preprocess import Box, main_component, picture_component, to_picture

    rng = np.random.default_rng(0)
    for _ in range(60):
        size = int(rng.choice([32, 64, 128]))
        noise = ndimage.gaussian_filter(rng.random((size, size)), rng.uniform(0.5, 3))
        mask = noise > np.quantile(noise, rng.uniform(0.6, 0.97))
        height, width = (int(v) for v in rng.integers(20, 500, 2))
        side = float(rng.uniform(10, 700))
        box = Box(float(rng.uniform(-side / 2, height / 2)), float(rng.uniform(-side / 2, width / 2)), side)
        rows = np.floor((np.arange(height) + 0.5 - box.top) * size / box.side).astype(np.int64)
        cols = np.floor((np.arange(width) + 0.5 - box.left) * size / box.side).astype(np.int64)
        inside = ((rows >= 0) & (rows < size))[:, None] & ((cols >= 0) & (cols < size))[None]
        enlarged = mask[rows.clip(0, size - 1)[:, None], cols.clip(0, size - 1)[None]] & inside
        assert np.array_equal(to_picture(mask, box, height, width), enlarged)
        assert np.array_equal(picture_component(mask, box, height, width), main_component(enlarged))


def test_threaded_batch_is_the_serial_batch(model_dir, tmp_path):
    """Per-picture stages on a thread pool: the same results, in input order, a failure staying its own."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    pictures = [photo(seed=3), cutout(), str(broken), np.full((60, 80, 3), 90, np.uint8), photo(200, 150, seed=4)]
    with Reconstructor(model_dir, device="cpu", threads=2, batch=4) as reconstructor:
        assert reconstructor.workers == 2
        threaded = reconstructor.batch(pictures)
        reconstructor.workers = 1
        serial = reconstructor.batch(pictures)
    assert [r.status for r in threaded] == [r.status for r in serial]
    assert threaded[2].status == threaded[3].status == "failed" and threaded[0].ok and threaded[1].ok
    for a, b in zip(threaded, serial):
        assert (a.name, a.error, a.box, a.evidence, a.volume) == (b.name, b.error, b.box, b.evidence, b.volume)
        if a.ok:
            assert np.array_equal(a.mesh.vertices, b.mesh.vertices)
            assert np.array_equal(a.mesh.visual.vertex_colors, b.mesh.visual.vertex_colors)
