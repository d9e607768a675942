"""The 3D-stage diagnosis (recon.train.diagnose, scripts/diagnose_3d.py) on a tiny rendered dataset
and the shipped model: retrieval finds a training object from its own view, the oracle scores
identical grids 1, the predicted-sketch column is what `recon-cli eval` measures, the report keeps
hand-written notes, bad input is one error line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recon.runtime.model import default_model_dir, load_model_dir
from recon.runtime.preprocess import frame_view
from recon.train import diagnose
from recon.train.data import RenderSettings, load_view, synth

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "diagnose_3d.py"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """6 procedural objects per category (1 test each), 2 views, 128 px, 32^3."""
    out = tmp_path_factory.mktemp("diag") / "tiny"
    synth(out, objects=6, categories=["chair", "car", "airplane"], seed=0,
          settings=RenderSettings(views=2, image_size=128, voxel_res=32))
    return out


@pytest.fixture(scope="module")
def model():
    return load_model_dir(default_model_dir())


def test_retrieval_of_a_training_view_returns_its_object_and_the_cache_is_the_same_library(tiny, model, tmp_path):
    library = diagnose.build_library([tiny], model.image_size, model.fill, 2, 16, cache=tmp_path)
    assert len(library.ids) == 15 and len(library.keys) == 30  # 5 training objects x 3 categories, 2 views each
    for index, object_id in enumerate(library.ids):
        framed = frame_view(load_view(tiny, str(object_id), 1), model.image_size, model.fill)
        key = diagnose.descriptor(framed["normals"], framed["depth"], framed["mask"], 16)
        assert library.nearest(key[None])[0] == index, object_id
    cached = diagnose.build_library([tiny], model.image_size, model.fill, 2, 16, cache=tmp_path)
    assert len(list(tmp_path.glob("library-*.npz"))) == 1
    assert np.array_equal(cached.keys, library.keys) and np.array_equal(cached.ids, library.ids)


def test_oracle_retrieval_scores_identical_grids_one_and_finds_them(tiny, model):
    library = diagnose.build_library([tiny], model.image_size, model.fill, 1, 16)
    grids = library.voxels.reshape(-1, 32, 32, 32)
    found, scores = library.best_match(grids, chunk=4)  # several chunks: the running best must carry over
    assert np.allclose(scores, 1.0)
    assert np.array_equal(library.voxels[found], library.voxels)
    emptied = grids.copy()
    emptied[:, :16] = False  # half of every object gone: still found, no longer a perfect match
    found, scores = library.best_match(emptied)
    assert (scores < 1).all() and (scores > 0).all()


def test_predicted_sketch_column_is_what_recon_cli_eval_measures(tiny, model):
    from recon.train.evaluate import evaluate, onnx_predictor

    predict, size, res, threshold = onnx_predictor(model.path, "cpu")
    expected = evaluate(predict, tiny, size, res, trials=2, threshold=threshold)["iou_32"]
    nets = diagnose.SketchVoxelNets(model.path)
    entries = diagnose.split_objects(tiny, "test")
    result = diagnose.diagnose_split(nets, tiny, entries, diagnose.trial_views(entries, 2, 0), None, 16, threshold)
    nets.close()
    measured = diagnose.per_category(result, "pred_sketch")
    assert measured == pytest.approx(expected, abs=1e-4)
    assert len(result["object"]) == 2 * len(entries)


def run_script(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=600)


def test_report_has_every_table_and_keeps_hand_written_notes(tiny, tmp_path):
    out, sheet = tmp_path / "diag.md", tmp_path / "diag.png"
    args = ["--data", tiny, "--out", out, "--sheet", sheet, "--cache", tmp_path / "cache", "--train-objects", 1,
            "--trials", 1, "--sheet-objects", 1]
    done = run_script(*args)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "scripts/diagnose_3d.py --data" in text.splitlines()[3]  # the command, at the top
    for column in diagnose.IOU_COLUMNS.values():
        assert column in text
    assert sum(line.startswith(("| chair |", "| car |", "| airplane |")) for line in text.splitlines()) == 6
    assert "| voxel |" in text  # the shipped model's recorded training curve
    assert sheet.stat().st_size > 0
    out.write_text(text + "Reading: the sketches are fine.\n")
    assert run_script(*args).returncode == 0
    kept = out.read_text()
    assert kept.endswith("\nReading: the sketches are fine.\n") and kept.count("the sketches are fine") == 1


@pytest.mark.parametrize("args, message", [
    (["--data", "/nonexistent"], "not a dataset folder"),
    (["--trials", "0"], "--trials must be positive"),
    (["--run", "/nonexistent"], "no metrics.jsonl"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(tiny, tmp_path, args, message):
    out = tmp_path / "diag.md"
    full = ["--data", tiny, "--out", out, "--sheet", tmp_path / "d.png", "--cache", tmp_path / "c"]
    done = run_script(*full, *args)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: ") and message in done.stderr and "Traceback" not in done.stderr
    assert not out.exists() and not (tmp_path / "d.png").exists()
