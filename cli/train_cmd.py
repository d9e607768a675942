"""`recon-cli train <stage>`: one command per training stage, each with the common options and only
the stage's own (STAGE_ONLY_OPTIONS), a progress bar per epoch and a one-line summary."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from recon.cli import console as ui
from recon.cli import options
from recon.runtime.errors import ReconError

train_app = typer.Typer(no_args_is_help=True, help="Train the stages in order: sketch, voxel, gan, joint (and direct).")


def report_training_data(folders) -> None:
    """Before training: which objects of each damaged dataset will be skipped (train() itself stops on
    anything worse, with its own error)."""
    from recon.train.data import load_manifest
    from recon.train.views import DatasetViews

    for folder in [folders] if isinstance(folders, str) else folders:
        try:
            ui.report_skipped(folder, DatasetViews(folder, "train", voxel_res=load_manifest(folder)["voxel_res"]).skipped)
        except (ReconError, KeyError, TypeError):
            pass


def train_stage(config) -> None:
    """Train one stage with a bar per epoch (running losses beside it); the summary on stdout, once
    (only the first process of a torchrun launch reports)."""
    from recon.train.loop import train

    from recon.runtime.fileio import check_output_dir

    stage, epochs = config.stage, config.epochs
    # A run folder collects its stages' checkpoints: one with other files and none of ours is refused
    # (and a checkpoint write that was killed left a temporary file, removed here).
    check_output_dir(config.out, "--out", create=False,
                     owned_by=("metrics.jsonl", *(f"{name}.pt" for name in STAGE_HELP)))
    report_training_data(config.data)
    bar = ui.progress(None, stage)

    def advance(epoch, step, steps, averages):
        if step == 1:
            bar.restart(steps, f"{stage} epoch {epoch + 1}/{epochs}")
        bar.advance(extra=" ".join(f"{key} {value:.4g}" for key, value in averages.items()))

    with bar:
        metrics = train(config, advance)
    if not ui.rank_zero():
        return
    checkpoint = ui.esc(Path(config.out) / f"{stage}.pt")
    if metrics:
        ui.out.print(f"{stage}: " + ", ".join(f"{k} {v}" for k, v in metrics.items() if k != "stage")
                     + f" -> {checkpoint}")
    else:
        ui.out.print(f"{stage}: already trained for {epochs} epochs in {checkpoint}")


def _train_options(
    data: list[Path] = typer.Option(..., help="Dataset folder; repeat it to train on several together "
                                    "(e.g. procedural + real), --max-objects applying to each."),
    out: Path = options.output_dir(..., "Run folder (checkpoints, metrics.jsonl)."),
    preset: str = typer.Option("edge2", help="Model: edge2 (default), edge or paper (recon.train.presets)."),
    epochs: int = options.int_at_least(10, 1, "Total epochs of this stage."),
    batch: int = options.int_at_least(32, 1, "Batch size (per process under torchrun)."),
    seed: int = typer.Option(0, help="Seed."),
    lr: Optional[float] = options.positive_float(None, "Learning rate (default: the paper's for the stage)."),
    resume: bool = typer.Option(False, help="Continue the stage's checkpoint where it stopped."),
    allow_new_data: bool = typer.Option(False, help="With --resume: continue although the data, batch or seed "
                                        "differ from the checkpoint's (recorded in its history)."),
    init_from: Optional[Path] = typer.Option(None, help="Start from the weights of an exported model folder "
                                             "(e.g. recon/models/default) and fine-tune them; BatchNorm stays frozen."),
    workers: int = options.int_at_least(0, 0, "DataLoader worker processes."),
    max_objects: Optional[int] = options.int_at_least(None, 1, "Use only the first N training objects of each "
                                                      "category."),
    alpha: float = options.nonnegative_float(1e-11, "Weight of the critic's exacting loss."),
    sketch_mix: float = options.fraction(0.0, "Fraction of batches fed the sketch net's predicted sketches."),
    critic_steps: int = options.int_at_least(5, 1, "Critic updates per generator update."),
    sketch_noise: float = options.nonnegative_float(0.0, "Strength of sketch-net-like errors added to true "
                                                    "sketches (0: none)."),
    clutter: float = options.fraction(0.0, "Fraction of views pasted into cluttered scenes (0: none)."),
    multiscale: float = options.fraction(0.0, "Fraction of batches shown at half resolution, as the framing "
                                         "pass sees whole pictures (0: none)."),
    loss: str = typer.Option("bce", help="bce (the paper's) or bce+iou (keeps thin parts)."),
    optimizer: Optional[str] = typer.Option(None, help="adam or sgd (default: the stage's own, the paper's)."),
    cosine: bool = typer.Option(False, help="Half-cosine learning-rate decay over the epochs."),
):
    """Every option of `recon-cli train <stage>` (the signature the stage commands are cut from)."""


# Options only some stages read; each stage's command (and --help) has only its own.
STAGE_ONLY_OPTIONS = {"alpha": ("joint",), "sketch_mix": ("voxel", "joint"), "critic_steps": ("gan",),
                      "sketch_noise": ("voxel", "joint"), "clutter": ("sketch",), "multiscale": ("sketch",),
                      "loss": ("voxel", "joint", "direct"),
                      "init_from": ("sketch", "voxel")}


def stage_command(stage: str, help_text: str):
    """One `recon-cli train <stage>` command: the common options plus the stage's own."""
    import inspect

    def command(**options):
        from recon.train.loop import TrainConfig

        options["data"], options["out"] = [str(folder) for folder in options["data"]], str(options["out"])
        options["init_from"] = str(options["init_from"]) if options.get("init_from") else None
        train_stage(TrainConfig(stage=stage, **options))  # options the stage lacks keep TrainConfig's defaults

    signature = inspect.signature(_train_options)
    command.__signature__ = signature.replace(parameters=[
        param for name, param in signature.parameters.items() if stage in STAGE_ONLY_OPTIONS.get(name, (stage,))])
    command.__annotations__ = _train_options.__annotations__
    command.__doc__ = help_text
    train_app.command(stage)(command)


STAGE_HELP = {
    "sketch": "RGB -> 2.5D sketch (normals, depth, silhouette); Adam 1e-3, sum of L2 errors.",
    "voxel": "2.5D sketch -> voxels; BCE, SGD 1e-3 momentum 0.9.",
    "gan": "3D-GAN shape prior, WGAN-GP (lambda 10, Adam 1e-4); use --batch 4 as in the paper.",
    "joint": "Fine-tune the voxel net with the frozen critic: L = L_3D + alpha * -E[D(x)].",
    "direct": "Baseline: RGB -> voxels with the same voxel net (TL-network / 3D-R2N2 style).",
}
for _stage, _help in STAGE_HELP.items():
    stage_command(_stage, _help)
