"""Data generation throughput on this machine: objects/s and views/s, and where the time goes.

    python benchmarks/bench_data.py --objects 10 --views 20 --image-size 256 --voxel-res 128 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from recon.runtime.camera import Camera
from recon.runtime.render import render_view
from recon.runtime.voxels import voxelize_solid
from recon.train.data import RenderSettings, synth
from recon.train.shapes import CATEGORIES, make_shape


def phase_times(settings: RenderSettings, seeds: range) -> dict[str, float]:
    """Median seconds per object of each phase, single process."""
    times = {"shape": [], "render (all views)": [], "voxelize": []}
    for seed in seeds:
        for category in CATEGORIES:
            start = time.perf_counter()
            shape = make_shape(category, seed)
            times["shape"].append(time.perf_counter() - start)
            start = time.perf_counter()
            for view in range(settings.views):
                render_view(shape.mesh, Camera(azimuth=18.0 * view, elevation=20.0), settings.image_size)
            times["render (all views)"].append(time.perf_counter() - start)
            start = time.perf_counter()
            voxelize_solid(shape.mesh, settings.voxel_res)
            times["voxelize"].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=10, help="objects per category")
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--voxel-res", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    settings = RenderSettings(views=args.views, image_size=args.image_size, voxel_res=args.voxel_res)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        manifest = synth(Path(folder) / "bench", args.objects, list(CATEGORIES), 0, settings, args.workers)
        seconds = time.perf_counter() - start
    objects = len(manifest["objects"])
    print(f"| settings | objects/s | views/s | 300 per category x {args.views} views |")
    print("|---|---|---|---|")
    print(f"| {args.image_size} px, {args.voxel_res}^3, {args.workers} workers | {objects / seconds:.2f} | "
          f"{objects * args.views / seconds:.1f} | {900 / (objects / seconds) / 60:.1f} min |")
    print()
    print("| phase (one process, per object, median) | seconds |")
    print("|---|---|")
    for name, value in phase_times(settings, range(3)).items():
        print(f"| {name} | {value:.3f} |")


if __name__ == "__main__":
    main()
