"""Vertex colouring on held-out renders: pose error, colour error and cost, per variant, side by side.

    .venv/bin/python benchmarks/bench_color.py [--data data/synth-v1] [--views 36] [--model MODEL]

For test-split objects of a dataset folder (views store rgb, mask and camera), view 0 goes through the
Reconstructor without colour; then each variant colours the mesh and is scored:
  pose      azimuth / elevation error of the fitted camera against the render's camera (degrees);
  same      mean absolute RGB error (0..255) between the input render and the coloured mesh rendered
            unlit from the render's camera, over pixels both show (the visible surface);
  other     the same against view 1 of the object (another camera: mostly surface the input did not see);
  cpu ms    the colouring's CPU time per mesh at batch 1 (median; wall time rises with other load on
            the cores, CPU time does not), and wall ms beside it.
Variants: silhouette only / silhouette + depth pose search, the mirror / nearest fill of unseen
vertices, the render's true camera ("oracle": what a perfect pose search would give) and one flat
colour (the mean of the object's pixels: the floor any colouring must beat). Re-run on a new model.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from recon.runtime.camera import Camera
from recon.runtime.color import ViewFit, find_view, vertex_colors
from recon.runtime.pipeline import Reconstructor
from recon.runtime.render import render_view

RENDER_SIZE = 96


def test_objects(root: Path, count: int) -> list[str]:
    """Test-split object ids, spread evenly over the sorted list (so every category appears)."""
    ids = []
    for path in sorted((root / "objects").glob("*.npz")):
        with np.load(path) as archive:
            meta = json.loads(str(archive["meta"]))
        if meta["split"] == "test":
            ids.append(meta["id"])
    step = max(1, len(ids) // count)
    return ids[::step][:count]


def colour_error(mesh, rgba: np.ndarray, view) -> float:
    """Mean |RGB difference| over pixels where both the render and the unlit coloured mesh show the object."""
    camera = Camera.from_array(view["camera"])
    face_colors = rgba[:, :3][mesh.faces].mean(axis=1) / 255.0
    ours = render_view(mesh, camera, RENDER_SIZE, face_colors=face_colors, ambient=1.0)
    size = view["rgb"].shape[0]
    pick = (np.arange(RENDER_SIZE) + 0.5) * size / RENDER_SIZE
    index = pick.astype(np.int64)
    truth_rgb, truth_mask = view["rgb"][index][:, index], view["mask"][index][:, index]
    both = ours["mask"] & truth_mask
    if not both.any():
        return float("nan")
    return float(np.abs(ours["rgb"][both].astype(np.float32) - truth_rgb[both]).mean())


def angle_error(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


VARIANTS = {
    "silhouette + depth, mirror": dict(depth=True, unseen="mirror"),
    "silhouette + depth, nearest": dict(depth=True, unseen="nearest"),
    "silhouette only, mirror": dict(depth=False, unseen="mirror"),
    "oracle camera, mirror": dict(oracle=True, unseen="mirror"),
    "one flat colour": dict(flat=True),
}


def run_variant(spec: dict, result, view) -> tuple[np.ndarray, ViewFit | None, tuple[float, float]]:
    """(RGBA per vertex, fitted view or None, (CPU ms, wall ms)) of one variant on one result."""
    sketch, vertices = result.sketch, result.mesh.vertices
    start, cpu = time.perf_counter(), time.process_time()

    def spent() -> tuple[float, float]:
        return (time.process_time() - cpu) * 1000, (time.perf_counter() - start) * 1000

    if spec.get("flat"):
        mask = sketch["silhouette"] > 0.5
        mean = result.image[mask].mean(axis=0)
        rgba = np.tile(np.append(np.rint(mean), 255).astype(np.uint8), (len(vertices), 1))
        return rgba, None, spent()
    fit = None
    if spec.get("oracle"):
        fit = ViewFit(Camera.from_array(view["camera"]), 0.0, 0.0)
    elif not spec["depth"]:
        fit = find_view(vertices, sketch["silhouette"], None)
    rgba, fit = vertex_colors(vertices, result.image, sketch["silhouette"], sketch["depth"], fit=fit,
                              unseen=spec["unseen"])
    return rgba, fit, spent()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/synth-v1"))
    parser.add_argument("--views", type=int, default=36, help="test objects (one input view each)")
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (the timings share them)")
    rows = {name: {"az": [], "el": [], "same": [], "other": [], "cpu": [], "ms": [], "seen": []} for name in VARIANTS}
    with Reconstructor(args.model, threads=1, color=False) as reconstruct:
        for object_id in test_objects(args.data, args.views):
            view, other = (np.load(args.data / "views" / f"{object_id}_{v:02d}.npz") for v in (0, 1))
            result = reconstruct(view["rgb"])
            if not result.ok:
                print(f"skipped {object_id}: {result.error}")
                continue
            for name, spec in VARIANTS.items():
                rgba, fit, (cpu, ms) = run_variant(spec, result, view)
                row = rows[name]
                row["cpu"].append(cpu)
                row["ms"].append(ms)
                row["same"].append(colour_error(result.mesh, rgba, view))
                row["other"].append(colour_error(result.mesh, rgba, other))
                if fit is not None:
                    row["az"].append(angle_error(fit.camera.azimuth, float(view["camera"][0])))
                    row["el"].append(abs(fit.camera.elevation - float(view["camera"][1])))
                    row["seen"].append(fit.seen)
    count = len(rows["one flat colour"]["cpu"])
    print(f"{count} held-out views of {args.data} (view 0 in, view 0 and view 1 scored), renders {RENDER_SIZE} px")
    print(f"{'variant':30s} {'az err med':>10s} {'az<30deg':>8s} {'el err med':>10s} {'seen':>5s} "
          f"{'RGB err same view':>17s} {'RGB err other view':>18s} {'cpu ms':>6s} {'wall ms':>7s}")
    for name, row in rows.items():
        pose = (f"{np.median(row['az']):10.1f} {np.mean(np.array(row['az']) < 30):8.0%} {np.median(row['el']):10.1f} "
                f"{np.mean(row['seen']):5.0%}") if row["az"] else f"{'-':>10s} {'-':>8s} {'-':>10s} {'-':>5s}"
        print(f"{name:30s} {pose} {np.nanmean(row['same']):17.1f} {np.nanmean(row['other']):18.1f} "
              f"{np.median(row['cpu']):6.2f} {np.median(row['ms']):7.2f}")


if __name__ == "__main__":
    main()
