"""The runtime's engines against PyTorch eager with the same weights and threads, side by side.

    .venv/bin/python benchmarks/bench_runtime.py                      # fresh `edge` nets, exported here
    .venv/bin/python benchmarks/bench_runtime.py --weights RUN --model MODEL --threads 2
    .venv/bin/python benchmarks/bench_runtime.py --weights recon/models/default --model recon/models/default
    .venv/bin/python benchmarks/bench_runtime.py --data DATA          # fresh nets with INT8 twins
    .venv/bin/python benchmarks/bench_runtime.py --weights RUN --model MODEL --baseline OLD_MODEL  # + old vs new

Sides: PyTorch eager (the run's nets behind the runner interface) and every engine this machine has
for MODEL (recon.runtime.speed.engines): ONNX Runtime CPU FP32, OpenVINO FP32 and BF16 (where the
CPU has it), and the INT8 twins on both when MODEL has them (`recon-cli export --int8`). Each side is
plugged into one Reconstructor as its runners, so preprocessing and meshing are the same code and only
the networks differ. Interleaved: every round runs each side once, in turn, so a neighbour's load
lands on all sides alike; the tables give medians over rounds, and ratios taken from those medians.

Per network and end to end (pictures without alpha -> meshes) at batch 1 and 8; voxel IoU of each
side's grids against ONNX Runtime FP32 on the same pictures; the machine's measured sgemm peak and each
network's share of it; marching cubes against the mesh statistics. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# PyTorch's OpenMP threads otherwise busy-wait after each call, slowing whichever side runs next.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

REFERENCE = "CPUExecutionProvider"  # ONNX Runtime CPU FP32: the ratios' denominator
EAGER = "PyTorch eager"


def torch_runners(run: Path, threads: int):
    """The run's nets in PyTorch eager, behind the runtime's runner interface (same outputs)."""
    import torch

    from recon.export.onnx_export import SKETCH_OUTPUTS, _wrappers
    from recon.export.run_folder import eager_nets
    from recon.runtime.backends import BaseRunner, TensorSpec

    torch.set_num_threads(threads)
    # The deployable chain wrapped exactly as export wraps it (outputs named and activated alike).
    sketch_export, voxel_export = _wrappers()
    sketch, voxel = (wrap(net).eval() for wrap, net in zip((sketch_export, voxel_export), eager_nets(run)))

    class TorchRunner(BaseRunner):
        def __init__(self, name, forward, input_name, channels):
            super().__init__()
            self.name, self.forward, self.provider = name, forward, EAGER
            self.inputs = {input_name: TensorSpec(np.dtype(np.float32), (None, channels, None, None))}

        def activate_impl(self):
            pass

        def deactivate_impl(self):
            pass

        def infer_impl(self, feed):
            with torch.inference_mode():
                (value,) = feed.values()
                return {k: v.numpy() for k, v in self.forward(torch.from_numpy(value)).items()}

    return {"sketch": TorchRunner("sketch", lambda x: dict(zip(SKETCH_OUTPUTS, sketch(x))), "image", 3).activate(),
            "voxel": TorchRunner("voxel", lambda x: {"occupancy": voxel(x)}, "sketch", 5).activate()}


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


def sides(model, run: Path, threads: int) -> dict:
    """label -> {"sketch": runner, "voxel": runner}, activated; engines that do not start are skipped."""
    from recon.runtime.speed import engines

    out = {EAGER: torch_runners(run, threads)} if run is not None else {}  # no run folder: no eager side
    for label, (precision, factory) in engines(model, threads).items():
        try:
            out[label] = {net: factory(model.onnx(net, precision)).activate() for net in ("sketch", "voxel")}
        except Exception as error:
            print(f"skipped {label}: {error}", file=sys.stderr)
    return out


def compare_models(reconstructor, model_dir: Path, baseline_dir: Path, threads: int, repeats: int) -> None:
    """End to end, MODEL against another model folder, on the shipped examples (pictures as users
    give them: framing passes included), interleaved, ONNX Runtime CPU FP32 on both."""
    from recon.runtime.pipeline import Reconstructor
    from recon.runtime.speed import interleaved_ms

    examples = sorted(p for p in (Path(__file__).resolve().parents[1] / "examples").iterdir()
                      if p.suffix in (".png", ".jpg"))
    print(f"\nEnd to end on the {len(examples)} shipped example pictures, {model_dir} against {baseline_dir} "
          "(ONNX Runtime CPU FP32 both, interleaved, median ms per picture):\n")
    print("| batch | this model | baseline | baseline / this (above 1: this is faster) |")
    print("|---:|---:|---:|---:|")
    with Reconstructor(baseline_dir, device="cpu", threads=threads, batch=8) as baseline:
        for batch in (1, 8):
            chunks = [examples[i:i + batch] for i in range(0, len(examples), batch)]
            times = interleaved_ms({"this": lambda: [reconstructor.batch(c, color=False) for c in chunks],
                                    "baseline": lambda: [baseline.batch(c, color=False) for c in chunks]},
                                   max(3, repeats // 2), warmup=1)
            this, base = (float(np.median(times[k])) / len(examples) for k in ("this", "baseline"))
            print(f"| {batch} | {this:.1f} | {base:.1f} | {base / this:.2f}x |")


def table(title: str, rows: list, labels: list, cell) -> None:
    print(f"\n{title}\n")
    print("| stage | batch | " + " | ".join(labels) + " |")
    print("|---|---:|" + "---:|" * len(labels))
    for stage, batch, medians in rows:
        print(f"| {stage} | {batch} | " + " | ".join(cell(medians, label) for label in labels) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="run folder (sketch.pt + joint.pt/voxel.pt) or model folder "
                        "(its ONNX weights imported) for the PyTorch side; "
                        "default: fresh edge nets (none with --model alone: no PyTorch side)")
    parser.add_argument("--model", type=Path, help="its exported model folder; default: exported here")
    parser.add_argument("--data", type=Path, help="dataset: the model exported here gets INT8 twins calibrated "
                        "on its training views (recon-cli export --int8)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for every side")
    parser.add_argument("--repeats", type=int, default=10, help="interleaved rounds per network measurement")
    parser.add_argument("--baseline", type=Path, help="another model folder (e.g. the one shipped before): end to "
                        "end on the shipped example pictures, interleaved with MODEL, both ONNX Runtime CPU FP32")
    args = parser.parse_args()

    from recon.runtime.meshing import marching_cubes, mesh_stats
    from recon.runtime.pipeline import Reconstructor
    from recon.runtime.profile import estimate_nets
    from recon.runtime.speed import interleaved_ms, sgemm_peak
    from recon.runtime.voxels import iou

    work = Path(tempfile.mkdtemp(prefix="bench_runtime."))
    run, model_dir = args.weights, args.model
    if run is None and model_dir is None:
        from conftest import make_run

        run = make_run(work / "run")
    if model_dir is None:
        from recon.export.onnx_export import export_model

        model_dir = work / "model"
        export_model(run, model_dir, int8=args.data is not None, data=args.data, log=None)

    with Reconstructor(model_dir, device="auto", threads=args.threads) as default:
        default_runs = ", ".join(sorted(set(default.providers.values())))
    reconstructor = Reconstructor(model_dir, device="cpu", threads=args.threads, batch=8)
    own_runners = reconstructor.runners  # given back before close(); the sides are closed below
    model = reconstructor.model
    runners = sides(model, run, args.threads)
    labels = list(runners)
    s = model.image_size
    rng = np.random.default_rng(0)
    medians, rows, agreement = {}, [], {}
    for batch in (1, 8):
        feeds = {"sketch": {"image": rng.standard_normal((batch, 3, s, s)).astype(np.float32)},
                 "voxel": {"sketch": np.concatenate([rng.standard_normal((batch, 4, s, s)), rng.random((batch, 1, s, s))],
                                                    1).astype(np.float32)}}
        for net in ("sketch", "voxel"):
            times = interleaved_ms({label: lambda r=r: r[net].infer(feeds[net]) for label, r in runners.items()},
                                   args.repeats, warmup=2)
            medians[(net, batch)] = {label: float(np.median(t)) for label, t in times.items()}
            rows.append((f"{net} net", batch, medians[(net, batch)]))
        pictures = photos(batch)

        def end_to_end(label):
            reconstructor.runners = runners[label]
            return reconstructor.batch(pictures)

        times = interleaved_ms({label: lambda label=label: end_to_end(label) for label in labels},
                               max(3, args.repeats // 2), warmup=1)
        rows.append(("end to end (picture -> mesh)", batch, {label: float(np.median(t)) for label, t in times.items()}))
        if batch == 8:
            grids = {label: [r.voxels for r in end_to_end(label)] for label in labels}
            agreement = {label: np.mean([iou(a > model.threshold, b > model.threshold) if a is not None and b is not None
                                         else np.nan for a, b in zip(grids[REFERENCE], grids[label])])
                         for label in labels}
    statuses = [r.status for r in end_to_end(REFERENCE)]

    print(f"\nrecon runtime benchmark: {model.preset or '?'} model ({s} px -> {model.voxel_res}^3), {args.threads} "
          f"threads, interleaved rounds, medians ({args.repeats} rounds per network, {max(3, args.repeats // 2)} "
          f"end to end); {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end; "
          f"end-to-end statuses {statuses}; `--device auto` runs {default_runs}")
    table("Median ms per call:", rows, labels, lambda m, label: f"{m[label]:.1f}")
    table(f"Speed-up against {REFERENCE} (ONNX Runtime CPU FP32; above 1 is faster):", rows, labels,
          lambda m, label: f"{m[REFERENCE] / m[label]:.2f}x")
    print("\nVoxel IoU against ONNX Runtime FP32 on the same 8 pictures (threshold "
          f"{model.threshold}): " + ", ".join(f"{label} {value:.4f}" for label, value in agreement.items()))

    estimates = estimate_nets(model_dir)
    if "nets" in estimates:
        peak = sgemm_peak()
        print(f"\nMeasured sgemm peak (numpy {peak['library']}, FP32, square matrices): {peak['gflops']:.0f} GFLOP/s. "
              "Share of it at batch 8 (FLOPs from the ONNX graph / median time):\n")
        print("| network | GFLOP per sample | " + " | ".join(labels) + " |")
        print("|---|---:|" + "---:|" * len(labels))
        for net, cost in estimates["nets"].items():
            flops = cost["flops_per_sample"]
            cells = [f"{100 * flops * 8 / (medians[(net, 8)][label] * 1e6) / peak['gflops']:.0f} %" for label in labels]
            print(f"| {net} | {flops / 1e9:.3f} | " + " | ".join(cells) + " |")

    print("\n| marching cubes (ball, radius 0.45) | faces | marching cubes (ms) | + mesh stats, closed by construction "
          "(ms) | + mesh stats with the closed-mesh check (ms) |")
    print("|---|---:|---:|---:|---:|")
    for res in (128, 64, model.voxel_res):
        grid = ball(res)
        mesh = marching_cubes(grid, 0.5)
        times = interleaved_ms({"mc": lambda: marching_cubes(grid, 0.5),
                                "trusted": lambda: mesh_stats(marching_cubes(grid, 0.5), closed=True),
                                "checked": lambda: mesh_stats(marching_cubes(grid, 0.5))}, args.repeats)
        mc, trusted, checked = (float(np.median(times[k])) for k in ("mc", "trusted", "checked"))
        print(f"| {res}^3 | {len(mesh.faces)} | {mc:.1f} | {trusted:.1f} | {checked:.1f} |")
    if args.baseline:
        reconstructor.runners = runners[REFERENCE]
        compare_models(reconstructor, model_dir, args.baseline, args.threads, args.repeats)
    reconstructor.runners = own_runners
    reconstructor.close()
    for pair in runners.values():
        for runner in pair.values():
            runner.deactivate()


if __name__ == "__main__":
    main()
