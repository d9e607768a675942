"""Training stages on real (tiny) data: checkpoints, exact resume, DDP, errors, the paper preset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_runner import assert_one_line_error, run_cli
from recon.train.checkpoint import checkpoint_path, load_checkpoint
from recon.train.data import RenderSettings, synth
from recon.train.evaluate import evaluate, table1, torch_predictor
from recon.train.loop import STAGES, TrainConfig, train


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "data"
    synth(out, objects=2, categories=["chair", "car", "airplane"], seed=5,
          settings=RenderSettings(views=2, image_size=64, voxel_res=32))
    return out


def config(data, out, stage, **overrides) -> TrainConfig:
    base = dict(stage=stage, data=data if isinstance(data, list) else str(data), out=str(out), preset="edge", epochs=1,
                batch=4 if stage == "gan" else 2, seed=0)
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    """Every stage of the edge preset, in order, one epoch each."""
    out = tmp_path_factory.mktemp("train") / "run"
    for stage in ("sketch", "voxel", "gan", "joint", "direct"):
        train(config(data, out, stage, batch=2 if stage != "gan" else 3, alpha=1e-3))
    return out


def test_every_stage_writes_a_self_describing_checkpoint(run):
    for stage, spec in STAGES.items():
        state = load_checkpoint(checkpoint_path(run, stage), expect_preset="edge")
        assert state["stage"] == stage and state["epoch"] == 0
        assert set(state["nets"]) == set(spec.nets) == set(state["optimizers"])
        assert json.loads(state["config"])["stage"] == stage
        assert state["data_fingerprint"]
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["stage"] for line in lines] == ["sketch", "voxel", "gan", "joint", "direct"]
    assert all(line["samples_per_s"] > 0 for line in lines)


def test_joint_starts_from_the_voxel_weights(run):
    voxel = load_checkpoint(checkpoint_path(run, "voxel"))["nets"]["voxel"]
    joint = load_checkpoint(checkpoint_path(run, "joint"))["nets"]["voxel"]
    # fine-tuned, so close to but not equal to the voxel stage's weights
    key = "fc.weight"
    assert not torch.equal(voxel[key], joint[key])
    assert (voxel[key] - joint[key]).abs().max() < 0.1 * voxel[key].abs().max()


def test_resume_reproduces_an_uninterrupted_run(data, tmp_path):
    train(config(data, tmp_path / "straight", "voxel", epochs=2))
    train(config(data, tmp_path / "resumed", "voxel", epochs=1))
    train(config(data, tmp_path / "resumed", "voxel", epochs=2, resume=True))
    straight = load_checkpoint(checkpoint_path(tmp_path / "straight", "voxel"))
    resumed = load_checkpoint(checkpoint_path(tmp_path / "resumed", "voxel"))
    assert straight["epoch"] == resumed["epoch"] == 1
    for key, value in straight["nets"]["voxel"].items():
        assert torch.equal(value, resumed["nets"]["voxel"][key]), key
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]  # no lost or repeated epoch


def test_divergence_stops_with_a_clear_message_and_keeps_the_last_checkpoint(data, tmp_path):
    train(config(data, tmp_path, "sketch"))
    before = checkpoint_path(tmp_path, "sketch").read_bytes()
    result = run_cli("train", "sketch", "--data", data, "--out", tmp_path, "--epochs", "3", "--batch", "2",
                     "--resume", "--lr", "1e30", "--preset", "edge")
    assert_one_line_error(result, "loss became", "last good checkpoint")
    assert checkpoint_path(tmp_path, "sketch").read_bytes() == before


def test_evaluation_reports_the_paper_layout(run, data):
    predict, preset = torch_predictor(run, "full")
    result = evaluate(predict, data, preset.image_size, preset.voxel_res, trials=2, batch=2)
    assert set(result["iou"]) == {"airplane", "car", "chair", "mean"}
    assert len(result["trials"]) == 2 and result["resolution"] == 32
    assert set(result["per_threshold"]) == {str(round(0.1 + 0.05 * i, 2)) for i in range(10)}
    assert result["split"] == "test" and result["threshold"] == 0.4
    assert all(0 <= v <= 1 for row in result["per_threshold"].values() for v in row.values())
    assert 0 <= result["sketch"]["silhouette_iou"] <= 1 and result["sketch"]["normal_angle_deg"] >= 0
    assert table1(result).splitlines()[-1].startswith("| average |")


def test_eval_cli_writes_json_for_every_variant(run, data, tmp_path):
    for variant in ("full", "no-refine", "direct"):
        result = run_cli("eval", "--data", data, "--model", run, "--variant", variant, "--trials", "1",
                         "--json", tmp_path / f"{variant}.json")
        assert result.returncode == 0, result.stderr
        saved = json.loads((tmp_path / f"{variant}.json").read_text())
        assert saved["variant"] == variant and "mean" in saved["iou"]


def test_ddp_with_two_cpu_processes(data, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               "-m", "recon.cli.main", "train", "voxel", "--data", str(data), "--out", str(tmp_path),
               "--epochs", "1", "--batch", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("voxel: ") == 1, result.stdout  # one summary, from the first process
    metrics = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["processes"] == 2
    assert load_checkpoint(checkpoint_path(tmp_path, "voxel"))["epoch"] == 0


def test_paper_preset_trains_saves_loads_and_evaluates_at_batch_1(tmp_path):
    data = tmp_path / "data"
    synth(data, objects=2, categories=["chair"], seed=1, settings=RenderSettings(views=1, image_size=64, voxel_res=128))
    for stage in ("sketch", "voxel", "gan", "joint", "direct"):
        train(config(data, tmp_path / "run", stage, preset="paper", batch=1))
    predict, preset = torch_predictor(tmp_path / "run", "full")
    assert (preset.image_size, preset.voxel_res) == (256, 128)
    result = evaluate(predict, data, preset.image_size, preset.voxel_res, trials=1, batch=1)
    assert result["resolution"] == 128 and 0 <= result["iou"]["chair"] <= 1


# ---------------------------------------------------------------- bad input


def test_data_folder_without_manifest(tmp_path):
    result = run_cli("train", "voxel", "--data", tmp_path, "--out", tmp_path / "run")
    assert_one_line_error(result, "no manifest.json")
    assert not (tmp_path / "run").exists()


def test_a_run_folder_with_other_files_is_refused(data, tmp_path):
    foreign = tmp_path / "examples"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a run")
    result = run_cli("train", "voxel", "--data", data, "--out", foreign, "--epochs", "1")
    assert_one_line_error(result, "holds other files")
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_several_data_folders_train_together(data, tmp_path):
    other = tmp_path / "other"
    synth(other, objects=2, categories=["chair", "car", "airplane"], seed=6,
          settings=RenderSettings(views=2, image_size=64, voxel_res=32))
    steps = []
    for folders in ([str(data)], [str(data), str(other)]):
        out = tmp_path / f"run{len(folders)}"
        train(config(folders, out, "voxel", max_objects=1), lambda e, step, n, avg: steps.append(n))
        state = load_checkpoint(checkpoint_path(out, "voxel"))
        fingerprints = [json.loads((Path(f) / "manifest.json").read_text())["fingerprint"] for f in folders]
        assert state["data_fingerprint"] == "+".join(fingerprints)
    assert steps[-1] == 2 * steps[0]  # the second folder adds as many samples as the first


def test_batch_larger_than_the_dataset(data, tmp_path):
    result = run_cli("train", "voxel", "--data", data, "--out", tmp_path / "run", "--batch", "1000")
    assert_one_line_error(result, "--batch 1000", "training samples")
    assert not (tmp_path / "run").exists()


def test_existing_checkpoint_is_not_overwritten_without_resume(run, data):
    before = checkpoint_path(run, "sketch").read_bytes()
    assert_one_line_error(run_cli("train", "sketch", "--data", data, "--out", run), "--resume")
    assert checkpoint_path(run, "sketch").read_bytes() == before


def test_checkpoint_of_another_preset_is_refused(run, data, tmp_path):
    (tmp_path / "voxel.pt").write_bytes(checkpoint_path(run, "voxel").read_bytes())  # an edge checkpoint
    result = run_cli("train", "joint", "--data", data, "--out", tmp_path, "--preset", "paper")
    assert_one_line_error(result, "preset 'edge'", "expected 'paper'")
    assert not (tmp_path / "joint.pt").exists()


def test_corrupt_checkpoint_is_refused(data, tmp_path):
    (tmp_path / "voxel.pt").write_bytes(b"PK\x03\x04 truncated")
    assert_one_line_error(run_cli("train", "joint", "--data", data, "--out", tmp_path), "corrupt")
    assert_one_line_error(run_cli("eval", "--data", data, "--model", tmp_path, "--variant", "no-refine"),
                          "voxel.pt", "corrupt")
    assert_one_line_error(run_cli("eval", "--data", data, "--model", tmp_path, "--variant", "direct"),
                          "direct.pt", "not found")


def test_unknown_preset_lists_the_valid_ones(data, tmp_path):
    assert_one_line_error(run_cli("train", "sketch", "--data", data, "--out", tmp_path, "--preset", "huge"),
                          "unknown preset 'huge'", "edge", "paper")


def test_exported_model_folder_evaluates_like_its_run_folder(run, data, tmp_path):
    from recon.export.onnx_export import export_model
    from recon.train.evaluate import load_predictor

    export_model(run, tmp_path / "model", log=None)
    scores = {}
    for source in (run, tmp_path / "model"):
        predict, image_size, voxel_res, threshold = load_predictor(source)
        scores[source] = evaluate(predict, data, image_size, voxel_res, trials=1, batch=2, threshold=threshold)
    torch_run, onnx_model = scores[run], scores[tmp_path / "model"]
    for key, value in torch_run["per_threshold"].items():  # same weights, same numbers (ORT vs eager)
        assert onnx_model["per_threshold"][key]["mean"] == pytest.approx(value["mean"], abs=0.01)
    assert onnx_model["sketch"]["silhouette_iou"] == pytest.approx(torch_run["sketch"]["silhouette_iou"], abs=0.01)
