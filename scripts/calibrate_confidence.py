#!/usr/bin/env python
"""Fit a model folder's confidence calibration and store it in the folder (MODEL/confidence.json, listed
with its sha256 in model.json). Re-run it after every export:

    .venv/bin/python scripts/calibrate_confidence.py recon/models/default --data data/synth-v1 \
        --data data/corpus-v1 --cache runs/confidence-cache.npz

Objects: the datasets' training split, plain and in cluttered rooms, framed automatically, by alpha, by a
mask and by a box; non-objects: generated, framed the ways a user could (recon.train.calibration). The
held-out check (printed, and stored in confidence.json's "report") uses the test split and non-objects
drawn with another seed: the share flagged (failed, no_object or low_confidence) per kind and per
framing, and the same without each feature (what each one adds).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import sys
from pathlib import Path

import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="Model folder (recon-cli export); confidence.json is written into it.")
    parser.add_argument("--data", type=Path, action="append", required=True, help="Dataset folder(s) (repeatable).")
    parser.add_argument("--objects", type=int, default=800, help="Training objects to fit on (and test objects to "
                        "check), the framings taking turns.")
    parser.add_argument("--non-objects", type=int, default=800, help="Generated non-object pictures to fit on (and "
                        "to check).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per network.")
    parser.add_argument("--dry-run", action="store_true", help="Fit and report; write nothing in the model folder.")
    parser.add_argument("--out", type=Path, default=None, help="Write the report's tables as markdown here "
                        "(docs/results/confidence.md).")
    parser.add_argument("--cache", type=Path, default=None, help="Keep the collected evidence in this .npz and reuse "
                        "a set's while its pictures and the networks are the same (re-fits take seconds).")
    return parser.parse_args(argv)


def breakdown(flags: np.ndarray, samples) -> dict:
    """Flagged shares: all, per kind, per framing, per kind and framing."""
    def shares(labels):
        return {label: round(float(flags[[lab == label for lab in labels]].mean()), 4) for label in sorted(set(labels))}

    return {"all": round(float(flags.mean()), 4), "kinds": shares([s.kind for s in samples]),
            "framings": shares([s.framing for s in samples]),
            "kinds x framings": shares([f"{s.kind} {s.framing}" for s in samples])}


def cache_key(fitted_on: dict) -> str:
    """What every set's evidence depends on besides its pictures: the networks and the code turning a
    picture into evidence (a change there collects again)."""
    from recon.runtime import color, confidence
    from recon.train import calibration

    code = "".join(inspect.getsource(f) for f in (confidence.evidence, color.find_view, calibration.collect))
    return json.dumps([fitted_on, hashlib.sha256(code.encode()).hexdigest()])


def digest(samples) -> str:
    """The sha256 of a set's pictures and framings: a set is collected again only when they change."""
    sha = hashlib.sha256()
    for sample in samples:
        sha.update(f"{sample.kind}|{sample.framing}|{sample.box}".encode())
        for array in (sample.picture, sample.mask, sample.truth):
            if array is not None:
                sha.update(repr(array.shape).encode() + np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()


def read_cache(path: Path | None, key: str) -> dict:
    """{digest of a set's samples: Evidence} from an earlier run with the same key, else {}."""
    from recon.train.calibration import Evidence

    if path is None or not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as archive:
        if str(archive["key"]) != key:
            return {}
        sets = json.loads(str(archive["sets"]))
        return {sha: Evidence(names, archive[f"x{i}"], statuses, archive[f"f{i}"],
                              archive[f"e{i}"] if f"e{i}" in archive.files else None)
                for i, (sha, names, statuses) in enumerate(sets)}


def write_cache(path: Path, key: str, evidence: dict) -> None:
    from recon.runtime.fileio import save_npz_atomic

    arrays = {"key": np.array(key),
              "sets": np.array(json.dumps([(sha, e.names, e.statuses) for sha, e in evidence.items()]))}
    for i, e in enumerate(evidence.values()):
        arrays[f"x{i}"], arrays[f"f{i}"] = e.x, e.framing
        if e.embedding is not None:
            arrays[f"e{i}"] = e.embedding
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


def _table(title: str, rows: dict, columns: list[str]) -> list[str]:
    """A markdown table: a row per key of `rows` ({column: share}), '-' where a row lacks a column."""
    lines = [f"| {title} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, row in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{row[c]:.1%}" if c in row else "-" for c in columns) + " |")
    return lines + [""]


def markdown(report: dict, model: Path, command: str) -> str:
    """The report as docs/results/confidence.md: flagged shares per kind and per framing, and per left-out feature."""
    flagged = report["flagged"]
    lines = [f"# Confidence calibration of {model}", "", f"`{command}` (accept >= {report['accept']}, "
             f"no_object < {report['refuse']}). Flagged: failed, no_object or low_confidence. Fit: the training "
             "split and non-objects of seed s; held out: the test split and non-objects of seed s + 1. Objects' "
             "framings: plain or cluttered background + auto (the sketch net frames), alpha, mask or box (a "
             "detector-like box: the true one, each edge moved by a few percent); non-objects' mask and box frame "
             "the other shape, or a random region where there is nothing (recon.train.calibration_pictures).", ""]
    for part, title in (("kinds", "kind"), ("framings", "framing")):
        for group in ("objects", "non-objects"):
            names = [f"fit {group}", f"test {group}"]
            columns = sorted({key for name in names for key in flagged[name][part]})
            rows = {name: {"all": flagged[name]["all"], **flagged[name][part]} for name in names}
            lines += [f"Flagged {group} per {title}:", ""] + _table("set", rows, ["all"] + columns)
    negatives = flagged["test non-objects"]["kinds x framings"]
    kinds = sorted({key.split(" ")[0] for key in negatives})
    framings = sorted({key.split(" ")[1] for key in negatives})
    rows = {kind: {f: negatives[f"{kind} {f}"] for f in framings if f"{kind} {f}" in negatives} for kind in kinds}
    lines += ["Held-out non-objects flagged, per kind and framing:", ""] + _table("kind", rows, framings)
    without = report["without"]
    columns = list(next(iter(without.values())))
    lines += ["Held-out flagged shares of a fit without each feature (none: all of them), and of the calibration "
              "before boxes, masks, clutter and the view fit were in it (its positives plain renders framed "
              "automatically, as fitted before):", ""]
    lines += _table("left out", without, columns)
    return "\n".join(lines)


def fit(evidence: dict, features, objects=None) -> "object":
    """The Calibration over `features`; objects: a mask of the fit objects to use (None: all)."""
    from recon.train import calibration as cal

    evidence_only = tuple(f for f in features if f != cal.APPEARANCE)
    chosen = slice(None) if objects is None else objects
    positives, negatives = (evidence[name] for name in ("fit objects", "fit non-objects"))
    embeddings = ((positives.embedding[chosen], negatives.embedding) if cal.APPEARANCE in features else None)
    return cal.fit_calibration(positives.columns(evidence_only)[chosen], negatives.columns(evidence_only),
                               features=features, embeddings=embeddings)


def all_features(evidence: dict) -> tuple:
    """FEATURES, and APPEARANCE where the sketch net gave every set its features."""
    from recon.train import calibration as cal

    with_features = all(e.embedding is not None for e in evidence.values())
    return (*cal.FEATURES, cal.APPEARANCE) if with_features else cal.FEATURES


# The calibration before framings, the view fit and the appearance head: plain renders framed
# automatically, no view_* features, no appearance.
BEFORE = "before: plain+auto objects, no view fit"


def ablation(evidence: dict, sets: dict, features) -> dict:
    """{feature: held-out flagged shares of a fit without it}: what each feature adds; and BEFORE."""
    from recon.train import calibration as cal

    plain = np.array([sample.framing == "plain+auto" for sample in sets["fit objects"]])
    fits = {left_out: fit(evidence, tuple(f for f in features if f != left_out)) for left_out in ("none", *features)}
    fits[BEFORE] = fit(evidence, tuple(f for f in features if not f.startswith("view_") and f != cal.APPEARANCE), plain)
    out = {}
    for label, fitted in fits.items():
        row = {}
        for name in ("test objects", "test non-objects"):
            split = breakdown(cal.flagged(fitted, evidence[name]), sets[name])
            row[name] = split["all"]
            if name == "test non-objects":
                row.update(split["kinds"])
            else:
                row.update({f"objects {k}": v for k, v in split["framings"].items()})
        out[label] = row
    return out


def collect_all(reconstructor, sets: dict, key: str, cache: Path | None, console) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from recon.train import calibration as cal

    cached, evidence = read_cache(cache, key), {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        shas = {name: digest(samples) for name, samples in sets.items()}
        for name, samples in sets.items():
            sha = shas[name]
            if sha not in cached:
                task = bar.add_task(name, total=len(samples))
                cached[sha] = cal.collect(reconstructor, samples, lambda n, task=task: bar.advance(task, n))
            evidence[name] = cached[sha]
    if cache:
        write_cache(cache, key, {shas[name]: evidence[name] for name in sets})
    return evidence


def main(argv=None) -> int:
    from rich.console import Console

    from recon.runtime.confidence import CALIBRATION_FILE
    from recon.runtime.errors import ReconError
    from recon.runtime.pipeline import Reconstructor
    from recon.train import calibration as cal
    from recon.train.calibration_pictures import negatives, objects

    args = parse_args(argv)
    console = Console(stderr=True, highlight=False)
    try:
        with Reconstructor(args.model, device="cpu", threads=args.threads, batch=16,
                           calibrated=False) as reconstructor:
            sets = {
                "fit objects": objects(args.data, "train", args.objects, args.seed),
                "fit non-objects": negatives(args.non_objects, args.seed),
                "test objects": objects(args.data, "test", args.objects, args.seed),
                "test non-objects": negatives(args.non_objects, args.seed + 1),
            }
            fitted_on = {name: reconstructor.model.sha256(name) for name in ("sketch.onnx", "voxel.onnx")}
            evidence = collect_all(reconstructor, sets, cache_key(fitted_on), args.cache, console)
    except ReconError as error:
        console.print(f"[red]error:[/] {error}", soft_wrap=True)
        return 2
    features = all_features(evidence)
    fitted = fit(evidence, features)
    report = {"accept": fitted.accept, "refuse": fitted.refuse, "data": [str(d) for d in args.data],
              "objects": args.objects, "non_objects": args.non_objects, "seed": args.seed,
              "flagged": {name: breakdown(cal.flagged(fitted, evidence[name]), samples)
                          for name, samples in sets.items()},
              "without": ablation(evidence, sets, features)}
    for name, row in report["flagged"].items():
        for part in ("kinds", "framings"):
            console.print(f"flagged {name:17s} " + ", ".join(f"{k} {v:.1%}" for k, v in
                                                             {"all": row["all"], **row[part]}.items()), soft_wrap=True)
    for left_out, row in report["without"].items():
        console.print(f"without {left_out:20s} " + ", ".join(f"{k} {v:.1%}" for k, v in row.items()), soft_wrap=True)
    console.print(f"accept >= {fitted.accept}, no_object < {fitted.refuse}; weights: "
                  + ", ".join(f"{n} {w:+.2f}/{w2:+.2f}" for n, w, w2 in
                              zip(features, fitted.weights, fitted.weights[len(features):])) + " (x/x^2)",
                  soft_wrap=True)
    if not args.dry_run:
        store(args.model, fitted.to_dict(fitted_on, report))
        console.print(f"wrote {args.model / CALIBRATION_FILE}")
    if args.out:
        from recon.runtime.fileio import write_bytes_atomic

        command = "scripts/calibrate_confidence.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_bytes_atomic(args.out, markdown(report, args.model, command).encode())
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
