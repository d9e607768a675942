#!/usr/bin/env python
"""Fit a model folder's confidence calibration and store it in the folder (MODEL/confidence.json, listed
with its sha256 in model.json). Re-run it after every export:

    .venv/bin/python scripts/calibrate_confidence.py recon/models/default --data data/synth-v1 --data data/corpus-v1

Objects: plain renders of the datasets' training split; non-objects: generated (recon.train.calibration).
The held-out check (printed, and stored in confidence.json's "report") uses the test split and
non-objects drawn with another seed: the share of each kind flagged (failed, no_object or low_confidence).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="Model folder (recon-cli export); confidence.json is written into it.")
    parser.add_argument("--data", type=Path, action="append", required=True, help="Dataset folder(s) (repeatable).")
    parser.add_argument("--objects", type=int, default=600, help="Training renders to fit on (and test renders to check).")
    parser.add_argument("--non-objects", type=int, default=600, help="Generated non-object pictures to fit on (and to check).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per network.")
    parser.add_argument("--dry-run", action="store_true", help="Fit and report; write nothing.")
    parser.add_argument("--cache", type=Path, default=None, help="Keep the collected evidence in this .npz and reuse "
                        "it while the networks and arguments are the same (re-fits take seconds).")
    return parser.parse_args(argv)


def shares(flags: np.ndarray, labels: list[str]) -> dict:
    return {label: round(float(flags[[lab == label for lab in labels]].mean()), 4) for label in sorted(set(labels))}


def read_cache(path: Path | None, key: str) -> dict:
    """{set name: (evidence rows, statuses)} from an earlier run with the same key, else {}."""
    if path is None or not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as archive:
        if str(archive["key"]) != key:
            return {}
        names = json.loads(str(archive["names"]))
        return {name: (archive[f"x{i}"], json.loads(str(archive[f"s{i}"]))) for i, name in enumerate(names)}


def write_cache(path: Path, key: str, evidence: dict) -> None:
    from recon.runtime.fileio import save_npz_atomic

    arrays = {"key": np.array(key), "names": np.array(json.dumps(list(evidence)))}
    for i, (rows, statuses) in enumerate(evidence.values()):
        arrays[f"x{i}"], arrays[f"s{i}"] = rows, np.array(json.dumps(statuses))
    save_npz_atomic(path, **arrays)


def store(model_dir: Path, calibration_dict: dict) -> None:
    """Write confidence.json, then list it in model.json (an interrupted run leaves it unlisted: unused)."""
    from recon.runtime.confidence import CALIBRATION_FILE
    from recon.runtime.fileio import write_json_atomic
    from recon.runtime.model import MANIFEST, read_json, sha256_file

    path = model_dir / CALIBRATION_FILE
    write_json_atomic(path, calibration_dict)
    manifest = read_json(model_dir / MANIFEST)
    manifest["files"][CALIBRATION_FILE] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest["confidence"] = calibration_dict["report"]
    write_json_atomic(model_dir / MANIFEST, manifest)


def main(argv=None) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from recon.runtime.confidence import CALIBRATION_FILE
    from recon.runtime.errors import ReconError
    from recon.runtime.pipeline import Reconstructor
    from recon.train import calibration as cal

    args = parse_args(argv)
    console = Console(stderr=True, highlight=False)
    try:
        with Reconstructor(args.model, device="cpu", threads=args.threads, batch=16) as reconstructor:
            size = reconstructor.model.image_size
            sets = {
                "fit objects": cal.renders(args.data, "train", args.objects, args.seed),
                "fit non-objects": cal.negatives(args.non_objects, args.seed, size),
                "test objects": cal.renders(args.data, "test", args.objects, args.seed),
                "test non-objects": cal.negatives(args.non_objects, args.seed + 1, size),
            }
            fitted_on = {name: reconstructor.model.sha256(name) for name in ("sketch.onnx", "voxel.onnx")}
            key = json.dumps([fitted_on, cal.FEATURES, [str(d) for d in args.data], args.objects, args.non_objects,
                              args.seed])
            evidence = read_cache(args.cache, key)
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console) as bar:
                for name, pairs in sets.items():
                    if name not in evidence:
                        task = bar.add_task(name, total=len(pairs))
                        evidence[name] = cal.collect(reconstructor, [p for _, p in pairs],
                                                     lambda n, task=task: bar.advance(task, n))
            if args.cache:
                write_cache(args.cache, key, evidence)
            fitted = cal.fit_calibration(evidence["fit objects"][0], evidence["fit non-objects"][0])
            report = {"accept": fitted.accept, "refuse": fitted.refuse, "data": [str(d) for d in args.data],
                      "objects": args.objects, "non_objects": args.non_objects, "seed": args.seed, "flagged": {}}
            for name, pairs in sets.items():
                flags = cal.flagged(fitted, *evidence[name])
                report["flagged"][name] = {"all": round(float(flags.mean()), 4), **shares(flags, [k for k, _ in pairs])}
    except ReconError as error:
        console.print(f"[red]error:[/] {error}", soft_wrap=True)
        return 2
    for name, row in report["flagged"].items():
        console.print(f"flagged {name:17s} " + ", ".join(f"{k} {v:.1%}" for k, v in row.items()))
    console.print(f"accept >= {fitted.accept}, no_object < {fitted.refuse}; weights: "
                  + ", ".join(f"{n} {w:+.2f}/{w2:+.2f}" for n, w, w2 in
                              zip(cal.FEATURES, fitted.weights, fitted.weights[len(cal.FEATURES):])) + " (x/x^2)",
                  soft_wrap=True)
    if not args.dry_run:
        store(args.model, fitted.to_dict(fitted_on, report))
        console.print(f"wrote {args.model / CALIBRATION_FILE}")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
