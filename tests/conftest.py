"""Shared helpers and fixtures: run folders of fresh nets, a real model folder exported once per session."""

from __future__ import annotations

import io
import json
import os

import pytest

# The test nets are small: one intra-op thread each. With more, PyTorch's threads busy-wait on each
# other on 2 shared cores (measured 60x slower); CLI and torchrun subprocesses inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def noise_bytes(fmt: str) -> bytes:
    """A 64x64 noise picture in format `fmt` (incompressible, so cutting it in half really truncates the pixels)."""
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def save_net(path, stage: str, name: str, net, preset, *, epoch: int = 0, fingerprint: str = "test") -> None:
    """One checkpoint holding `net` as `recon-cli train <stage>` writes it (docs/design.md keys)."""
    import torch

    from recon.train.checkpoint import save_checkpoint
    from recon.train.presets import model_args

    save_checkpoint(path, {
        "stage": stage, "epoch": epoch, "model_args": model_args(preset), "config": json.dumps({"stage": stage}),
        "data_fingerprint": fingerprint, "nets": {name: net.state_dict()}, "optimizers": {},
        "rng": torch.get_rng_state(), "metrics": json.dumps({"loss": 1.0})})


def calibrated(net, channels: int):
    """Set BatchNorm running statistics from one noise batch (64 px: the encoders are size-agnostic),
    so activations have trained-like scales."""
    import torch

    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average: one batch sets the statistics
    net.train()
    with torch.no_grad():
        net(torch.randn(2, channels, 64, 64))
    return net.eval()


def make_run(run, preset_name: str = "edge", seed: int = 0, silhouette_bias: float = 3.0, *,
             voxel_stage: str = "voxel", calibrate: bool = False, epoch: int = 0, fingerprint: str = "test"):
    """A run folder (sketch.pt + <voxel_stage>.pt, the checkpoint format of docs/design.md) of freshly
    initialised nets (BatchNorm statistics set from noise when `calibrate`). The silhouette head's bias
    is raised by `silhouette_bias` so the untrained sketch net calls most pixels "object": pictures
    without alpha then get a silhouette to frame, deterministically."""
    import torch

    from recon.train.presets import build_sketch_net, build_voxel_net, get_preset

    torch.manual_seed(seed)
    preset = get_preset(preset_name)
    sketch, voxel = build_sketch_net(preset), build_voxel_net(preset)
    if calibrate:
        sketch, voxel = calibrated(sketch, 3), calibrated(voxel, 5)
    with torch.no_grad():  # edge2's merged head has the silhouette logits as its 5th channel
        bias = sketch.silhouette_head.bias if hasattr(sketch, "silhouette_head") else sketch.head.bias[4:]
        bias.add_(silhouette_bias)
    run.mkdir(parents=True, exist_ok=True)
    for stage, name, net in (("sketch", "sketch", sketch), (voxel_stage, "voxel", voxel.eval())):
        save_net(run / f"{stage}.pt", stage, name, net, preset, epoch=epoch, fingerprint=fingerprint)
    return run


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A model folder exported (recon.export.onnx_export.export_model) from fresh `edge` nets."""
    try:
        from recon.export.onnx_export import export_model
    except ImportError as error:
        pytest.skip(f"recon.export.onnx_export is not importable ({error}); cannot make a model folder")
    root = tmp_path_factory.mktemp("runtime_model")
    run = make_run(root / "run")
    export_model(run, root / "model", log=None)
    return root / "model"
