"""The run folder an export reads: its deployable checkpoints (sketch.pt + joint.pt, else voxel.pt)
and the nets rebuilt from them; or, for PyTorch eager beside an engine, the nets of an exported model
folder (the shipped model has no run folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from recon.runtime.errors import InputError, ModelError


def _stage_state(path: Path, expect_preset: Optional[str], stage: str, net: str) -> dict:
    from recon.train.checkpoint import load_checkpoint

    state = load_checkpoint(path, expect_preset=expect_preset)
    if state.get("stage") not in (None, stage):
        raise ModelError(f"{path}: holds stage {state.get('stage')!r}, expected {stage!r}")
    if not isinstance(state.get("nets"), dict) or net not in state["nets"]:
        raise ModelError(f"{path}: has no {net!r} weights (nets: {sorted(state.get('nets') or {})})")
    return state


def load_run(run: str | Path) -> dict:
    """The deployable chain of a run folder: sketch.pt + joint.pt (else voxel.pt), same preset."""
    from recon.train.checkpoint import checkpoint_path, checkpoint_preset

    run = Path(run).expanduser()
    if not run.is_dir():
        raise InputError(f"--weights {run}: run folder not found (train one with `recon-cli train sketch --out RUN`)")
    sketch_path = checkpoint_path(run, "sketch")
    sketch = _stage_state(sketch_path, None, "sketch", "sketch")
    preset = checkpoint_preset(sketch)
    voxel_stage = "joint" if checkpoint_path(run, "joint").exists() else "voxel"
    voxel_path = checkpoint_path(run, voxel_stage)
    if not voxel_path.exists():
        raise ModelError(f"{run}: no joint.pt or voxel.pt (train the voxel stage first: "
                         f"`recon-cli train voxel --out {run}`)")
    voxel = _stage_state(voxel_path, preset.name, voxel_stage, "voxel")
    if checkpoint_preset(voxel) != preset:
        raise ModelError(f"{voxel_path}: preset {voxel['model_args']} differs from {sketch_path}'s "
                         f"{sketch['model_args']}")
    return {"run": run, "preset": preset, "sketch": sketch, "voxel": voxel, "voxel_stage": voxel_stage,
            "paths": {"sketch": sketch_path, "voxel": voxel_path}}


def build_nets(loaded: dict):
    """(sketch net, voxel net) with the run's weights, in eval mode."""
    from recon.train.presets import build_sketch_net, build_voxel_net  # = recon.train.loop.NETS["sketch"/"voxel"]

    preset = loaded["preset"]
    nets = []
    for key, name, build in (("sketch", "sketch", build_sketch_net), ("voxel", "voxel", build_voxel_net)):
        net = build(preset)
        try:
            net.load_state_dict(loaded[key]["nets"][name], strict=True)
        except (RuntimeError, KeyError, TypeError) as error:
            first = str(error).strip().splitlines()
            raise ModelError(f"{loaded['paths'][key]}: weights do not fit the {preset.name!r} preset's {name} net "
                             f"({' '.join(first[:2])[:200]})") from None
        net.eval()
        for module in net.modules():  # BatchNorm that simplifiers cannot fold (edge2's voxel decoder)
            if hasattr(module, "fold_batchnorm"):
                module.fold_batchnorm()
        nets.append(net)
    return tuple(nets)


def eager_nets(source: str | Path):
    """(sketch net, voxel net) in eval mode from a training run folder, or from a model folder that
    recon-cli export wrote (its ONNX weights imported, each folded BatchNorm an identity: the same
    function, checked against the graphs)."""
    source = Path(source).expanduser()
    if not (source / "model.json").is_file():
        return build_nets(load_run(source))
    from recon.runtime.model import load_model_dir
    from recon.train.onnx_import import start_from_model
    from recon.train.presets import build_sketch_net, build_voxel_net, get_preset

    preset = get_preset(load_model_dir(source).preset)
    nets = {"sketch": build_sketch_net(preset), "voxel": build_voxel_net(preset)}
    start_from_model(nets, source, preset)
    return nets["sketch"].eval(), nets["voxel"].eval()
