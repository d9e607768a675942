"""Measured speed beside the profile: the machine's FP32 matrix-multiply peak (numpy's BLAS sgemm, the
best a CPU library reaches on dense FP32 work), each network's achieved GFLOP/s as a fraction of it
(FLOPs from the ONNX graphs, `profile.estimate_nets`), and every engine this machine has side by side.

    peak = sgemm_peak()                                    # {"gflops": ..., "sizes": {...}}
    rows = network_efficiency(model_dir, batches=[1, 8], peak_gflops=peak["gflops"], flops=...)
    table = compare_engines(model_dir)                     # ONNX Runtime, OpenVINO, INT8 twins

Measured, not estimated; whatever is compared takes turns (interleaved runs, medians), so a
neighbour's load lands on every side alike. numpy's BLAS uses its own thread pool (all cores by default).
A reduced-precision path (BF16, INT8) is still compared with the FP32 peak: above 100 % means it beat
what FP32 arithmetic could do.
"""

from __future__ import annotations

import time

import numpy as np

from recon.runtime.errors import first_line

__all__ = ["sgemm_peak", "interleaved_ms", "network_efficiency", "random_feed", "engines", "compare_engines"]

SGEMM_SIZES = (512, 1024, 2048)


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: page in, spin up the thread pool
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def sgemm_peak(sizes=SGEMM_SIZES, repeats: int = 5) -> dict:
    """The best GFLOP/s of square FP32 matrix products (2 n^3 FLOPs) over `sizes`, medians of `repeats`."""
    rng = np.random.default_rng(0)
    rates = {}
    for n in sizes:
        a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
        out = np.empty((n, n), np.float32)
        ms = _median_ms(lambda: np.matmul(a, b, out=out), repeats)
        rates[str(n)] = 2.0 * n ** 3 / (ms * 1e6)
    return {"gflops": max(rates.values()), "sizes": rates, "library": _blas_name()}


def _blas_name() -> str:
    """numpy's BLAS as numpy reports it, with the kernels OpenBLAS chose (e.g. "scipy-openblas 0.3.31,
    Haswell kernels": AVX2 code, half the FP32 peak of a CPU with full-width AVX-512 that it does not
    know), or "unknown"."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy without mode="dicts"
        name = "unknown"
    kernels = _openblas_kernels()
    return f"{name}, {kernels} kernels" if kernels else name


def _openblas_kernels() -> str | None:
    """The core name OpenBLAS picked at load time, from the library this process loaded (None: not
    OpenBLAS, or not Linux)."""
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return None
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename"):
            function = getattr(library, symbol, None)
            if function is not None:
                function.restype = ctypes.c_char_p
                return function().decode("ascii", "replace")
    return None


def interleaved_ms(calls: dict, rounds: int, warmup: int = 1) -> dict:
    """{label: [ms per round]}: each round calls every one of `calls` (label -> fn()) once, in turn, so
    a neighbour's load (or a thread pool still spinning) lands on every side alike; `warmup` untimed rounds."""
    times = {label: [] for label in calls}
    for round_ in range(int(warmup) + int(rounds)):
        for label, call in calls.items():
            start = time.perf_counter()
            call()
            if round_ >= warmup:
                times[label].append((time.perf_counter() - start) * 1000.0)
    return times


def random_feed(runner, batch: int, side: int, seed: int = 0) -> dict:
    """Random inputs for a runner: batch first, free spatial dimensions at the model's side."""
    rng = np.random.default_rng(seed)
    feed = {}
    for name, spec in runner.inputs.items():
        shape = [batch] + [side if d is None else d for d in spec.shape[1:]]
        feed[name] = rng.random(shape).astype(spec.dtype)
    return feed


def network_efficiency(model_dir=None, *, device: str = "auto", batches=(1, 8), threads: int | None = None,
                       precision: str = "fp32", iterations: int = 10, peak_gflops: float, flops: dict) -> dict:
    """{net: {"provider", "batches": {B: {"median_ms", "gflops", "fraction_of_peak"}}}} for the runners the
    pipeline would use (runner_choice.make_runner), at each batch size; flops: net -> FLOPs per sample."""
    from recon.runtime.model import default_model_dir, load_model_dir
    from recon.runtime.runner_choice import make_runner

    model = load_model_dir(default_model_dir() if model_dir is None else model_dir)
    runners = {net: make_runner(model, net, device, threads, precision).activate() for net in flops}
    try:
        out = {net: {"provider": runner.provider, "flops_per_sample": flops[net], "batches": {}}
               for net, runner in runners.items()}
        for batch in batches:
            feeds = {net: random_feed(runner, batch, model.image_size) for net, runner in runners.items()}
            times = interleaved_ms({net: lambda net=net: runners[net].infer(feeds[net]) for net in runners}, iterations)
            for net in runners:
                ms = float(np.median(times[net]))
                gflops = flops[net] * batch / (ms * 1e6)
                out[net]["batches"][str(batch)] = {"median_ms": ms, "gflops": gflops,
                                                   "fraction_of_peak": gflops / peak_gflops}
        return out
    finally:
        for runner in runners.values():
            runner.deactivate()


def engines(model, threads) -> dict:
    """label -> (which ONNX file: a model.PRECISIONS key, runner factory(path)) of every engine this
    machine has for the model: ONNX Runtime CPU and GPU providers, OpenVINO in FP32 and (where the CPU
    has it) BF16, and each of them again on the INT8 twins when the folder has them."""
    import importlib.util

    import onnxruntime

    from recon.runtime.backends import CPU, CUDA, TRT, OnnxRuntimeRunner, SessionFromOnnx

    devices = {CPU: "cpu", CUDA: "cuda", TRT: "tensorrt"}
    providers = [CPU] + [p for p in onnxruntime.get_available_providers() if p in (CUDA, TRT)]
    precisions = ["fp32"] + (["int8"] if "sketch.int8.onnx" in model.files and "voxel.int8.onnx" in model.files
                             else [])
    found = {}
    for precision in precisions:
        suffix = "" if precision == "fp32" else f" {precision.upper()}"
        for provider in providers:
            found[provider + suffix] = (precision, lambda path, device=devices[provider]:
                                          OnnxRuntimeRunner(SessionFromOnnx(path, device, threads)))
        if importlib.util.find_spec("openvino") is None:
            continue
        from recon.runtime.openvino_backend import CompiledFromOnnx, OpenVINORunner, cpu_capabilities

        floats = ["fp32"] + (["bf16"] if "BF16" in cpu_capabilities()["capabilities"] else [])
        for arithmetic in floats if precision == "fp32" else ["fp32"]:
            twin = None if precision == "fp32" else precision  # what an INT8 twin's runner reports
            found[f"OpenVINO CPU {(twin or arithmetic).upper()}"] = (
                precision, lambda path, arithmetic=arithmetic, twin=twin:
                OpenVINORunner(CompiledFromOnnx(path, arithmetic, threads, twin)))
    return found


def compare_engines(model_dir=None, iterations: int = 10, threads: int | None = None) -> dict:
    """Each net at batch 1 on every engine this machine has (`engines`): median ms and the largest
    output difference from ONNX Runtime CPU FP32. The engines take turns, one run each per round
    (interleaved), so a neighbour's load lands on all of them alike."""
    from recon.runtime.backends import CPU
    from recon.runtime.model import default_model_dir, load_model_dir

    model = load_model_dir(default_model_dir() if model_dir is None else model_dir)
    available = engines(model, threads)
    result = {"providers": list(available), "nets": {}, "notes": []}
    if not any(label.startswith(("CUDA", "Tensorrt")) for label in available):
        result["notes"].append("no GPU provider in this onnxruntime: only CPU was measured on ONNX Runtime")
    for net in ("sketch", "voxel"):
        rows, runners = {}, {}
        for label, (precision, factory) in available.items():
            try:
                runners[label] = factory(model.onnx(net, precision)).activate()
            except Exception as error:  # an engine that does not start is reported, not fatal
                rows[label] = {"error": first_line(error)}
        feed = random_feed(runners[CPU], 1, model.image_size)
        outputs = {label: runner.infer(feed) for label, runner in runners.items()}  # also the warm-up
        times = interleaved_ms({label: lambda runner=runner: runner.infer(feed) for label, runner in runners.items()},
                               iterations, warmup=0)
        for label, runner in runners.items():
            rows[label] = {"running": runner.provider, "median_ms": float(np.median(times[label]))}
            if label != CPU:
                rows[label]["max_abs_diff"] = float(max(np.max(np.abs(outputs[label][name].astype(np.float64) - ref))
                                                        for name, ref in outputs[CPU].items()))
            runner.deactivate()
        result["nets"][net] = {label: rows[label] for label in available}
    return result
