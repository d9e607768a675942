"""Training throughput (samples/s) per stage and preset on this machine, on random tensors of the
right shapes (the data loader is measured separately by bench_data.py). Used to pick `edge`.

    python benchmarks/bench_train.py --steps 3 --batch 8 --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

from recon.train.loop import STAGES, NETS, TrainConfig
from recon.train.presets import PRESETS


def fake_batch(preset, batch: int) -> dict[str, torch.Tensor]:
    size, res = preset.image_size, preset.voxel_res
    normals = torch.nn.functional.normalize(torch.randn(batch, 3, size, size), dim=1)
    return {"rgb": torch.rand(batch, 3, size, size), "normals": normals, "depth": torch.randn(batch, 1, size, size) * 0.2,
            "mask": (torch.rand(batch, 1, size, size) > 0.5).float(), "voxels": (torch.rand(batch, res, res, res) > 0.9).float()}


def samples_per_second(stage_name: str, preset, batch: int, steps: int) -> float:
    stage = STAGES[stage_name]
    nets = {name: NETS[name](preset).train() for name in stage.nets}
    optimizers = {name: stage.optimizer(net.parameters(), None) for name, net in nets.items()}
    ctx = {"critic": NETS["critic"](preset).eval().requires_grad_(False)} if "critic" in stage.uses else {}
    cfg = TrainConfig(stage=stage_name, data="", out="", critic_steps=1)
    data = fake_batch(preset, batch)
    stage.step(nets, optimizers, data, cfg, ctx)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        stage.step(nets, optimizers, data, cfg, ctx)
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--presets", default="edge,paper")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"| preset | stage | samples/s (batch {args.batch}, {args.threads} threads) |")
    print("|---|---|---|")
    for name in args.presets.split(","):
        preset = PRESETS[name]
        for stage in STAGES:
            batch = args.batch if name == "edge" else 1  # the paper preset's 3D nets need ~GBs per sample
            rate = samples_per_second(stage, preset, batch, args.steps)
            print(f"| {name} | {stage} | {rate:.2f}{'' if batch == args.batch else ' (batch 1)'} |", flush=True)


if __name__ == "__main__":
    main()
