"""Where the 3D stage loses IoU (issue 12, item 1), per category on each dataset's test split:

  - the voxel net on ground-truth sketches (oracle 2.5D) and on the sketch net's predictions (the
    runners on the framed crop, as `recon-cli eval` runs them), and on predicted normals + depth
    with the true silhouette;
  - nearest-neighbour retrieval of a training shape from the predicted and from the true sketch,
    and the oracle retrieval (the training shape of best IoU) (recon.train.diagnose);
  - the same nets on training objects (generalisation) and the training-batch IoU per epoch.

    .venv/bin/python scripts/diagnose_3d.py                          # shipped model, synth-v1 + corpus-v1
    .venv/bin/python scripts/diagnose_3d.py --model MODEL --run RUN  # another model, its run's curve

Writes docs/results/diagnosis-3d.md (hand-written notes below its marker line are kept) and a contact
sheet of test objects of the last dataset (docs/results/diagnosis-3d.png). Torch-free; 1 thread.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from recon.cli.console import err, progress
from recon.runtime.errors import InputError, ReconError
from recon.runtime.fileio import write_bytes_atomic, write_json_atomic
from recon.runtime.pictures import caption, contact_sheet, normals_image, save_png
from recon.runtime.render import render_voxels
from recon.train import diagnose
from recon.train.data import load_manifest

ROOT = Path(__file__).resolve().parents[1]
NOTES_MARKER = "<!-- Hand-written notes below this line: scripts/diagnose_3d.py keeps them when it rewrites the file. -->"
SKETCH_LABELS = {"silhouette_iou": "silhouette IoU", "depth_mae": "depth MAE", "normal_angle_deg": "normal error (deg)"}
SHEET_COLUMNS = ("input", "predicted normals", "GT voxels", "net, GT sketch", "net, pred. sketch",
                 "retrieval, pred.", "oracle retrieval")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "recon/models/default", help="model folder")
    parser.add_argument("--data", type=Path, nargs="+", default=[ROOT / "data/synth-v1", ROOT / "data/corpus-v1"],
                        help="dataset folders: each one's test split is scored; all training splits form the library")
    parser.add_argument("--run", type=Path, help="run folder whose metrics.jsonl gives the training curve "
                        "(default: the curve recorded in the model's model.json)")
    parser.add_argument("--trials", type=int, default=3, help="trials of one random view per test object")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-objects", type=int, default=20,
                        help="training objects per category scored, evenly spaced through the split (0: none)")
    parser.add_argument("--library-views", type=int, default=5, help="views per training object in the library")
    parser.add_argument("--descriptor", type=int, default=16, help="side of the pooled sketch used as retrieval key")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs/diagnose-cache", help="library cache folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sheet-objects", type=int, default=3,
                        help="test objects per category on the contact sheet, evenly spaced through the split")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/diagnosis-3d.md")
    parser.add_argument("--sheet", type=Path, default=ROOT / "docs/results/diagnosis-3d.png")
    parser.add_argument("--json", type=Path, help="also write the tables as JSON")
    return parser.parse_args(argv)


def relative(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def model_line(nets: diagnose.SketchVoxelNets) -> str:
    info = nets.info
    meta = info.metadata
    files = ", ".join(f"{name} {info.sha256(name)[:12]}" for name in ("sketch.onnx", "voxel.onnx"))
    return (f"{relative(info.path)} ({files}; preset {info.preset}, git {meta.get('recon.git_commit', '?')[:7]}, "
            f"exported {meta.get('recon.export_time', '?')}, iso level {info.threshold}, {info.voxel_res}^3 output, "
            f"trained on data {meta.get('recon.data_fingerprint', '?')})")


def table(rows: dict[str, dict[str, float]], columns: dict[str, str], digits: dict[str, int]) -> list[str]:
    """rows: column -> per-category dict; a Markdown table with categories as rows, mean last."""
    categories = [c for c in next(iter(rows.values())) if c != "mean"] + ["mean"]
    lines = ["| category | " + " | ".join(columns.values()) + " |", "|---" * (len(columns) + 1) + "|"]
    for category in categories:
        cells = [f"{rows[key][category]:.{digits.get(key, 3)}f}" for key in columns]
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    return lines


def findings(name: str, test: dict, train: dict | None) -> list[str]:
    """Plain sentences built from the mean rows: what each step costs (differences are "a minus b")."""
    m = {key: value["mean"] for key, value in test.items()}
    lines = [f"- **{name}**: the net scores {m['gt_sketch']:.3f} on true sketches, {m['pred_sketch']:.3f} on predicted "
             f"ones (sketch errors cost {m['gt_sketch'] - m['pred_sketch']:.3f}; the true silhouette alone gives back "
             f"{m['pred_gt_silhouette'] - m['pred_sketch']:.3f})."]
    if "retrieval_pred" in m:
        lines.append(f"  The nearest training shape retrieved from the same sketch scores {m['retrieval_pred']:.3f} "
                     f"(predicted) and {m['retrieval_gt']:.3f} (true): net minus retrieval "
                     f"{m['pred_sketch'] - m['retrieval_pred']:+.3f} / {m['gt_sketch'] - m['retrieval_gt']:+.3f}. "
                     f"The best training shape scores {m['retrieval_oracle']:.3f}, "
                     f"{m['retrieval_oracle'] - m['gt_sketch']:+.3f} over the net on true sketches.")
    if train is not None:
        lines.append(f"  On training objects the net scores {train['gt_sketch']['mean']:.3f} (true sketches) and "
                     f"{train['pred_sketch']['mean']:.3f} (predicted): train minus test "
                     f"{train['gt_sketch']['mean'] - m['gt_sketch']:+.3f} / "
                     f"{train['pred_sketch']['mean'] - m['pred_sketch']:+.3f}.")
    return lines


def short_name(object_id: str) -> str:
    """The end of an object id (`<category>_<mesh stem>`): where corpus ids differ."""
    stem = object_id.split("_", 1)[-1]
    return stem if len(stem) <= 14 else "~" + stem[-13:]


def sheet_rows(kept: dict, library: diagnose.ShapeLibrary) -> tuple[list[list[np.ndarray]], list[str]]:
    rows, labels = [], []
    for object_id, item in kept.items():
        grids, scores = item["grids"], item["scores"]
        cells = [item["rgb"], normals_image(grids["sketch_normals"], grids["sketch_silhouette"] > 0.5),
                 render_voxels(item["truth"])]
        for key in ("gt_sketch", "pred_sketch", "retrieval_pred", "retrieval_oracle"):
            text = f"{scores[key]:.2f}"
            if key.startswith("retrieval"):
                text += " " + short_name(str(library.ids[scores[key.replace("retrieval", "found")]]))
            cells.append(caption(render_voxels(grids[key]), text))
        rows.append(cells)
        labels.append(f"{object_id.split('_', 1)[0]}\n{short_name(object_id)}")
    return rows, labels


def kept_notes(path: Path) -> str:
    if path.is_file() and NOTES_MARKER in path.read_text():
        return path.read_text().split(NOTES_MARKER, 1)[1].strip("\n")
    return ""


def main(argv=None) -> int:
    args = parse_args(argv)
    for flag in ("trials", "threads", "library_views", "descriptor"):
        if getattr(args, flag) <= 0:
            raise InputError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    manifests = {root: load_manifest(root) for root in args.data}
    nets = diagnose.SketchVoxelNets(args.model, args.threads)
    info = nets.info
    if info.image_size % args.descriptor:
        raise InputError(f"--descriptor {args.descriptor} must divide the model's input size {info.image_size}")
    curve, curve_source = diagnose.training_curve(info.manifest, args.run)

    total = sum(len(diagnose.split_objects(root, "train")) for root in args.data)
    with progress(total, "library of training views") as advance:
        library = diagnose.build_library(args.data, info.image_size, info.fill, args.library_views,
                                         args.descriptor, args.cache, lambda done, total: advance())
    plans = []
    for root in args.data:
        plans.append((root, "test", diagnose.split_objects(root, "test")))
        if args.train_objects:
            plans.append((root, "train", diagnose.split_objects(root, "train", args.train_objects)))
    sheet_root = args.data[-1]
    keep = {entry["id"] for entry in diagnose.split_objects(sheet_root, "test", args.sheet_objects)}
    results = {}
    with progress(sum(len(entries) for _, _, entries in plans) * args.trials, "views") as advance:
        for root, split, entries in plans:
            chosen = diagnose.trial_views(entries, args.trials, args.seed)
            results[root, split] = diagnose.diagnose_split(
                nets, root, entries, chosen, library if split == "test" else None, args.descriptor, info.threshold,
                keep=keep if (root, split) == (sheet_root, "test") else set(), progress=advance)
    model = model_line(nets)
    nets.close()

    command = shlex.join([".venv/bin/python", "scripts/diagnose_3d.py", *(sys.argv[1:] if argv is None else argv)])
    lines = ["# Diagnosis of the 3D stage: where the IoU is lost", "", "```", command, "```", "",
             f"Model: {model}.", ""]
    for root, manifest in manifests.items():
        tests = sum(e["split"] == "test" for e in manifest["objects"])
        trained = manifest["fingerprint"] in info.metadata.get("recon.data_fingerprint", "")
        lines.append(f"Data: {relative(root)} ({manifest['kind']}, fingerprint {manifest['fingerprint']}, {tests} test "
                     f"objects{'' if trained else '; the model records other training-data fingerprints: regenerated or changed since'}).")
    lines += ["", f"Voxel IoU at 32^3 (max-pooled), predictions cut at the model's iso level {info.threshold}; "
              f"{args.trials} trials of one random view per object (seed {args.seed}, the views `recon-cli eval` draws), "
              "views framed as training frames them. Predicted sketches come from the sketch runner on the crop framed "
              "around the true silhouette (as `recon-cli eval`), not from the whole-picture pipeline. Retrieval: the "
              f"training object (any category, all datasets' training splits, first {args.library_views} views each, "
              f"{len(library.keys)} views of {len(library.ids)} objects) whose view is nearest in L2 over the sketch "
              f"(silhouette, depth offset, normals/sqrt(3), background zeroed) average-pooled to {args.descriptor}x"
              f"{args.descriptor}; oracle retrieval: the training object of highest IoU with the truth.", ""]
    report, reading = {}, []
    columns = {**diagnose.IOU_COLUMNS, "retrieval_category": "retrieved category right", **SKETCH_LABELS}
    for root in args.data:
        test = results[root, "test"]
        rows = {key: diagnose.per_category(test, key) for key in (*diagnose.IOU_COLUMNS, *SKETCH_LABELS)}
        rows["retrieval_category"] = diagnose.category_hits(test, library)
        train = results.get((root, "train"))
        train_rows = {key: diagnose.per_category(train, key) for key in ("gt_sketch", "pred_sketch")} if train else None
        report[relative(root)] = {"test": rows, "train": train_rows, "test_objects": int(len(test["object"]) / args.trials)}
        lines += [f"## {root.name}: test split ({report[relative(root)]['test_objects']} objects x {args.trials} trials)", ""]
        lines += table(rows, columns, {"depth_mae": 4, "normal_angle_deg": 1}) + [""]
        if train_rows:
            lines += [f"Training objects ({args.train_objects} per category, evenly spaced, same protocol):", ""]
            lines += table(train_rows, {k: diagnose.IOU_COLUMNS[k] for k in train_rows}, {}) + [""]
        reading += findings(root.name, rows, train_rows)
    lines += ["## Training-batch IoU per epoch", "",
              f"From {curve_source}: mean over the epoch's batches of the IoU at probability 0.5 at the training "
              "resolution, epochs in the order they ran (later phases continue the numbering).", ""]
    if curve:
        lines += ["| stage | epoch | batch IoU | loss | samples/s |", "|---|---|---|---|---|"]
        lines += [f"| {row.get('stage')} | {row.get('epoch')} | {row['iou']:.3f} | {row.get('loss', float('nan')):.4f} | "
                  f"{row.get('samples_per_s', '')} |" for row in curve]
    else:
        lines.append("(no epochs with a training-batch IoU recorded)")
    lines += ["", "## Where the loss is (computed from the tables above)", "", *reading, "",
              f"![contact sheet]({args.sheet.name}) {args.sheet.name}: test objects of {sheet_root.name}, trial 1 "
              "view; IoU and the retrieved object written on each cell.", "", NOTES_MARKER, ""]
    notes = kept_notes(args.out)
    text = "\n".join(lines) + (notes + "\n" if notes else "")
    rows, labels = sheet_rows(results[sheet_root, "test"]["kept"], library)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if rows:
        save_png(args.sheet, contact_sheet(rows, labels, list(SHEET_COLUMNS)))
    write_bytes_atomic(args.out, text.encode())
    if args.json:
        write_json_atomic(args.json, {"command": command, "model": model, "datasets": report,
                                      "curve": curve, "curve_source": curve_source})
    err.print(f"wrote {relative(args.out)} and {relative(args.sheet)}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ReconError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
