"""Staged training: sketch -> voxel -> gan -> joint (and the direct baseline), one flat loop.

Each stage is a row of STAGES: which nets it trains, which earlier checkpoints it starts from,
its optimizer (the paper's) and its step. Every epoch reseeds from (seed, epoch), so a resumed run
replays exactly what an uninterrupted one would. Launched by `torchrun`, the same command trains
with DistributedDataParallel (gloo on CPU, nccl on GPUs).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from recon.runtime.errors import InputError, ReconError
from recon.train.checkpoint import (checkpoint_path, checkpoint_preset, load_checkpoint, resume_changes,
                                    resume_history, save_checkpoint)
from recon.train.onnx_import import freeze_batchnorm, start_from_model
from recon.train.presets import (IMAGE_MEAN, IMAGE_STD, Preset, build_critic, build_generator, build_sketch_net,
                                 build_voxel_net, get_preset, model_args)
from recon.train.shape_gan import gradient_penalty


class TrainingError(ReconError):
    """Training diverged (NaN/inf) or cannot go on."""


@dataclasses.dataclass
class TrainConfig:
    stage: str  # one of STAGES
    data: str | list[str]  # dataset folder (recon-cli data synth/build); several are trained on together
    out: str  # run folder: <stage>.pt checkpoints and metrics.jsonl
    preset: str = "edge"  # model sizes, see recon.train.presets.PRESETS
    epochs: int = 10  # total epochs of this stage (a resumed run stops at the same total)
    batch: int = 32  # samples per step (per process under torchrun)
    seed: int = 0  # seeds init, shuffling and noise; each epoch reseeds from (seed, epoch)
    lr: float | None = None  # None: the paper's rate for the stage (Adam 1e-3, SGD 1e-3, GAN 1e-4)
    alpha: float = 1e-11  # joint: weight of the critic's exacting loss -E[D(x)]
    sketch_mix: float = 0.0  # voxel: fraction of batches fed the sketch net's predictions
    sketch_noise: float = 0.0  # voxel/joint: strength of the errors added to ground-truth sketches (0: none)
    clutter: float = 0.0  # sketch: fraction of views pasted into cluttered scenes (recon.train.augment)
    multiscale: float = 0.0  # sketch: fraction of batches shown at half resolution (the framing pass's side)
    loss: str = "bce"  # voxel/joint/direct: "bce" (the paper's) or "bce+iou" (adds 1 - soft IoU per object)
    optimizer: str | None = None  # None: the stage's own (the paper's); "adam" or "sgd" to override
    cosine: bool = False  # decay the learning rate by a half cosine over the epochs (per epoch, resumable)
    critic_steps: int = 5  # gan: critic updates per generator update (WGAN-GP)
    max_objects: int | None = None  # use only the first N objects of each category (quick runs, tests)
    workers: int = 0  # DataLoader worker processes
    resume: bool = False  # continue <stage>.pt where it stopped
    allow_new_data: bool = False  # resume although data, batch or seed differ (kept in the checkpoint's history)
    init_from: str | None = None  # exported model folder whose weights start the stage (fine-tuning, BatchNorm frozen)


# ---------------------------------------------------------------- losses and inputs


def normalize(rgb: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGE_MEAN, device=rgb.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=rgb.device).view(1, 3, 1, 1)
    return (rgb - mean) / std  # (B, 3, H, W)


def sketch_loss(pred: dict, batch: dict) -> tuple[torch.Tensor, dict]:
    """L_2.5D: sum of L2 errors of normals and depth on the silhouette, and of the silhouette."""
    mask = batch["mask"]  # (B, 1, H, W)
    pixels = mask.sum().clamp(min=1)
    normals = ((pred["normals"] - batch["normals"]) ** 2 * mask).sum() / pixels
    depth = ((pred["depth"] - batch["depth"]) ** 2 * mask).sum() / pixels
    silhouette = ((torch.sigmoid(pred["silhouette_logits"]) - mask) ** 2).mean()
    return normals + depth + silhouette, {"normals": normals.item(), "depth": depth.item(),
                                          "silhouette": silhouette.item()}


def true_sketch(batch: dict) -> torch.Tensor:
    return torch.cat([batch["normals"], batch["depth"], batch["mask"]], dim=1)  # (B, 5, H, W)


def predicted_sketch(sketch_net: nn.Module, rgb: torch.Tensor) -> torch.Tensor:
    pred = sketch_net(normalize(rgb))
    return torch.cat([pred["normals"], pred["depth"], torch.sigmoid(pred["silhouette_logits"])], dim=1)


def batch_iou(logits: torch.Tensor, voxels: torch.Tensor, threshold: float = 0.5) -> float:
    pred = torch.sigmoid(logits) > threshold
    truth = voxels > 0.5
    inter = (pred & truth).flatten(1).sum(1).float()
    union = (pred | truth).flatten(1).sum(1).float().clamp(min=1)
    return (inter / union).mean().item()


# ---------------------------------------------------------------- stage steps


def step_sketch(nets, optimizers, batch, cfg, ctx):
    if cfg.multiscale and torch.rand(()) < cfg.multiscale:  # as the framing pass sees whole pictures
        from recon.train.augment import half_resolution

        batch = half_resolution(batch)
    loss, parts = sketch_loss(nets["sketch"](normalize(batch["rgb"])), batch)
    optimizers["sketch"].zero_grad(set_to_none=True)
    loss.backward()
    optimizers["sketch"].step()
    return loss, parts


def voxel_input(batch, cfg, ctx) -> torch.Tensor:
    if ctx.get("sketch_net") is not None and torch.rand(()) < cfg.sketch_mix:
        with torch.no_grad():
            return predicted_sketch(ctx["sketch_net"], batch["rgb"])
    if cfg.sketch_noise > 0:
        from recon.train.augment import noisy_sketch

        return noisy_sketch(true_sketch(batch), cfg.sketch_noise)
    return true_sketch(batch)


def occupancy_loss(logits: torch.Tensor, voxels: torch.Tensor, kind: str) -> torch.Tensor:
    """BCE, plus 1 - soft IoU per object for "bce+iou": a thin leg is a large share of its chair's
    IoU but a tiny share of the voxels BCE averages over, so the IoU term keeps it worth predicting."""
    loss = F.binary_cross_entropy_with_logits(logits, voxels)
    if kind == "bce+iou":
        prob = torch.sigmoid(logits).flatten(1)
        truth = voxels.flatten(1)
        inter = (prob * truth).sum(1)
        union = (prob + truth - prob * truth).sum(1).clamp(min=1.0)
        loss = loss + (1 - inter / union).mean()
    return loss


def occupancy_step(name: str, inputs: torch.Tensor, nets, optimizers, batch, cfg):
    """One step of the voxel-producing net `name` on `inputs` (voxel and direct stages)."""
    logits = nets[name](inputs)  # (B, R, R, R)
    loss = occupancy_loss(logits, batch["voxels"], cfg.loss)
    optimizers[name].zero_grad(set_to_none=True)
    loss.backward()
    optimizers[name].step()
    return loss, {"iou": batch_iou(logits.detach(), batch["voxels"])}


def step_voxel(nets, optimizers, batch, cfg, ctx):
    return occupancy_step("voxel", voxel_input(batch, cfg, ctx), nets, optimizers, batch, cfg)


def step_direct(nets, optimizers, batch, cfg, ctx):
    return occupancy_step("direct", normalize(batch["rgb"]), nets, optimizers, batch, cfg)


def step_gan(nets, optimizers, batch, cfg, ctx):
    """WGAN-GP: critic every step, generator every `critic_steps` steps."""
    generator, critic = nets["generator"], nets["critic"]
    real = batch["voxels"]  # (B, R, R, R)
    z = torch.randn(real.shape[0], generator.latent_dim, device=real.device)
    fake = generator(z).detach()
    gp = gradient_penalty(critic, real, fake, lambda_gp=10.0)
    wasserstein = critic(real).mean() - critic(fake).mean()
    critic_loss = -wasserstein + gp
    optimizers["critic"].zero_grad(set_to_none=True)
    critic_loss.backward()
    optimizers["critic"].step()
    ctx["gan_steps"] = ctx.get("gan_steps", 0) + 1
    if ctx["gan_steps"] % cfg.critic_steps == 0:
        generator_loss = -critic(generator(z)).mean()
        optimizers["generator"].zero_grad(set_to_none=True)
        generator_loss.backward()
        optimizers["generator"].step()
    return critic_loss, {"wasserstein": wasserstein.item(), "gp": gp.item()}


def step_joint(nets, optimizers, batch, cfg, ctx):
    """L = L_3D + alpha * L_exacting, L_exacting = -E[D(x)] from the frozen critic."""
    logits = nets["voxel"](voxel_input(batch, cfg, ctx))  # (B, R, R, R)
    l3d = occupancy_loss(logits, batch["voxels"], cfg.loss)
    exacting = -ctx["critic"](torch.sigmoid(logits)).mean()
    loss = l3d + cfg.alpha * exacting
    optimizers["voxel"].zero_grad(set_to_none=True)
    loss.backward()
    optimizers["voxel"].step()
    return loss, {"l3d": l3d.item(), "exacting": exacting.item(),
                  "iou": batch_iou(logits.detach(), batch["voxels"])}


def adam(rate, betas=(0.9, 0.999)):
    return lambda params, lr: torch.optim.Adam(params, lr=lr or rate, betas=betas)


def sgd(rate):
    return lambda params, lr: torch.optim.SGD(params, lr=lr or rate, momentum=0.9)


OPTIMIZERS = {"adam": adam(1e-3), "sgd": sgd(1e-3)}  # --optimizer overrides of a stage's own
LOSSES = ("bce", "bce+iou")


# Every net by the name it has in checkpoints.
NETS: dict[str, Callable[[Preset], nn.Module]] = {
    "sketch": build_sketch_net,
    "voxel": build_voxel_net,
    "direct": lambda preset: build_voxel_net(preset, in_channels=3),  # RGB in, same voxel net
    "generator": build_generator,
    "critic": build_critic,
}


@dataclasses.dataclass(frozen=True)
class Stage:
    nets: tuple[str, ...]  # the nets this stage trains (keys of NETS)
    optimizer: Callable  # (params, lr override) -> optimizer, one per trained net
    step: Callable  # (nets, optimizers, batch, cfg, ctx) -> (loss, metrics)
    starts_from: str | None = None  # earlier stage whose weights initialise ours (same net names)
    uses: tuple[str, ...] = ()  # earlier stages' nets used frozen: "sketch" (sketch_mix), "critic"
    per_object: bool = False  # gan: one sample per object (voxels only), not per view


STAGES: dict[str, Stage] = {
    "sketch": Stage(("sketch",), adam(1e-3), step_sketch),
    "voxel": Stage(("voxel",), sgd(1e-3), step_voxel, uses=("sketch",)),
    "gan": Stage(("generator", "critic"), adam(1e-4, betas=(0.5, 0.9)), step_gan, per_object=True),
    "joint": Stage(("voxel",), sgd(1e-3), step_joint, starts_from="voxel", uses=("sketch", "critic")),
    "direct": Stage(("direct",), sgd(1e-3), step_direct),
}


# ---------------------------------------------------------------- the loop


def distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (torch.distributed.get_rank() if world > 1 else 0), world


def load_net(run: str | Path, stage: str, name: str, preset: Preset | None = None) -> nn.Module:
    """Net `name` with the weights of RUN/<stage>.pt, in eval mode (frozen unless made trainable)."""
    state = load_checkpoint(checkpoint_path(run, stage), expect_preset=preset.name if preset else None)
    net = NETS[name](preset or checkpoint_preset(state))
    net.load_state_dict(state["nets"][name])
    return net.eval().requires_grad_(False)


def make_loader(cfg: TrainConfig, preset: Preset, stage: Stage, rank: int, world: int):
    from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler

    from recon.train.dataset import ObjectVoxels, ViewDataset

    folders = [cfg.data] if isinstance(cfg.data, str) else list(cfg.data)
    parts = [ViewDataset(folder, "train", preset.image_size, preset.voxel_res, max_objects=cfg.max_objects,
                         clutter=cfg.clutter)
             for folder in folders]
    dataset = ConcatDataset([ObjectVoxels(part) if stage.per_object else part for part in parts])
    if cfg.batch <= 0:
        raise InputError(f"--batch must be positive, got {cfg.batch}")
    if cfg.batch * world > len(dataset):
        raise InputError(f"--batch {cfg.batch} x {world} process(es) is larger than the {len(dataset)} "
                         f"training samples in {', '.join(folders)}")
    sampler = DistributedSampler(dataset, world, rank, shuffle=True, seed=cfg.seed) if world > 1 else None
    fingerprint = "+".join(part.manifest["fingerprint"] for part in parts)
    return DataLoader(dataset, batch_size=cfg.batch, shuffle=sampler is None, sampler=sampler,
                      drop_last=True, num_workers=cfg.workers), fingerprint


def train(cfg: TrainConfig, progress: Callable | None = None) -> dict:
    """Run (or resume) one stage; returns the final epoch's metrics."""
    if cfg.stage not in STAGES:
        raise InputError(f"unknown stage {cfg.stage!r}; choose from {', '.join(STAGES)}")
    if cfg.epochs <= 0:
        raise InputError(f"--epochs must be positive, got {cfg.epochs}")
    if cfg.loss not in LOSSES:
        raise InputError(f"unknown loss {cfg.loss!r}; choose from {', '.join(LOSSES)}")
    if cfg.optimizer is not None and cfg.optimizer not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {cfg.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    stage, preset = STAGES[cfg.stage], get_preset(cfg.preset)
    run = Path(cfg.out)
    path = checkpoint_path(run, cfg.stage)
    if path.exists() and not cfg.resume:
        raise InputError(f"{path} exists; pass --resume to continue it or choose another --out")
    rank, world = distributed()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    if stage.starts_from:
        nets = {name: load_net(run, stage.starts_from, name, preset).requires_grad_(True) for name in stage.nets}
    else:
        nets = {name: NETS[name](preset) for name in stage.nets}
    if cfg.init_from and not (cfg.resume and path.exists()):
        start_from_model(nets, cfg.init_from, preset)
    ctx = {}
    if "critic" in stage.uses:
        ctx["critic"] = load_net(run, "gan", "critic", preset).to(device)
    if "sketch" in stage.uses and cfg.sketch_mix > 0:
        ctx["sketch_net"] = load_net(run, "sketch", "sketch", preset).to(device)
    loader, data_fingerprint = make_loader(cfg, preset, stage, rank, world)
    make_optimizer = OPTIMIZERS[cfg.optimizer] if cfg.optimizer else stage.optimizer
    optimizers = {name: make_optimizer(net.parameters(), cfg.lr) for name, net in nets.items()}
    base_rates = [group["lr"] for optimizer in optimizers.values() for group in optimizer.param_groups]
    first_epoch, history = 0, []
    if cfg.resume and path.exists():
        state = load_checkpoint(path, expect_preset=preset.name)
        changes = resume_changes(state, dataclasses.asdict(cfg), data_fingerprint)
        if changes and not cfg.allow_new_data:
            raise InputError(f"{path}: --resume with other {', '.join(changes)} than the checkpoint was trained "
                             "on; pass --allow-new-data to continue it anyway (recorded in its history), or "
                             "choose another --out")
        history = resume_history(state, changes)
        for name, net in nets.items():
            net.load_state_dict(state["nets"][name])
            optimizers[name].load_state_dict(state["optimizers"][name])
        first_epoch = state["epoch"] + 1
        ctx["gan_steps"] = state.get("gan_steps", 0)
        if cfg.lr is not None:  # an explicit --lr overrides the rate stored with the optimizer
            for optimizer in optimizers.values():
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr
    nets = {name: net.to(device) for name, net in nets.items()}
    trained = nets
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        trained = {name: DistributedDataParallel(net) for name, net in nets.items()}
    run.mkdir(parents=True, exist_ok=True)
    metrics = {}
    for epoch in range(first_epoch, cfg.epochs):
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # shuffling and noise depend only on (seed, epoch)
        if world > 1:
            loader.sampler.set_epoch(epoch)
        if cfg.cosine:  # a function of the epoch alone, so a resumed run sets the same rate
            groups = [group for optimizer in optimizers.values() for group in optimizer.param_groups]
            for group, base in zip(groups, base_rates):
                group["lr"] = base * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
        for net in trained.values():
            net.train()
            if cfg.init_from:  # the imported nets' BatchNorm holds folded weights' identity (onnx_import)
                freeze_batchnorm(net)
        totals, steps, samples, start = {}, 0, 0, time.perf_counter()
        for batch in loader:
            batch = {key: value.to(device) for key, value in batch.items()}
            loss, parts = stage.step(trained, optimizers, batch, cfg, ctx)
            if not math.isfinite(loss.item()):
                raise TrainingError(f"{cfg.stage}: loss became {loss.item()} at epoch {epoch + 1} step {steps + 1}; "
                                    f"the last good checkpoint is kept at {path} (lower --lr?)")
            for key, value in {"loss": loss.item(), **parts}.items():
                totals[key] = totals.get(key, 0.0) + value
            steps += 1
            samples += len(batch["voxels"]) * world
            if progress is not None and rank == 0:
                progress(epoch, steps, len(loader), {k: v / steps for k, v in totals.items()})
        seconds = time.perf_counter() - start
        if world > 1:  # sums over every process: metrics.jsonl averages all the epoch's batches, not rank 0's
            keys = sorted(totals)
            sums = torch.tensor([totals[k] for k in keys] + [steps], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(sums)
            totals, steps = dict(zip(keys, sums[:-1].tolist())), int(sums[-1].item())
        metrics = {"stage": cfg.stage, "epoch": epoch + 1, **{k: round(v / max(steps, 1), 6) for k, v in totals.items()},
                   "samples_per_s": round(samples / seconds, 2), "seconds": round(seconds, 2), "processes": world}
        if rank == 0:
            save_checkpoint(path, {
                "stage": cfg.stage, "epoch": epoch, "model_args": model_args(preset),
                "config": json.dumps(dataclasses.asdict(cfg)), "data_fingerprint": data_fingerprint,
                "nets": {name: net.state_dict() for name, net in nets.items()},
                "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
                "rng": torch.get_rng_state(), "gan_steps": ctx.get("gan_steps", 0), "metrics": json.dumps(metrics),
                "history": history,
            })
            with open(run / "metrics.jsonl", "a") as log:
                log.write(json.dumps(metrics) + "\n")
    if world > 1:
        torch.distributed.barrier()
    return metrics
