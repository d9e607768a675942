"""The clutter benchmark: `recon-cli data clutter` writes pictures with true box, mask and voxels;
scripts/eval_clutter.py scores a model on them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_runner import assert_one_line_error, run_cli
from recon.runtime.framing import read_boxes
from recon.train.data import load_manifest, load_voxels

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("clutter")
    done = run_cli("data", "synth", "--out", root / "data", "--objects", "5", "--views", "2", "--image-size", "96",
                   "--voxel-res", "32", "--workers", "1")
    assert done.returncode == 0, done.stderr
    done = run_cli("data", "clutter", "--data", root / "data", "--out", root / "bench", "--views-per-object", "2",
                   "--size", "96")
    assert done.returncode == 0, done.stderr
    return root


def test_bench_pictures_and_ground_truth(bench):
    manifest = json.loads((bench / "bench" / "manifest.json").read_text())
    tests = [e for e in load_manifest(bench / "data")["objects"] if e["split"] == "test"]
    assert len(manifest["entries"]) == 2 * len(tests) > 0
    boxes = read_boxes(bench / "bench" / "boxes.csv")
    for entry in manifest["entries"]:
        picture = np.asarray(Image.open(bench / "bench" / entry["picture"]))
        mask = np.asarray(Image.open(bench / "bench" / entry["mask"])) >= 128
        assert picture.shape == (96, 96, 3) and mask.shape == (96, 96) and mask.any()
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert entry["box"] == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
        assert list(boxes[f"{entry['id']}.png"][:4]) == entry["box"]
        outside = picture[~mask].astype(int)
        assert outside.std() > 10  # a cluttered scene around the object, not a flat render background
        voxels = np.load(bench / "bench" / "voxels" / f"{entry['object_id']}.npz")["voxels"]
        assert np.array_equal(voxels, load_voxels(bench / "data", entry["object_id"]))
        assert (bench / "bench" / entry["plain"]).is_file() and (bench / "bench" / entry["plain_mask"]).is_file()


def test_same_seed_same_pictures(bench, tmp_path):
    done = run_cli("data", "clutter", "--data", bench / "data", "--out", tmp_path / "again", "--views-per-object", "2",
                   "--size", "96")
    assert done.returncode == 0, done.stderr
    first = json.loads((bench / "bench" / "manifest.json").read_text())["entries"][0]
    assert (tmp_path / "again" / first["picture"]).read_bytes() == (bench / "bench" / first["picture"]).read_bytes()


def test_eval_scores_each_variant(bench, model_dir, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval_clutter.py"), str(bench / "bench"),
                           "--model", str(model_dir), "--max-pictures", "2", "--json", str(tmp_path / "eval.json"),
                           "--out", str(tmp_path / "eval.md"), "--sheet", str(tmp_path / "sheet.png"),
                           "--threads", "2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "eval.json").read_text())
    assert {r["variant"] for r in result["rows"]} == {"plain", "cluttered", "cluttered+box", "cluttered+mask"}
    boxed = [r for r in result["rows"] if r["variant"] == "cluttered+box"]
    assert all(r["framing"] == pytest.approx(1.0) for r in boxed)  # the true box frames as the true mask does
    masked = [r for r in result["rows"] if r["variant"] == "cluttered+mask"]
    assert all(r["framing"] == pytest.approx(1.0) and r["silhouette"] == pytest.approx(1.0) for r in masked)
    for row in result["rows"]:
        assert 0 <= row["framing"] <= 1 and 0 <= row["silhouette"] <= 1 and 0 <= row["voxel"] <= 1
    assert "| all | cluttered |" in (tmp_path / "eval.md").read_text()
    assert Image.open(tmp_path / "sheet.png").size[0] > 600


def test_bad_dataset_or_split_is_one_line(bench, tmp_path):
    done = run_cli("data", "clutter", "--data", tmp_path, "--out", tmp_path / "bench")
    assert_one_line_error(done, "not a dataset folder")
    done = run_cli("data", "clutter", "--data", bench / "data", "--out", tmp_path / "b2", "--split", "nope")
    assert_one_line_error(done, "no 'nope' objects")
    assert not (tmp_path / "b2" / "manifest.json").exists()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "a.jpg").write_bytes(b"a picture")
    done = run_cli("data", "clutter", "--data", bench / "data", "--out", foreign)
    assert_one_line_error(done, "holds other files")
    assert [p.name for p in foreign.iterdir()] == ["a.jpg"]
