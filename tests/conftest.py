"""Shared fixtures: a real model folder, exported once per session from fresh nets."""

from __future__ import annotations

import pytest


def make_run(run, preset_name: str = "edge", seed: int = 0, silhouette_bias: float = 3.0):
    """A run folder (sketch.pt + voxel.pt, the checkpoint format of docs/design.md) of freshly
    initialised nets. The silhouette head's bias is raised so the untrained sketch net calls most
    pixels "object": pictures without alpha then get a silhouette to frame, deterministically."""
    import torch

    from recon.train.checkpoint import save_checkpoint
    from recon.train.presets import build_sketch_net, build_voxel_net, get_preset, model_args

    torch.manual_seed(seed)
    preset = get_preset(preset_name)
    sketch, voxel = build_sketch_net(preset), build_voxel_net(preset)
    with torch.no_grad():
        sketch.silhouette_head.bias.add_(silhouette_bias)
    run.mkdir(parents=True, exist_ok=True)
    for stage, name, net in (("sketch", "sketch", sketch), ("voxel", "voxel", voxel)):
        save_checkpoint(run / f"{stage}.pt", {
            "stage": stage, "epoch": 0, "model_args": model_args(preset), "config": "{}",
            "data_fingerprint": "test", "nets": {name: net.state_dict()}, "optimizers": {},
            "rng": torch.get_rng_state(), "metrics": "{}"})
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
