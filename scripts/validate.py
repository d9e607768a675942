#!/usr/bin/env python
"""Validation split carved from TRAINING objects, to choose between candidates (never a test split).

A category's training objects past the first --skip (the ones a candidate trained on with
--max-objects SKIP) are its validation objects. Scores a run folder's voxel-producing stage on
them: IoU at 32^3 on ground-truth sketches (the voxel net alone) and, with --sketch-run, on the
sketch net's predictions (the whole chain), at several iso levels.

    .venv/bin/python scripts/validate.py --run runs/cand-a --stage voxel --data data/synth-v1 --skip 100
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from recon.train.dataset import ViewDataset, frame_view
from recon.train.data import load_view
from recon.train.evaluate import iou_many, pooled
from recon.train.loop import load_net, normalize, predicted_sketch, true_sketch
from recon.train.checkpoint import checkpoint_path, checkpoint_preset, load_checkpoint

LEVELS = (0.3, 0.4, 0.5)


def validation_views(data: str, skip: int, per_category: int, views: int, image_size: int, voxel_res: int):
    dataset = ViewDataset(data, "train", image_size, voxel_res)
    rank: dict[str, int] = {}
    picked = []
    for index, entry in enumerate(dataset.objects):
        rank[entry["category"]] = rank.get(entry["category"], 0) + 1
        if skip < rank[entry["category"]] <= skip + per_category:
            picked.append(index)
    rng = np.random.default_rng(0)
    for index in picked:
        entry = dataset.objects[index]
        for view in rng.choice(entry["views"], size=min(views, entry["views"]), replace=False):
            framed = frame_view(load_view(dataset.root, entry["id"], int(view)), image_size, dataset.fill)
            yield entry["category"], framed, dataset.voxels(index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--stage", default="voxel")
    parser.add_argument("--sketch-run", default=None, help="run folder whose sketch.pt predicts the sketches")
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--skip", type=int, action="append", required=True, help="per --data: objects trained on")
    parser.add_argument("--per-category", type=int, default=30)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--mirror", action="store_true",
                        help="also score the grid averaged with its left-right mirror (x), kind '+mirror'")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    preset = checkpoint_preset(load_checkpoint(checkpoint_path(args.run, args.stage)))
    net = load_net(args.run, args.stage, "direct" if args.stage == "direct" else "voxel", preset)
    sketch_net = load_net(args.sketch_run, "sketch", "sketch", preset) if args.sketch_run else None
    report = {}
    for data, skip in zip(args.data, args.skip):
        scores: dict = {}
        for category, framed, voxels in validation_views(data, skip, args.per_category, args.views,
                                                         preset.image_size, preset.voxel_res):
            rgb = torch.from_numpy(framed["rgb"]).permute(2, 0, 1)[None].float() / 255
            batch = {"normals": torch.from_numpy(framed["normals"]).permute(2, 0, 1)[None],
                     "depth": torch.from_numpy(framed["depth"])[None, None],
                     "mask": torch.from_numpy(framed["mask"])[None, None].float()}
            inputs = {"true": true_sketch(batch)}
            if args.stage == "direct":
                inputs = {"rgb": normalize(rgb)}
            elif sketch_net is not None:
                inputs["predicted"] = predicted_sketch(sketch_net, rgb)
            truth = pooled(voxels[None] > 0.5, 32)
            with torch.no_grad():
                for kind, x in inputs.items():
                    prob = torch.sigmoid(net(x)).numpy()
                    variants = {kind: prob}
                    if args.mirror:
                        variants[kind + "+mirror"] = (prob + prob[:, ::-1]) / 2
                    for name, grid in variants.items():
                        for level in LEVELS:
                            iou = iou_many(pooled(grid > level, 32), truth)[0]
                            scores.setdefault((name, level), {}).setdefault(category, []).append(iou)
        for (kind, level), per in scores.items():
            means = {c: round(float(np.mean(v)), 4) for c, v in sorted(per.items())}
            means["mean"] = round(float(np.mean(list(means.values()))), 4)
            report[f"{data} {kind} @{level}"] = means
            print(f"{args.run} {args.stage} | {data} | {kind} sketch | t={level} | "
                  + " ".join(f"{c} {v:.3f}" for c, v in means.items()), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
