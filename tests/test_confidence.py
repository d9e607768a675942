"""Confidence and refusal (recon.runtime.confidence): the evidence, the fit, the stored calibration, a
model calibrated here flagging noise and flat pictures while passing the example test renders, and the
shipped calibration passing those renders framed automatically, by a detector-like box and by a mask."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recon.runtime.confidence import APPEARANCE, CALIBRATION_FILE, FEATURES, Calibration, evidence, load_calibration
from recon.runtime.errors import ModelError
from recon.runtime.model import default_model_dir, load_model_dir
from recon.runtime.preprocess import crop_map, frame_box
from recon.train.calibration import fit_calibration, fit_logistic, out_of_fold
from recon.train.calibration_pictures import OBJECT_FRAMINGS, negatives, objects

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_RENDERS = sorted((ROOT / "examples").glob("*_test.png"))


def features_of(silhouette, voxels=None, framing_mask=None):
    mask = silhouette > 0.5 if framing_mask is None else framing_mask
    box = frame_box(mask, 0.8) or frame_box(np.ones_like(mask), 0.8)
    voxels = np.full((8, 8, 8), 0.02, np.float32) if voxels is None else voxels
    return evidence(silhouette.astype(np.float32), mask, box, "alpha", voxels, 0.5, 0.8)


def test_evidence_tells_one_solid_object_from_scattered_noise():
    blob = np.zeros((64, 64), np.float32)
    blob[16:48, 20:44] = 1.0
    solid = np.zeros((8, 8, 8), np.float32)
    solid[2:6, 2:6, 2:6] = 0.99
    box = frame_box(blob > 0.5, 0.8)
    framed = crop_map(blob, box, 64)  # what the main pass sees: the crop of the picture's object
    one = evidence(framed, blob > 0.5, box, "alpha", solid, 0.5, 0.8)
    speckle = (np.random.default_rng(0).uniform(size=(64, 64)) > 0.7).astype(np.float32)
    many = features_of(speckle, framing_mask=np.ones((64, 64), bool))
    assert set(one) == set(FEATURES)
    assert one["largest_part"] == 1.0 and one["parts"] == pytest.approx(np.log(2)) and one["solidity"] == 1.0
    assert one["framing_iou"] == pytest.approx(1.0) and one["edge_contact"] == 0.0
    assert one["voxel_entropy"] < 0.1 < many["voxel_entropy"]
    assert many["largest_part"] < 0.5 and many["parts"] > 3 and many["framing_area"] == 1.0
    assert one["view_overlap"] == 0.0 and one["view_depth_error"] == 0.5  # no mesh fitted: the worst view
    assert one["voxel_symmetry"] == 1.0  # a centred cube is its own left-right mirror
    lopsided = np.zeros((8, 8, 8), np.float32)
    lopsided[:3, 2:6, 2:6] = 0.99  # all of it left of x = 0: its mirror is all right of it
    assert features_of(blob, lopsided)["voxel_symmetry"] == 0.0


def test_view_fit_is_evidence_and_the_colours_reuse_it():
    """The mesh's render-and-compare fit is found once: the evidence holds its numbers, the colours its camera."""
    from recon.runtime.pipeline import Reconstructor

    with Reconstructor(device="cpu", threads=2) as reconstruct:
        result = reconstruct(EXAMPLE_RENDERS[0])
        grey = reconstruct(EXAMPLE_RENDERS[0], color=False)
    assert result.view is not None and result.view.overlap > 0.5
    assert result.evidence["view_overlap"] == result.view.overlap
    assert result.evidence["view_depth_error"] == result.view.depth_error
    assert grey.view is None and grey.evidence == result.evidence  # colour or not, the same evidence


def test_logistic_fit_separates_and_thresholds_follow_the_objects():
    rng = np.random.default_rng(0)
    objects = rng.normal(1.0, 0.5, (300, len(FEATURES)))
    others = rng.normal(-1.0, 0.5, (200, len(FEATURES)))
    fitted = fit_calibration(objects, others)
    scores = np.array([fitted.confidence(dict(zip(FEATURES, row))) for row in objects])
    assert np.mean(scores < fitted.accept) == pytest.approx(0.02, abs=0.01)
    assert np.mean(scores < fitted.refuse) == pytest.approx(0.005, abs=0.005) and fitted.refuse <= fitted.accept
    assert max(fitted.confidence(dict(zip(FEATURES, row))) for row in others) < 0.5
    mean, std, weights, bias = fit_logistic(objects, np.ones(300))  # one class only: still finite
    assert np.isfinite(weights).all() and np.isfinite(bias)


def test_appearance_head_is_fitted_out_of_fold_and_weighed_last():
    rng = np.random.default_rng(3)
    embed = lambda centre, n: rng.normal(centre, 1.0, (n, 60))  # what objects and others look like to the net
    blind = lambda n: rng.normal(0.0, 1.0, (n, len(FEATURES)))  # evidence that cannot tell them apart
    pos, neg = embed(0.15, 150), embed(-0.15, 150)
    fitted = fit_calibration(blind(150), blind(150), features=(*FEATURES, APPEARANCE), embeddings=(pos, neg))
    assert fitted.features[-1] == APPEARANCE and fitted.appearance is not None
    # In-sample, 60 weights from 300 pictures separate them better than they deserve; out of fold less so
    # (a head that had seen the rows it scores would give the in-sample separation: ratio 1).
    in_sample = fitted.appearance.score(pos).mean() - fitted.appearance.score(neg).mean()
    held = out_of_fold(pos, neg)
    assert held[0].mean() - held[1].mean() < 0.92 * in_sample
    fresh_pos, fresh_neg = embed(0.15, 200), embed(-0.15, 200)
    score = lambda e: fitted.confidences(np.hstack([blind(len(e)), fitted.appearance.score(e)[:, None]]))
    assert np.mean(score(fresh_pos)[:, None] > score(fresh_neg)[None, :]) > 0.85  # the head carries it (AUC)
    with pytest.raises(ValueError, match="embeddings"):
        fit_calibration(blind(150), blind(150), features=(*FEATURES, APPEARANCE))


def test_statuses_between_the_thresholds():
    zero = np.zeros(len(FEATURES))
    for bias, status in ((3.0, "ok"), (0.0, "low_confidence"), (-3.0, "no_object")):
        calibration = Calibration(zero, np.ones(len(FEATURES)), np.zeros(2 * len(FEATURES)), bias, accept=0.8,
                                  refuse=0.3)
        assert calibration.status(calibration.confidence(dict.fromkeys(FEATURES, 0.0))) == status


def calibrated_copy(tmp_path: Path, samples: list, seed: int = 0) -> Path:
    """A copy of the shipped model with a calibration fitted here (store() of the script, as a user runs it)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from calibrate_confidence import store
    from recon.runtime.pipeline import Reconstructor
    from recon.train.calibration import collect

    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model)
    with Reconstructor(model, device="cpu", threads=2, batch=8, calibrated=False) as reconstruct:
        pos = collect(reconstruct, samples)
        neg = collect(reconstruct, negatives(80, seed, reconstruct.model.image_size))
        fitted_on = {name: reconstruct.model.sha256(name) for name in ("sketch.onnx", "voxel.onnx")}
    # ~200 renders and 80 non-objects: 10x the script's ridge, or 36 weights would fit the noise
    fitted = fit_calibration(pos.columns(), neg.columns(), l2=1e-2, features=(*FEATURES, APPEARANCE),
                             embeddings=(pos.embedding, neg.embedding))
    store(model, fitted.to_dict(fitted_on, {"test": True}))
    return model


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """The shipped model calibrated on renders of a small synthetic training split, every framing."""
    root = tmp_path_factory.mktemp("confidence")
    done = subprocess.run([sys.executable, "-m", "recon.cli.main", "data", "synth", "--out", str(root / "data"),
                           "--objects", "20", "--views", "3", "--image-size", "128", "--voxel-res", "32",
                           "--workers", "1"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    samples = [s for seed in (0, 1) for s in objects([root / "data"], "train", 100, seed)]  # 2 views per object
    assert {s.framing for s in samples} == set(OBJECT_FRAMINGS)
    return calibrated_copy(root, samples)


def test_calibrated_model_flags_noise_and_flat_pictures_and_passes_the_example_renders(calibrated):
    from recon.runtime.pipeline import Reconstructor

    rng = np.random.default_rng(5)
    noise = [rng.integers(0, 256, (160, 200, 3), dtype=np.uint8) for _ in range(4)]
    flat = [np.clip(rng.uniform(40, 220, 3) + rng.normal(0, 4, (150, 150, 3)), 0, 255).astype(np.uint8)
            for _ in range(4)]
    with Reconstructor(calibrated, device="cpu", threads=2) as reconstruct:
        assert reconstruct.calibration is not None
        for result in reconstruct.batch(noise + flat):
            assert result.status in ("no_object", "low_confidence", "failed"), (result.status, result.confidence)
        for path in EXAMPLE_RENDERS:
            result = reconstruct(path)
            assert result.status == "ok" and 0 <= result.confidence <= 1, (path.name, result.confidence)
            assert json.loads(json.dumps(result.summary()))["confidence"] == result.confidence


def test_no_object_writes_only_the_preview(calibrated, tmp_path):
    from recon.runtime.pipeline import Reconstructor

    noise = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    with Reconstructor(calibrated, device="cpu", threads=2) as reconstruct:
        result = reconstruct(noise)
    if result.status == "failed":
        pytest.skip("no silhouette at all: refused before confidence")
    result.status = "no_object"
    assert set(result.save(tmp_path, "noise", formats=("obj",))) == {"preview"}
    result.status = "low_confidence"
    assert set(result.save(tmp_path, "noise", formats=("obj",))) == {"obj", "preview"}


def rewrite_listed(model: Path, data: dict) -> None:
    """Write a changed confidence.json and list its new hash in model.json (only the contents are wrong)."""
    from recon.runtime.model import sha256_file

    path = model / CALIBRATION_FILE
    path.write_text(json.dumps(data))
    manifest = json.loads((model / "model.json").read_text())
    manifest["files"][CALIBRATION_FILE] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    (model / "model.json").write_text(json.dumps(manifest))


def test_calibration_is_verified_with_the_model(calibrated, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(calibrated, model)
    assert load_calibration(load_model_dir(model)) is not None
    data = json.loads((model / CALIBRATION_FILE).read_text())
    data["bias"] += 1
    (model / CALIBRATION_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError, match="confidence.json: .*(sha256 does not match|model.json says)"):
        load_model_dir(model)
    data["bias"] -= 1
    rewrite_listed(model, {**data, "fitted_on": {**data["fitted_on"], "sketch.onnx": "0" * 64}})
    with pytest.raises(ModelError, match="fitted on another sketch.onnx"):
        load_calibration(load_model_dir(model))
    # Fitted before the view fit was evidence: the weights would be read against the wrong features.
    old = [name for name in FEATURES if not name.startswith("view_")]
    rewrite_listed(model, {**data, "features": old, "mean": data["mean"][:len(old)], "std": data["std"][:len(old)]})
    with pytest.raises(ModelError, match="unreadable confidence calibration .*feature list.*calibrate_confidence"):
        load_calibration(load_model_dir(model))


def test_sketch_net_without_features_loads_but_not_with_an_appearance_calibration(calibrated, tmp_path):
    """Exports before the `features` output still run; a calibration that weighs them is refused on them."""
    import onnx

    from recon.runtime.model import sha256_file
    from recon.runtime.pipeline import Reconstructor

    model = tmp_path / "model"
    shutil.copytree(calibrated, model)
    graph = onnx.load(str(model / "sketch.onnx"))
    kept = [output for output in graph.graph.output if output.name != "features"]
    assert len(kept) == len(graph.graph.output) - 1
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    onnx.save(graph, str(model / "sketch.onnx"))
    data = json.loads((model / CALIBRATION_FILE).read_text())
    rewrite_listed(model, {**data, "fitted_on": {**data["fitted_on"], "sketch.onnx": sha256_file(model / "sketch.onnx")}})
    manifest = json.loads((model / "model.json").read_text())
    manifest["files"]["sketch.onnx"] = {"sha256": sha256_file(model / "sketch.onnx"),
                                        "bytes": (model / "sketch.onnx").stat().st_size}
    (model / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="weighs the sketch net's features.*calibrate_confidence"):
        Reconstructor(model, device="cpu", threads=2)
    with Reconstructor(model, device="cpu", threads=2, calibrated=False) as reconstruct:
        result = reconstruct(EXAMPLE_RENDERS[0])
    assert result.ok and result.features is None and APPEARANCE not in result.evidence


def test_shipped_model_calibration_when_present():
    """Once scripts/calibrate_confidence.py has been run on the shipped model, its examples must pass."""
    model = load_model_dir(default_model_dir())
    if load_calibration(model) is None:
        pytest.skip("the shipped model has no confidence.json yet (run scripts/calibrate_confidence.py)")
    from recon.runtime.pipeline import Reconstructor

    with Reconstructor(device="cpu", threads=2) as reconstruct:
        statuses = {}
        for path in EXAMPLE_RENDERS:
            unlike = unlike_background(path)
            rows, cols = np.nonzero(unlike)  # a detector's box: the object's, a few pixels loose
            box = (cols.min() - 3, rows.min() - 2, cols.max() + 4, rows.max() + 3)
            for framing, options in (("auto", {}), ("box", {"box": box}), ("mask", {"mask": unlike})):
                result = reconstruct(path, **options)
                statuses[path.stem, framing] = (result.framing, result.status, result.confidence)
        noise = reconstruct(np.random.default_rng(2).integers(0, 256, (128, 128, 3), dtype=np.uint8))
    assert all(status == "ok" and framing == key[1] for key, (framing, status, _) in statuses.items()), statuses
    assert noise.status != "ok"


def unlike_background(path: Path) -> np.ndarray:
    """A plain render's object mask, as a user's rough segmentation: the pixels unlike its corner's colour."""
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int16)
    return np.abs(rgb - rgb[0, 0]).max(axis=-1) > 40


def test_cli_reports_confidence_and_refusals(calibrated, tmp_path):
    from PIL import Image

    from cli_runner import run_cli

    Image.fromarray(np.random.default_rng(3).integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    shutil.copy(EXAMPLE_RENDERS[0], tmp_path / "render.png")
    done = run_cli("infer", tmp_path / "noise.png", tmp_path / "render.png", "--model", calibrated,
                   "--out", tmp_path / "out", "--device", "cpu", "--threads", "2")
    entries = {Path(e["input"]).name: e for e in json.loads((tmp_path / "out" / "summary.json").read_text())["results"]}
    assert entries["render.png"]["status"] == "ok" and 0 <= entries["render.png"]["confidence"] <= 1
    assert "render.obj" in entries["render.png"]["outputs"]["obj"]
    noise = entries["noise.png"]
    assert noise["status"] in ("no_object", "low_confidence", "failed")
    assert done.returncode == (0 if noise["status"] == "low_confidence" else 1), done.stderr
    lines = " ".join((done.stdout + done.stderr).split())
    assert f"ok (confidence {entries['render.png']['confidence']:.2f})" in lines
    if noise["status"] == "no_object":
        assert "no_object" in lines and "no mesh written" in lines and "obj" not in noise["outputs"]


def test_solidity_is_the_hull_of_every_pixel_corner():
    """The per-row hull corners give exactly the number the hull of all 4 x area pixel corners gives (the
    calibration was fitted on that): blobs, their fragments, one pixel, one row, a diagonal, an L."""
    from scipy import ndimage
    from scipy.spatial import ConvexHull

    from recon.runtime.confidence import _solidity

    def every_corner(part):
        rows, cols = np.nonzero(part)
        corners = np.concatenate([np.stack([rows + dy, cols + dx], 1) for dy in (0, 1) for dx in (0, 1)])
        return float(min(1.0, part.sum() / ConvexHull(corners).volume))

    rng = np.random.default_rng(0)
    parts = [np.eye(12, dtype=bool), np.pad(np.ones((1, 1), bool), 3), np.pad(np.ones((1, 9), bool), 2)]
    ell = np.zeros((20, 20), bool)
    ell[2:18, 3:7] = ell[13:18, 3:16] = True
    parts.append(ell)
    for size in (16, 64, 128, 300):
        noise = ndimage.gaussian_filter(rng.random((size, size)), rng.uniform(1, 6))
        labels, count = ndimage.label(noise > np.quantile(noise, 0.7))
        parts += [labels == label for label in range(1, min(count, 6) + 1)]
    assert [_solidity(part) for part in parts] == [every_corner(part) for part in parts]
    assert _solidity(ell) < 1.0 == _solidity(parts[1]) == _solidity(parts[2])
