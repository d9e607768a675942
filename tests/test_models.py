"""The networks: shapes for both presets, the paper's layer structure, torchvision weight loading,
the WGAN-GP penalty against its analytic value, and that the nets can learn (overfit tiny sets)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recon.runtime.errors import InputError, ModelError
from recon.train import presets
from recon.train.presets import (
    PRESETS,
    Preset,
    build_critic,
    build_generator,
    build_sketch_net,
    build_voxel_net,
    get_preset,
    model_args,
    preset_from_args,
)
from recon.train.resnet import ResNetEncoder, load_torchvision_state_dict
from recon.train.shape_gan import Critic, Generator, gradient_penalty
from recon.train.sketch_net import SketchNet
from recon.train.voxel_net import VOXEL_RESOLUTIONS, VoxelNet


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _count(module: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def _check_nets(preset: Preset, batch: int) -> None:
    """Every net of `preset`: output shapes and ranges."""
    s, r = preset.image_size, preset.voxel_res
    rgb = torch.randn(batch, 3, s, s)  # (B, 3, S, S)

    sketch = build_sketch_net(preset).eval()
    out = sketch(rgb)
    assert set(out) == {"normals", "depth", "silhouette_logits", "features"}
    assert out["features"].shape[0] == batch and out["features"].ndim == 2
    assert out["normals"].shape == (batch, 3, s, s)
    assert out["depth"].shape == (batch, 1, s, s)
    assert out["silhouette_logits"].shape == (batch, 1, s, s)
    assert torch.allclose(out["normals"].norm(dim=1), torch.ones(batch, s, s), atol=1e-4)

    sk = torch.cat([out["normals"], out["depth"], out["silhouette_logits"]], dim=1)  # (B, 5, S, S)
    voxel = build_voxel_net(preset).eval()
    assert voxel(sk).shape == (batch, r, r, r)
    latent = voxel.encode(sk)
    assert latent.shape == (batch, preset.latent_dim)
    assert voxel.decode(latent).shape == (batch, r, r, r)

    generator = build_generator(preset).eval()
    occ = generator(torch.randn(batch, preset.latent_dim))
    assert occ.shape == (batch, r, r, r)
    assert occ.min() >= 0 and occ.max() <= 1

    critic = build_critic(preset).eval()
    assert critic(occ).shape == (batch,)


def test_edge_preset_shapes():
    with torch.no_grad():
        _check_nets(get_preset("edge"), batch=2)


def test_paper_preset_shapes():
    # Full size (75M-parameter VoxelNet, 128^3 outputs): batch 1, eval, no grad keeps it to seconds.
    with torch.no_grad():
        _check_nets(get_preset("paper"), batch=1)


def test_paper_encoder_is_512x8x8_at_256():
    p = get_preset("paper")
    enc = ResNetEncoder(in_channels=3, width=p.encoder_width).eval()
    with torch.no_grad():
        feats = enc(torch.randn(1, 3, 256, 256))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (64, 128, 128), (64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8)
    ]  # fmt: skip
    assert enc.conv1.kernel_size == (3, 3) and enc.conv1.stride == (2, 2)


@pytest.mark.parametrize("size", [96, 128, 256])
def test_sketch_net_any_multiple_of_32(size):
    net = SketchNet(width=0.125).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, size, size))
    assert all(out[k].shape[-2:] == (size, size) for k in ("normals", "depth", "silhouette_logits"))
    assert out["features"].shape == (1, net.encoder.channels[4] + net.encoder.channels[3])


def test_direct_baseline_takes_rgb():
    net = build_voxel_net(get_preset("edge"), in_channels=3).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 128, 128)).shape == (1, 32, 32, 32)


@pytest.mark.parametrize("res", VOXEL_RESOLUTIONS)
def test_3d_layer_structure(res):
    voxel = VoxelNet(voxel_res=res, encoder_width=0.125, decoder_width=2)
    gen = Generator(voxel_res=res, width=2)
    critic = Critic(voxel_res=res, width=2)
    assert _count(voxel.decoder, nn.ConvTranspose3d) == 5
    assert _count(voxel.decoder, nn.BatchNorm3d) == 4  # the first four, not the logits layer
    assert _count(gen, nn.ConvTranspose3d) == 5
    assert _count(critic, nn.Conv3d) == 5
    assert _count(critic, nn.modules.batchnorm._BatchNorm) == 0
    assert all(m.negative_slope == 0.2 for m in critic.modules() if isinstance(m, nn.LeakyReLU))
    # The generator and the VoxelNet decoder are the same module: weights move between them.
    voxel.decoder.load_state_dict(gen.decoder.state_dict())


def test_paper_decoder_channels():
    dec = build_voxel_net(get_preset("paper")).decoder
    convs = [m for m in dec.modules() if isinstance(m, nn.ConvTranspose3d)]
    assert [c.out_channels for c in convs] == [512, 256, 128, 64, 1]
    assert convs[0].kernel_size == (8, 8, 8)
    assert all(c.kernel_size == (4, 4, 4) and c.stride == (2, 2, 2) for c in convs[1:])


# --- presets -------------------------------------------------------------------------------------


def test_presets():
    paper = get_preset("paper")
    assert (paper.image_size, paper.voxel_res, paper.encoder_width, paper.latent_dim) == (256, 128, 1.0, 200)
    with pytest.raises(InputError, match="edge, edge2, edge2-lite, paper"):
        get_preset("huge")
    for p in PRESETS.values():
        args = json.loads(json.dumps(model_args(p)))
        assert preset_from_args(args) == p
    with pytest.raises(ModelError, match="unknown fields"):
        preset_from_args({**model_args(paper), "depth": 3})
    with pytest.raises(ModelError, match="voxel_res"):
        preset_from_args({**model_args(paper), "voxel_res": 48})
    with pytest.raises(InputError, match="image_size"):
        Preset(name="x", image_size=100, voxel_res=32, encoder_width=0.5, decoder_width=8, gan_width=8)
    assert presets.VOXEL_RESOLUTIONS == VOXEL_RESOLUTIONS


def test_presets_module_does_not_load_torch():
    # The CLI lists presets without paying for torch: the factories import the nets lazily.
    code = "import sys, recon.train.presets; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- torchvision weights -------------------------------------------------------------------------


def _torchvision_resnet18_state_dict() -> dict:
    """A resnet18 state_dict written from torchvision's key names and shapes (random values)."""
    sd = {}

    def bn(prefix, c):
        sd[f"{prefix}.weight"] = torch.rand(c)
        sd[f"{prefix}.bias"] = torch.randn(c)
        sd[f"{prefix}.running_mean"] = torch.randn(c)
        sd[f"{prefix}.running_var"] = torch.rand(c) + 0.5
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(7)

    sd["conv1.weight"] = torch.randn(64, 3, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for i, (planes, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
        for b in range(2):
            p = f"layer{i}.{b}"
            cin = inplanes if b == 0 else planes
            sd[f"{p}.conv1.weight"] = torch.randn(planes, cin, 3, 3)
            bn(f"{p}.bn1", planes)
            sd[f"{p}.conv2.weight"] = torch.randn(planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            if b == 0 and (stride != 1 or cin != planes):
                sd[f"{p}.downsample.0.weight"] = torch.randn(planes, cin, 1, 1)
                bn(f"{p}.downsample.1", planes)
        inplanes = planes
    sd["fc.weight"] = torch.randn(1000, 512)
    sd["fc.bias"] = torch.randn(1000)
    return sd


def test_load_torchvision_state_dict():
    tv = _torchvision_resnet18_state_dict()
    enc = ResNetEncoder(in_channels=3)
    # Same names: the encoder's keys are exactly torchvision's minus the classifier.
    assert set(enc.state_dict()) == set(tv) - {"fc.weight", "fc.bias"}
    report = load_torchvision_state_dict(enc, tv)
    assert report["adapted"] == ["conv1.weight"]
    assert sorted(report["skipped"]) == ["fc.bias", "fc.weight"]
    own = enc.state_dict()
    for k, v in own.items():
        if k != "conv1.weight":
            assert torch.equal(v, tv[k]), k
    assert torch.equal(own["conv1.weight"], tv["conv1.weight"][:, :, 2:5, 2:5])  # centre 3x3 of 7x7

    centre = tv["conv1.weight"][:, :, 2:5, 2:5]  # (64, 3, 3, 3)
    enc5 = ResNetEncoder(in_channels=5)
    load_torchvision_state_dict(enc5, tv)
    w5 = enc5.conv1.weight.detach()  # (64, 5, 3, 3): RGB repeated, scaled by 3/5
    assert torch.allclose(w5, torch.cat([centre, centre[:, :2]], dim=1) * 3 / 5)
    enc1 = ResNetEncoder(in_channels=1)
    load_torchvision_state_dict(enc1, tv)
    assert torch.allclose(enc1.conv1.weight.detach(), centre.sum(dim=1, keepdim=True))

    with pytest.raises(ModelError, match="width"):
        load_torchvision_state_dict(ResNetEncoder(width=0.5), tv)
    del tv["layer4.1.bn2.running_var"]
    with pytest.raises(ModelError, match="lacks 1"):
        load_torchvision_state_dict(ResNetEncoder(), tv)


# --- WGAN-GP -------------------------------------------------------------------------------------


class _LinearCritic(nn.Module):
    """D(x) = <w, x>: its gradient is w everywhere, whatever the interpolation point."""

    def __init__(self, shape):
        super().__init__()
        self.w = nn.Parameter(torch.randn(shape) * 0.1)

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)  # (B,)


def test_gradient_penalty_analytic():
    r = 8
    critic = _LinearCritic((r, r, r))
    real, fake = torch.rand(4, r, r, r), torch.rand(4, r, r, r)
    gp = gradient_penalty(critic, real, fake, lambda_gp=10.0)
    norm = critic.w.detach().norm()
    assert torch.allclose(gp, 10.0 * (norm - 1) ** 2, rtol=1e-5)
    # The penalty trains the critic: d/dw lambda (||w|| - 1)^2 = 2 lambda (||w|| - 1) w / ||w||.
    gp.backward()
    expected = 2 * 10.0 * (norm - 1) * critic.w.detach() / norm
    assert torch.allclose(critic.w.grad, expected, rtol=1e-4, atol=1e-7)


def test_gradient_penalty_on_critic():
    critic = Critic(voxel_res=32, width=2)
    gp = gradient_penalty(critic, torch.rand(2, 32, 32, 32), torch.rand(2, 32, 32, 32))
    assert gp.ndim == 0 and torch.isfinite(gp) and gp >= 0
    gp.backward()
    # Every weight shapes the critic's input gradient (the last bias alone does not).
    assert all(m.weight.grad is not None for m in critic.modules() if isinstance(m, nn.Conv3d))


# --- learning ------------------------------------------------------------------------------------


def _boxes(n: int, size: int = 64, res: int = 32, seed: int = 1):
    """n boxes of random extents in [0.2, 0.9], centred: rgb, 2.5D sketch (front view) and voxels.

    Orthographic front view: the silhouette is the box's x-y rectangle (row 0 at the top), the
    front face has normal +z and depth 2.2 - z/2, so the sketch determines all three extents.
    """
    g = torch.Generator().manual_seed(seed)
    c = (torch.arange(size) + 0.5) / size - 0.5  # pixel centres across [-0.5, 0.5]
    cv = (torch.arange(res) + 0.5) / res - 0.5  # voxel centres
    rgb = torch.zeros(n, 3, size, size)
    sketch = torch.zeros(n, 5, size, size)
    voxels = torch.zeros(n, res, res, res)
    for i in range(n):
        sx, sy, sz = (0.2 + 0.7 * torch.rand(3, generator=g)).tolist()
        m = (c.flip(0).abs() < sy / 2)[:, None] & (c.abs() < sx / 2)[None, :]  # (S, S) rows = -y
        sketch[i, 2][m] = 1.0  # normal (0, 0, 1)
        sketch[i, 3][m] = 2.2 - sz / 2
        sketch[i, 4][m] = 1.0
        rgb[i][:, m] = torch.rand(3, 1, generator=g) * 2 - 1
        rgb[i, 0][m] += sz  # a depth cue in the image
        voxels[i] = ((cv.abs() < sx / 2)[:, None, None] & (cv.abs() < sy / 2)[None, :, None]
                     & (cv.abs() < sz / 2)[None, None, :]).float()  # fmt: skip
    return rgb, sketch, voxels


def test_voxel_net_overfits_boxes():
    _, sketch, voxels = _boxes(4)
    net = VoxelNet(in_channels=5, voxel_res=32, encoder_width=0.125, decoder_width=8)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    best = 0.0
    for step in range(400):  # typically reaches 0.9 in 100-200 steps (~5 s)
        net.train()
        loss = F.binary_cross_entropy_with_logits(net(sketch), voxels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 9:
            net.eval()  # judged with running BN statistics, as at inference
            with torch.no_grad():
                pred = net(sketch) > 0
            target = voxels > 0.5
            best = ((pred & target).sum() / (pred | target).sum()).item()
            if best > 0.9:
                break
    assert best > 0.9, f"IoU {best:.3f} after {step + 1} steps"


def test_sketch_net_loss_falls():
    rgb, sketch, _ = _boxes(4)
    mask = sketch[:, 4:5]  # (B, 1, S, S)

    def loss_of(out):
        sil = F.binary_cross_entropy_with_logits(out["silhouette_logits"], mask)
        depth = (out["depth"] - sketch[:, 3:4]).abs().mean()
        cos = (out["normals"] * sketch[:, :3]).sum(1, keepdim=True)  # (B, 1, S, S)
        normals = ((1 - cos) * mask).sum() / mask.sum()
        return sil + depth + normals

    net = SketchNet(width=0.125).train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    with torch.no_grad():
        first = loss_of(net(rgb)).item()
    for _ in range(40):
        loss = loss_of(net(rgb))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = loss_of(net(rgb)).item()
    assert last < 0.5 * first, (first, last)
