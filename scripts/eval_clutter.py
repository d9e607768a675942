#!/usr/bin/env python
"""Score a model on a clutter benchmark (`recon-cli data clutter`): framing, silhouette and voxel IoU per
category, plain vs cluttered (framing itself) vs cluttered with the true box / mask given; a contact sheet.

    .venv/bin/recon-cli data clutter --data data/synth-v1 --out runs/clutter-synth --views-per-object 1
    .venv/bin/python scripts/eval_clutter.py runs/clutter-synth --out docs/results/clutter-synth.md \
        --sheet docs/results/clutter-synth.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HEADER = ("| category | variant | pictures | framing IoU | framing >= 0.85 | silhouette IoU | voxel IoU | "
          "voxel IoU / plain | flagged |")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", type=Path, help="Benchmark folder (recon-cli data clutter).")
    parser.add_argument("--model", type=Path, default=None, help="Model folder (default: the packaged model).")
    parser.add_argument("--out", type=Path, default=None, help="Markdown table to write.")
    parser.add_argument("--sheet", type=Path, default=None, help="Contact sheet (PNG) of cluttered inputs and results.")
    parser.add_argument("--json", type=Path, default=None, help="Every row and the table as JSON.")
    parser.add_argument("--max-pictures", type=int, default=None, help="Score only N pictures (categories taking turns).")
    parser.add_argument("--sheet-rows", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args(argv)


def markdown(summary: dict, model: str, bench: Path) -> str:
    lines = [f"Clutter benchmark {bench} with model {model} (framing: IoU of the chosen square crop with the true "
             "mask's crop; flagged: status not ok).", "", HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    for category, variants in summary.items():
        plain = variants.get("plain", {}).get("voxel")
        for variant, row in variants.items():
            ratio = f"{row['voxel'] / plain:.2f}" if plain else "-"
            lines.append(f"| {category} | {variant} | {row['pictures']} | {row['framing']:.3f} | "
                         f"{row['framing_good']:.1%} | {row['silhouette']:.3f} | {row['voxel']:.3f} | {ratio} | "
                         f"{row['flagged']:.1%} |")
    return "\n".join(lines) + "\n"


def sheet(kept, bench: Path) -> np.ndarray:
    from PIL import Image

    from recon.runtime.pictures import caption, contact_sheet, mask_image
    from recon.runtime.render import render_preview

    rows, labels = [], []
    for entry, results in kept:
        cluttered = results["cluttered"]
        row = [np.asarray(Image.open(bench / entry["picture"]).convert("RGB"))]
        if cluttered.mesh is not None:
            verdict = cluttered.status + ("" if cluttered.confidence is None else f" {cluttered.confidence:.2f}")
            row += [caption(cluttered.image, verdict), mask_image(cluttered.sketch["silhouette"] > 0.5),
                    render_preview(cluttered.mesh, size=128)]
        else:
            row += [np.full((128, 128, 3), 255, np.uint8)] * 3
        for variant in ("cluttered+box", "cluttered+mask", "plain"):
            mesh = results[variant].mesh
            row.append(render_preview(mesh, size=128) if mesh is not None else np.full((128, 128, 3), 255, np.uint8))
        rows.append(row)
        labels.append(entry["category"])
    columns = ["cluttered input", "framed crop", "silhouette", "mesh", "mesh (true box)", "mesh (true mask)",
               "mesh (plain view)"]
    return contact_sheet(rows, row_labels=labels, column_labels=columns, cell=128)


def main(argv=None) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from recon.runtime.errors import ReconError
    from recon.runtime.fileio import write_bytes_atomic, write_json_atomic
    from recon.runtime.pictures import save_png
    from recon.runtime.pipeline import Reconstructor
    from recon.train.clutter_bench import evaluate_bench, load_bench, table

    args = parse_args(argv)
    console = Console(stderr=True, highlight=False)
    try:
        total = len(load_bench(args.bench)["entries"][:args.max_pictures])
        with Reconstructor(args.model, device="cpu", threads=args.threads) as reconstructor, \
                Progress(TextColumn("clutter eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                         console=console) as bar:
            task = bar.add_task("clutter eval", total=total)
            rows, kept = evaluate_bench(reconstructor, args.bench, args.max_pictures, lambda: bar.advance(task),
                                        keep=args.sheet_rows if args.sheet else 0)
            model = str(reconstructor.model.path)
    except ReconError as error:
        console.print(f"[red]error:[/] {error}", soft_wrap=True)
        return 2
    summary = table(rows)
    text = markdown(summary, model, args.bench)
    print(text)
    if args.out:
        write_bytes_atomic(args.out, text.encode())
    if args.json:
        write_json_atomic(args.json, {"model": model, "bench": str(args.bench), "table": summary, "rows": rows})
    if args.sheet:
        save_png(args.sheet, sheet(kept, args.bench))
    return 0


if __name__ == "__main__":
    sys.exit(main())
