#!/usr/bin/env python
"""How well the one-pass framing keeps the two-pass framing: crop boxes from the cheap framing pass
(the sketch net on the whole picture at the model's recon.framing_size) against those from a
full-size pass (what the runtime did before: image_size), and both against the box of the true
silhouette, on test views as rendered (plain) and pasted into cluttered scenes (recon.train.clutter).

    .venv/bin/python scripts/framing_accuracy.py --model recon/models/default --data data/synth-v1 --data data/corpus-v1
"""

from __future__ import annotations

import argparse

import numpy as np

from recon.runtime.pipeline import FRAMING_LEVEL, Reconstructor
from recon.runtime.preprocess import (box_iou, crop_image, frame_box, main_component, normalize_image, to_picture,
                                      whole_image_box)
from recon.train.clutter import compose_scene
from recon.train.data import load_manifest, load_view


def framing(reconstruct: Reconstructor, rgb: np.ndarray, side: int):
    model = reconstruct.model
    height, width = rgb.shape[:2]
    whole = whole_image_box(height, width)
    x = normalize_image(crop_image(rgb, whole, side), model.mean, model.std)
    silhouette = reconstruct.runners["sketch"].infer({"image": x})["silhouette"][0, 0] > FRAMING_LEVEL
    return frame_box(main_component(to_picture(silhouette, whole, height, width)), model.fill)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--objects", type=int, default=20, help="test objects per category and dataset")
    args = parser.parse_args()
    rows = []
    with Reconstructor(args.model, device="cpu", threads=1) as reconstruct:
        small, full = reconstruct.model.framing_size, reconstruct.model.image_size
        for data in args.data:
            manifest = load_manifest(data)
            for category in manifest["categories"]:
                tests = [e for e in manifest["objects"] if e["category"] == category and e["split"] == "test"]
                for index, entry in enumerate(tests[:args.objects]):
                    rng = np.random.default_rng([index, 11])
                    view = load_view(data, entry["id"], int(rng.integers(entry["views"])))
                    scene = compose_scene(view["rgb"], view["mask"], rng, size=256,
                                          others=[load_view(data, tests[(index + 1) % len(tests)]["id"], 0)])
                    for kind, rgb, mask in (("plain", view["rgb"], view["mask"]),
                                            ("cluttered", scene["rgb"], scene["mask"])):
                        truth = frame_box(mask, reconstruct.model.fill)
                        first, two = framing(reconstruct, rgb, small), framing(reconstruct, rgb, full)
                        final = reconstruct(rgb, color=False).box  # the crop the main pass ended on
                        rows.append((data, category, kind, box_iou(final, two), box_iou(final, truth),
                                     box_iou(two, truth), float(box_iou(first, final) < 0.999)))
    print(f"the runtime's crop (framing pass at {small} px, cropped again where the main pass disagrees) vs the "
          f"two-pass crop (a {full} px framing pass) and the true silhouette's crop: crop-box IoU, median (share >= 0.85)")
    print("| data | pictures | runtime vs two-pass | runtime vs true | two-pass vs true | cropped again |")
    print("|---|---|---|---|---|---|")
    keys = sorted({(r[0], r[1], r[2]) for r in rows})
    for key in keys + [("all", "all", "plain"), ("all", "all", "cluttered")]:
        picked = [r for r in rows if (r[0], r[1], r[2]) == key or (key[0] == "all" and r[2] == key[2])]
        columns = list(zip(*[r[3:] for r in picked]))
        cells = [f"{np.median(col):.3f} ({np.mean(np.array(col) >= 0.85):.0%})" for col in columns[:3]]
        cells.append(f"{np.mean(columns[3]):.0%}")
        print(f"| {key[0]} | {key[1]} {key[2]} | {len(picked)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
