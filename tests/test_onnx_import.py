"""Fine-tuning an exported model folder: its ONNX weights back into the torch nets (recon.train.onnx_import)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cli_runner import assert_one_line_error, run_cli
from recon.train.checkpoint import checkpoint_path, load_checkpoint
from recon.train.data import RenderSettings, synth
from recon.train.loop import TrainConfig, train
from recon.runtime.errors import ModelError
from recon.train.onnx_import import check_against_graph, freeze_batchnorm, graph_difference, start_from_model
from recon.train.presets import build_sketch_net, build_voxel_net, get_preset

SHIPPED = Path(__file__).resolve().parents[1] / "recon" / "models" / "default"
CHANNELS = {"sketch": 3, "voxel": 5}


def picture_like(name: str, side: int) -> torch.Tensor:
    x = torch.rand(2, CHANNELS[name], side, side, generator=torch.Generator().manual_seed(1))
    if name == "voxel":
        x[:, 4] = (x[:, 4] > 0.5).float()  # a silhouette channel of 0 and 1
    return x


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finetune") / "data"
    synth(out, objects=1, categories=["chair", "car", "airplane"], seed=3,
          settings=RenderSettings(views=2, image_size=64, voxel_res=32))
    return out


@pytest.mark.parametrize("name", ["sketch", "voxel"])
def test_shipped_weights_reproduce_the_onnx_graph_in_eval_and_frozen_training_mode(name):
    preset = get_preset("edge2")
    net = (build_sketch_net if name == "sketch" else build_voxel_net)(preset)
    start_from_model({name: net}, SHIPPED, preset)
    x = picture_like(name, preset.image_size)
    assert graph_difference(name, net.eval(), SHIPPED / f"{name}.onnx", x) < 1e-4
    freeze_batchnorm(net.train())  # what the training loop runs a fine-tune in
    assert graph_difference(name, net, SHIPPED / f"{name}.onnx", x) < 1e-4


def test_a_net_that_does_not_compute_the_graph_is_refused():
    preset = get_preset("edge2")
    net = build_voxel_net(preset)
    start_from_model({"voxel": net}, SHIPPED, preset)  # checked against the graph inside: passes
    with torch.no_grad():
        net.decoder.to_subvoxels.bias.add_(1.0)  # one layer off, as a mismatched import would leave it
    with pytest.raises(ModelError, match="differs from the graph"):
        check_against_graph("voxel", net, SHIPPED / "voxel.onnx", picture_like("voxel", preset.image_size))


def test_fine_tuning_starts_from_the_model_folder(model_dir, data, tmp_path):
    """`edge` (ConvTranspose layers) through the training loop: an epoch at a negligible rate keeps
    the exported voxel net's outputs; a fresh net would not have them."""
    train(TrainConfig(stage="voxel", data=str(data), out=str(tmp_path / "run"), preset="edge", epochs=1, batch=2,
                      lr=1e-12, init_from=str(model_dir)))
    state = load_checkpoint(checkpoint_path(tmp_path / "run", "voxel"))
    net = build_voxel_net(get_preset("edge"))
    net.load_state_dict(state["nets"]["voxel"])
    x = picture_like("voxel", get_preset("edge").image_size)
    assert graph_difference("voxel", net.eval(), model_dir / "voxel.onnx", x) < 1e-4


def test_a_model_of_another_preset_is_refused_in_one_line(model_dir, data, tmp_path):
    result = run_cli("train", "sketch", "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "edge2",
                     "--epochs", "1", "--init-from", str(model_dir))
    assert_one_line_error(result, "preset 'edge'")
    assert not (tmp_path / "run" / "sketch.pt").exists()


def test_a_folder_without_the_net_is_refused_in_one_line(data, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("train", "voxel", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
                     "--init-from", str(tmp_path / "empty"))
    assert_one_line_error(result, "no voxel.onnx")


def test_pytorch_eager_reference_runs_from_a_model_folder():
    """`profile --compare --weights MODEL` and bench_runtime's eager side for a model with no run folder
    (the shipped one): the imported nets against ONNX Runtime on the same inputs."""
    from recon.export.parity import torch_reference

    rows = torch_reference(SHIPPED, SHIPPED, iterations=1, threads=1)
    assert set(rows) == {"sketch", "voxel"}
    for row in rows.values():
        assert row["max_abs_diff"] < 1e-3 and row["pytorch_eager_ms"] > 0
