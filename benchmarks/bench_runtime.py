"""The runtime (ONNX Runtime on the CPU) against PyTorch eager with the same weights and threads.

    .venv/bin/python benchmarks/bench_runtime.py                      # fresh `edge` nets, exported here
    .venv/bin/python benchmarks/bench_runtime.py --weights RUN --model MODEL --threads 2

Per network stage and end to end (pictures -> meshes through Reconstructor.batch, once with the
ONNX Runtime runners and once with the PyTorch nets plugged in as runners: the same preprocessing and
meshing, only the networks differ), at batch 1 and 8; then marching cubes at 128^3 and 64^3.
Prints a markdown table. Targets: runtime >= 1.5x eager at batch 1; meshing 128^3 < 50 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from recon.runtime.profile import timed_ms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def timed(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall time of fn() in ms."""
    return statistics.median(timed_ms(fn, repeats, warmup))


def timed_pair(a, b, repeats: int, warmup: int = 2) -> tuple[float, float]:
    """Median ms of a() then of b(), in separate blocks: PyTorch's OpenMP threads keep spinning for
    a while after each call, which would slow whatever runs next on a small CPU."""
    return timed(a, repeats, warmup), timed(b, repeats, warmup)


def torch_runners(run: Path, threads: int):
    """The run's nets in PyTorch eager, behind the runtime's runner interface (same outputs)."""
    import torch

    from recon.export.onnx_export import build_nets, load_run
    from recon.runtime.backends import BaseRunner, TensorSpec

    torch.set_num_threads(threads)
    loaded = load_run(run)  # the deployable chain, exactly what export reads
    sketch, voxel = build_nets(loaded)
    s = loaded["preset"].image_size

    class TorchRunner(BaseRunner):
        def __init__(self, name, forward, input_name, channels):
            super().__init__()
            self.name, self.forward, self.provider = name, forward, "torch eager"
            self.inputs = {input_name: TensorSpec(np.dtype(np.float32), (None, channels, s, s))}

        def activate_impl(self):
            pass

        def deactivate_impl(self):
            pass

        def infer_impl(self, feed):
            with torch.inference_mode():
                (value,) = feed.values()
                return {k: v.numpy() for k, v in self.forward(torch.from_numpy(value)).items()}

    def sketch_forward(x):
        out = sketch(x)
        return {"normals": out["normals"], "depth": out["depth"], "silhouette": torch.sigmoid(out["silhouette_logits"])}

    return {"sketch": TorchRunner("sketch", sketch_forward, "image", 3).activate(),
            "voxel": TorchRunner("voxel", lambda x: {"occupancy": torch.sigmoid(voxel(x))}, "sketch", 5).activate()}


def photos(count: int, seed: int = 0) -> list[np.ndarray]:
    """Pictures without alpha: a textured box on a white background, at phone-ish sizes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        image = np.full((480, 640, 3), 255, np.uint8)
        image[120:400, 200:460] = rng.integers(30, 220, (280, 260, 3))
        out.append(image)
    return out


def ball(res: int, radius: float = 0.45) -> np.ndarray:
    c = -0.5 + (np.arange(res) + 0.5) / res
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    return (1 / (1 + np.exp((np.sqrt(x ** 2 + y ** 2 + z ** 2) - radius) * res))).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="run folder (sketch.pt + joint.pt/voxel.pt); default: fresh edge nets")
    parser.add_argument("--model", type=Path, help="its exported model folder; default: exported here")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for both")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    from recon.runtime.meshing import marching_cubes, mesh_stats
    from recon.runtime.pipeline import Reconstructor

    work = Path(tempfile.mkdtemp(prefix="bench_runtime."))
    run, model = args.weights, args.model
    if run is None:
        from conftest import make_run

        run = make_run(work / "run")
    if model is None:
        from recon.export.onnx_export import export_model

        model = work / "model"
        export_model(run, model, log=None)

    reconstructor = Reconstructor(model, device="cpu", threads=args.threads, batch=8)
    ort = dict(reconstructor.runners)
    eager = torch_runners(run, args.threads)
    s = reconstructor.model.image_size
    rng = np.random.default_rng(0)
    rows = []
    for batch in (1, 8):
        image = rng.standard_normal((batch, 3, s, s)).astype(np.float32)
        sketch = np.concatenate([rng.standard_normal((batch, 4, s, s)), rng.random((batch, 1, s, s))], 1).astype(np.float32)
        for stage, name, value in (("sketch net", "image", image), ("voxel net", "sketch", sketch)):
            net = "sketch" if stage == "sketch net" else "voxel"
            a, b = timed_pair(lambda: ort[net].infer({name: value}), lambda: eager[net].infer({name: value}),
                              args.repeats)
            rows.append((stage, batch, a, b))
        pictures = photos(batch)

        def end_to_end(runners):
            reconstructor.runners = runners
            reconstructor.batch(pictures)

        a, b = timed_pair(lambda: end_to_end(ort), lambda: end_to_end(eager), max(3, args.repeats // 2), warmup=1)
        reconstructor.runners = ort
        rows.append(("end to end (picture -> mesh)", batch, a, b))
    statuses = [r.status for r in reconstructor.batch(photos(2))]

    print(f"\nrecon runtime benchmark: {reconstructor.model.preset or '?'} model ({s} px -> "
          f"{reconstructor.model.voxel_res}^3), {args.threads} threads, median of {args.repeats}; "
          f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end; "
          f"end-to-end statuses {statuses}\n")
    print("| stage | batch | runtime, ONNX Runtime CPU (ms) | PyTorch eager (ms) | speed-up | runtime per picture (ms) |")
    print("|---|---:|---:|---:|---:|---:|")
    for stage, batch, a, b in rows:
        print(f"| {stage} | {batch} | {a:.1f} | {b:.1f} | {b / a:.2f}x | {a / batch:.1f} |")

    print("\n| marching cubes (ball, radius 0.45) | faces | marching cubes (ms) | + mesh stats (ms) |")
    print("|---|---:|---:|---:|")
    for res in (128, 64):
        grid = ball(res)
        mesh = marching_cubes(grid, 0.5)
        a = timed(lambda: marching_cubes(grid, 0.5), args.repeats)
        b = timed(lambda: mesh_stats(marching_cubes(grid, 0.5)), args.repeats)
        print(f"| {res}^3 | {len(mesh.faces)} | {a:.1f} | {b:.1f} |")
    try:
        import mcubes

        grid = np.pad(ball(128), 1)
        print(f"\n(for reference, PyMCubes over the whole padded 128^3 grid: "
              f"{timed(lambda: mcubes.marching_cubes(grid, 0.5), 5):.1f} ms)")
    except ImportError:
        pass
    reconstructor.close()


if __name__ == "__main__":
    main()
