"""Latency profile of the pipeline (`recon-cli profile`), ONNX Runtime's per-layer profile, and
roofline estimates for GPUs this machine does not have.

    report = profile_pipeline(model_dir=None, device="auto", batches=[1, 8], iterations=20, warmup=2)
    report["batches"]["8"]["stages"]["sketch"]["median_ms"]

Measured numbers: every batch size sees the same N = max(batches) realistic pictures (the shipped
examples, else a drawn object on white), so sizes compare like with like: each timed iteration runs
them all through `Reconstructor.batch`, B per call (ceil(N / B) calls, cycling to fill the last), after
`warmup` untimed calls, the batch sizes taking turns within each iteration. A sample is one call: a
stage's latency is the time the call spent in it (summed over its B pictures); "end_to_end" is the whole
call.

Estimates (`estimate_nets`, `roofline`) are NOT measurements: FLOPs (2 x MACs of Conv, ConvTranspose,
Gemm and MatMul, from ONNX shape inference) and bytes moved (weights once + every activation written
once and read by each consumer) give the lower bound ms = max(FLOPs / peak, bytes / bandwidth) on the
spec-sheet numbers of `TARGET_GPUS`. Real runs are slower (kernel launches, imperfect occupancy).
onnx is optional: without it the estimates are skipped with a note.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from recon.runtime.errors import InputError, first_line

__all__ = ["STAGE_ROWS", "TARGET_GPUS", "ESTIMATE_LABEL", "parse_batches", "latency_stats", "profile_pipeline",
           "profile_layers", "estimate_nets", "graph_costs", "roofline", "profile_pictures"]

STAGE_ROWS = ("preprocess", "sketch", "voxel", "mesh", "end_to_end")
ESTIMATE_LABEL = "estimate (lower bound from spec sheets), not measured"

# Target GPUs: peak arithmetic in TFLOP/s and memory bandwidth in GB/s.
TARGET_GPUS = {
    # vendor spec sheet (NVIDIA GeForce GTX 1050, 640 CUDA cores @ 1455 MHz boost; Pascal FP16 is 1/64 rate)
    "GTX 1050 4 GB": {"fp32_tflops": 1.862, "fp16_tflops": None, "bandwidth_gbs": 112.0, "memory_gb": 4},
    # vendor spec sheet (NVIDIA Jetson Orin Nano 8GB: 1024 CUDA cores @ 625 MHz, 128-bit LPDDR5)
    "Jetson Orin Nano 8GB": {"fp32_tflops": 1.28, "fp16_tflops": 2.56, "bandwidth_gbs": 68.0, "memory_gb": 8},
    # vendor spec sheet (NVIDIA Jetson Nano: 472 GFLOPS FP16, 64-bit LPDDR4 25.6 GB/s)
    "Jetson Nano 4GB": {"fp32_tflops": 0.236, "fp16_tflops": 0.472, "bandwidth_gbs": 25.6, "memory_gb": 4},
}


# ---------------------------------------------------------------- arguments and statistics


def parse_batches(text) -> list[int]:
    """'1,2,4,8' -> [1, 2, 4, 8]; InputError for anything but positive integers."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise InputError(f"--batch {text!r}: give comma-separated batch sizes >= 1, e.g. 1,2,4,8")
    batches = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise InputError(f"--batch {text!r}: {part!r} is not an integer; give batch sizes >= 1, e.g. 1,2,4,8") \
                from None
        if value < 1:
            raise InputError(f"--batch {text!r}: batch sizes must be >= 1, got {value}")
        if value not in batches:
            batches.append(value)
    return batches


def timed_ms(fn, iterations: int, warmup: int = 1) -> list[float]:
    """Wall time of each of `iterations` calls of fn() in ms, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def latency_stats(samples_ms, images: int = 1) -> dict:
    """min, mean, median, p90, p95, p99, max, std (ms) of the samples, and images/s at the mean."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no samples")
    p90, p95, p99 = np.percentile(values, [90, 95, 99])
    mean = float(values.mean())
    return {"min_ms": float(values.min()), "mean_ms": mean, "median_ms": float(np.median(values)),
            "p90_ms": float(p90), "p95_ms": float(p95), "p99_ms": float(p99), "max_ms": float(values.max()),
            "std_ms": float(values.std()), "throughput_ips": images * 1000.0 / mean if mean > 0 else None,
            "samples": int(values.size)}


def host_peak_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024.0


def gpu_memory_mb() -> dict | None:
    """GPU 0 memory used / total (MiB) through nvidia-ml-py, or None when it is not importable or fails."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            info = pynvml.nvmlDeviceGetMemoryInfo(handle)
            used = {"used_mb": info.used / (1 << 20), "total_mb": info.total / (1 << 20)}
            try:
                for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if proc.pid == os.getpid() and proc.usedGpuMemory:
                        used["this_process_mb"] = proc.usedGpuMemory / (1 << 20)
            except Exception:
                pass
            return used
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


# ---------------------------------------------------------------- inputs


def examples_dir() -> Path:
    """The repository's examples/ folder (beside runtime/)."""
    return Path(__file__).resolve().parent.parent / "examples"


def drawn_picture(size: int = 256, seed: int = 0) -> np.ndarray:
    """A coloured box-and-disc object on white, shaded, so every stage sees a real surface."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.full((size, size, 3), 255, np.float32)
    colour = np.array([200, 60, 40], np.float32) * (0.8 + 0.2 * rng.random(3))
    body = (np.abs(cols - 0.5) < 0.28) & (np.abs(rows - 0.6) < 0.15)
    dome = (cols - 0.5) ** 2 + (rows - 0.42) ** 2 < 0.17 ** 2
    shape = body | dome
    shade = (0.65 + 0.35 * (1 - rows))[..., None]
    image[shape] = (colour * shade)[shape]
    return image.clip(0, 255).astype(np.uint8)


def profile_pictures(count: int) -> tuple[list, str]:
    """`count` pictures (paths of the shipped examples, cycled; else drawn arrays) and what they are."""
    folder = examples_dir()
    found = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")) \
        if folder.is_dir() else []
    if found:
        return [str(found[i % len(found)]) for i in range(count)], f"{len(found)} pictures of {folder}"
    return [drawn_picture(seed=i) for i in range(count)], "drawn pictures (an object on white)"


# ---------------------------------------------------------------- measured profile


def profile_pipeline(model_dir=None, device: str = "auto", batches=(1,), iterations: int = 20, warmup: int = 2,
                     threads: int | None = None, progress=None, precision: str = "fp32") -> dict:
    """Measure every stage per batch size; see the module docstring. progress(text) is called per batch.
    precision: which ONNX files run (recon.runtime.model.PRECISIONS: fp32 or a twin such as fp16)."""
    from recon.runtime.pipeline import Reconstructor

    if int(iterations) < 1:
        raise InputError(f"--iterations: must be >= 1, got {iterations}")
    if int(warmup) < 0:
        raise InputError(f"--warmup: must be >= 0, got {warmup}")
    batches = [int(b) for b in batches]
    report = {"device": device, "precision": precision, "threads": threads, "iterations": int(iterations),
              "warmup": int(warmup), "batches": {}, "notes": []}
    with Reconstructor(model_dir, device=device, threads=threads, batch=max(batches), precision=precision) as reconstruct:
        providers = reconstruct.providers
        report.update(model=str(reconstruct.model.path), providers=providers,
                      provider=", ".join(sorted(set(providers.values()))),
                      image_size=reconstruct.model.image_size, voxel_res=reconstruct.model.voxel_res)
        report["notes"] += [f"{net}: {note}" for net, note in reconstruct.notes.items()]
        count = max(batches)
        pictures, source = profile_pictures(count)
        report["inputs"] = f"the same {count} at every batch size: {source}"
        chunks = {batch: [[pictures[(start + i) % count] for i in range(batch)] for start in range(0, count, batch)]
                  for batch in batches}
        for batch in batches:
            reconstruct.batch_size = batch
            for _ in range(int(warmup)):
                reconstruct.batch(chunks[batch][0])
        samples = {batch: {stage: [] for stage in STAGE_ROWS} for batch in batches}
        failed = dict.fromkeys(batches, 0)
        # Interleaved: every iteration runs each batch size in turn, so a neighbour's load or the CPU's
        # clock lands on every size alike (measured apart, batch 8 against batch 1 read 1.06x where
        # interleaved runs of the same pictures gave 1.2-1.35x).
        for iteration in range(int(iterations)):
            if progress and iteration % max(1, int(iterations) // 4) == 0:
                progress(f"iteration {iteration + 1}/{iterations} of batch sizes {', '.join(map(str, batches))} "
                         f"({warmup} warm-up calls each before)")
            for batch in batches:
                reconstruct.batch_size = batch
                failed[batch] = 0
                for chunk in chunks[batch]:
                    start = time.perf_counter()
                    results = reconstruct.batch(chunk)
                    samples[batch]["end_to_end"].append((time.perf_counter() - start) * 1000.0)
                    failed[batch] += sum(not r.ok for r in results)
                    for stage in STAGE_ROWS[:-1]:
                        samples[batch][stage].append(sum(r.timings.get(stage, 0.0) for r in results))
        for batch in batches:
            stages = {stage: latency_stats(values, batch) for stage, values in samples[batch].items()}
            report["batches"][str(batch)] = {"stages": stages, "throughput_ips": stages["end_to_end"]["throughput_ips"],
                                             "failed": failed[batch]}
            noisy = [s for s, v in stages.items() if v["median_ms"] > 0 and v["max_ms"] / v["median_ms"] > 2]
            if noisy:
                report["notes"].append(f"batch {batch}: high variance (max/median > 2) in {', '.join(noisy)}; "
                                       "run more iterations or close other programs")
            if failed[batch]:
                report["notes"].append(f"batch {batch}: {failed[batch]} of {len(chunks[batch]) * batch} pictures "
                                       "failed (no object found); their later stages did not run")
        report["host_peak_mb"] = host_peak_mb()
        if any(p != "CPUExecutionProvider" for p in providers.values()):
            gpu = gpu_memory_mb()
            if gpu is not None:
                report["gpu_memory_mb"] = gpu
    return report


# ---------------------------------------------------------------- ONNX Runtime's profiler


def _session(path: Path, device: str, threads, sha256: str, providers=None, profile_prefix: str | None = None):
    import onnxruntime

    from recon.runtime.backends import SessionFromOnnx, _as_strings, provider_chain

    options = SessionFromOnnx(path, device, threads).options()
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    chain = provider_chain(device, sha256) if providers is None else providers
    return onnxruntime.InferenceSession(str(path), options, providers=[p for p, _ in chain],
                                        provider_options=[_as_strings(o) for _, o in chain])


def _random_feed(session, batch: int, side: int, seed: int = 0) -> dict:
    """Random inputs at `batch`; other free dimensions (a graph with a dynamic picture side) get `side`."""
    from recon.runtime.backends import _dtype

    rng = np.random.default_rng(seed)
    feed = {}
    for arg in session.get_inputs():
        shape = [batch if i == 0 else (d if isinstance(d, int) else side) for i, d in enumerate(arg.shape)]
        feed[arg.name] = rng.random(shape).astype(_dtype(arg.type))
    return feed


def aggregate_trace(events: list, top: int = 10) -> dict:
    """ONNX Runtime profile events -> {"total_ms", "by_op": [...], "by_node": [...]} (top entries each)."""
    by_op, by_node = {}, {}
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        ms = float(event.get("dur", 0)) / 1000.0
        op = event.get("args", {}).get("op_name", "?")
        node = event["name"][: -len("_kernel_time")]
        by_op[op] = by_op.get(op, 0.0) + ms
        by_node.setdefault(node, [op, 0.0])[1] += ms
    total = sum(by_op.values())

    def rows(items):
        return [dict(item, share=item["total_ms"] / total if total else 0.0) for item in items[:top]]

    ops = sorted(({"op_type": k, "total_ms": v} for k, v in by_op.items()), key=lambda r: -r["total_ms"])
    nodes = sorted(({"node": k, "op_type": v[0], "total_ms": v[1]} for k, v in by_node.items()),
                   key=lambda r: -r["total_ms"])
    return {"total_ms": total, "by_op": rows(ops), "by_node": rows(nodes)}


def profile_layers(model_dir=None, device: str = "auto", batch: int = 1, iterations: int = 10, warmup: int = 2,
                   threads: int | None = None, top: int = 10, precision: str = "fp32") -> dict:
    """ONNX Runtime's own profiler over each net (random inputs at `batch`): time per op type and node,
    summed over the timed runs (warm-up runs excluded from the trace by starting it after them)."""
    from recon.runtime.model import default_model_dir, load_model_dir

    model = load_model_dir(default_model_dir() if model_dir is None else model_dir)
    out = {}
    with tempfile.TemporaryDirectory(prefix="recon-profile-") as folder:
        for net in ("sketch", "voxel"):
            path = model.onnx(net, precision)
            session = _session(path, device, threads, model.sha256(path.name),
                               profile_prefix=str(Path(folder) / net))
            feed = _random_feed(session, batch, model.image_size)
            for _ in range(warmup + iterations):
                session.run(None, feed)
            with open(session.end_profiling()) as handle:
                events = json.load(handle)
            # Keep the timed runs only: node events that start after the last warm-up run ended.
            runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                          key=lambda e: e["ts"])
            if warmup and len(runs) > warmup:
                cut = runs[warmup - 1]["ts"] + runs[warmup - 1]["dur"]
                events = [e for e in events if e.get("ts", 0) >= cut]
            summary = aggregate_trace(events, top)
            summary.update(provider=session.get_providers()[0], batch=batch, runs=iterations,
                           per_run_ms=summary["total_ms"] / iterations)
            out[net] = summary
    return out


# ---------------------------------------------------------------- estimates (not measured)


_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}


def graph_costs(model, batch: int = 1) -> dict:
    """FLOPs (2 x MACs of Conv, ConvTranspose, Gemm, MatMul), weight bytes and activation bytes of an
    onnx.ModelProto at `batch` (the first input axis). Activation bytes count every non-weight tensor
    once when written and once per node that reads it (graph inputs are only read, outputs only written)."""
    import onnx
    from onnx import shape_inference

    model = onnx.ModelProto.FromString(model.SerializeToString())
    # A sketch graph with dynamic height and width (edge2) is costed at the main pass's side.
    side = next((int(p.value) for p in model.metadata_props if p.key == "recon.image_size"), None)
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = batch
        for dim in list(dims)[1:]:
            if dim.dim_param in ("height", "width") and side:
                dim.ClearField("dim_param")
                dim.dim_value = side
    inferred = shape_inference.infer_shapes(model)
    graph = inferred.graph
    weights = {init.name: init for init in graph.initializer}
    shapes, types = {}, {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor = value.type.tensor_type
        if tensor.HasField("shape") and all(d.HasField("dim_value") for d in tensor.shape.dim):
            shapes[value.name] = tuple(d.dim_value for d in tensor.shape.dim)
            types[value.name] = tensor.elem_type
    for name, init in weights.items():
        shapes[name] = tuple(init.dims)
        types[name] = init.data_type
    weight_bytes = sum(int(np.prod(init.dims, dtype=np.int64)) * _BYTES.get(init.data_type, 4)
                       for init in weights.values())
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    weight_bytes += int(np.prod(attr.t.dims, dtype=np.int64)) * _BYTES.get(attr.t.data_type, 4)

    def size(name):
        shape = shapes.get(name)
        return None if shape is None else int(np.prod(shape, dtype=np.int64)) * _BYTES.get(types.get(name, 1), 4)

    flops, unknown, activation = 0, [], 0
    constants = {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    for node in graph.node:
        for name in node.input:
            if name and name not in weights and name not in constants:
                activation += size(name) or 0
        for name in node.output:
            if node.op_type != "Constant":
                activation += size(name) or 0
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        a, b, out = shapes.get(node.input[0]), shapes.get(node.input[1]), shapes.get(node.output[0])
        if a is None or b is None or out is None:
            unknown.append(node.name or node.op_type)
            continue
        if node.op_type == "Conv":  # W: (Cout, Cin/group, k...); each output element: Cin/group * prod(k) MACs
            macs = int(np.prod(out, dtype=np.int64)) * int(np.prod(b[1:], dtype=np.int64))
        elif node.op_type == "ConvTranspose":  # W: (Cin, Cout/group, k...); each input element scatters Cout/group*prod(k)
            macs = int(np.prod(a, dtype=np.int64)) * int(np.prod(b[1:], dtype=np.int64))
        elif node.op_type == "Gemm":
            k = a[0] if attrs.get("transA", 0) else a[1]
            macs = int(np.prod(out, dtype=np.int64)) * int(k)
        else:  # MatMul: out (..., M, N), K = a[-1]
            macs = int(np.prod(out, dtype=np.int64)) * int(a[-1])
        flops += 2 * macs
    return {"flops": int(flops), "weight_bytes": int(weight_bytes), "activation_bytes": int(activation),
            "unknown_shapes": unknown}


def estimate_nets(model_dir=None) -> dict:
    """Per net: FLOPs and activation bytes per sample (batch 1 and 2 differenced, so fixed costs stay out)
    and weight bytes. {"skipped": reason} when onnx is not installed."""
    try:
        import onnx
    except ImportError:
        return {"skipped": "onnx is not installed (pip install onnx): no FLOP estimates"}
    from recon.runtime.model import default_model_dir, load_model_dir

    model = load_model_dir(default_model_dir() if model_dir is None else model_dir)
    nets = {}
    for net in ("sketch", "voxel"):
        proto = onnx.load(str(model.onnx(net)))
        one, two = graph_costs(proto, 1), graph_costs(proto, 2)
        nets[net] = {"flops_per_sample": two["flops"] - one["flops"],
                     "activation_bytes_per_sample": two["activation_bytes"] - one["activation_bytes"],
                     "weight_bytes": one["weight_bytes"], "unknown_shapes": one["unknown_shapes"]}
    return {"nets": nets}


def roofline(nets: dict, batches, gpus: dict = TARGET_GPUS) -> dict:
    """Lower-bound ms per target GPU, batch and net: max(FLOPs / peak, bytes / bandwidth); FP16 where the
    GPU has fast FP16 (bytes halved). "networks" = sketch + voxel (one sketch pass per picture)."""
    out = {}
    for name, spec in gpus.items():
        rows = {}
        for batch in batches:
            row = {}
            for precision, peak, scale in (("fp32", spec["fp32_tflops"], 1.0), ("fp16", spec["fp16_tflops"], 0.5)):
                if not peak:
                    continue
                total = 0.0
                for net, cost in nets.items():
                    flops = cost["flops_per_sample"] * batch
                    moved = (cost["weight_bytes"] + cost["activation_bytes_per_sample"] * batch) * scale
                    ms = max(flops / (peak * 1e12), moved / (spec["bandwidth_gbs"] * 1e9)) * 1000.0
                    row[f"{net}_{precision}_ms"] = ms
                    total += ms
                row[f"networks_{precision}_ms"] = total
                row[f"networks_{precision}_ips"] = batch * 1000.0 / total if total else None
            rows[str(batch)] = row
        out[name] = {"spec": dict(spec, source="vendor spec sheet"), "batches": rows}
    return out
