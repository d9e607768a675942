"""TensorRT engines from the exported ONNX files, with a JSON sidecar saying what each was built for.

Only API shared by TensorRT 8.6 and 10.x is used: `trt.Builder`, `create_network` (EXPLICIT_BATCH
is required in 8.6 and deprecated/ignored in 10: passed when the enum still has it), `trt.OnnxParser`,
`create_builder_config`, `set_memory_pool_limit(MemoryPoolType.WORKSPACE, n)`, one optimisation
profile (`set_shape(name, min, opt, max)`, batch from the memory plan), a timing cache
(`create_timing_cache` / `set_timing_cache`, saved as MODEL/timing.cache), `builder_optimization_level`
and `build_serialized_network`. The `.engine` is the plain serialized plan.

An engine only runs with the TensorRT version and GPU it was built for, so `X.engine.json` records
the TensorRT version, GPU name, compute capability, precision, profile shapes and the ONNX file's
sha256; `check_sidecar` (no GPU, no TensorRT needed) refuses a mismatch before deserialising.

Precision: `--fp16 on` sets the FP16 builder flag; on a GPU without fast FP16 (Pascal GP10x such as
the GTX 1050: compute 6.1) it says so and still allows FP16, letting TensorRT pick the faster kernel
per layer (FP32 ones, in practice). `--fp16 auto` sets the flag only where FP16 is fast.
This module imports neither torch nor tensorrt at load time.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Callable, Optional, Sequence

from recon.runtime.errors import InputError, ModelError

SIDECAR_FORMAT = "recon-engine"
SIDECAR_VERSION = 1
REBUILD = "rebuild with `recon-cli export --engine --weights RUN --out MODEL` on this machine"
INSTALL = ("TensorRT is not installed: `pip install tensorrt` (desktop, CUDA 12) or, on Jetson, use JetPack's "
           "python3-libnvinfer (`sudo apt install python3-libnvinfer`); or deploy with ONNX Runtime (no --engine)")
# Compute capabilities with fast FP16 arithmetic: Maxwell Tegra X1 (5.3), P100 (6.0), Jetson TX2 (6.2), 7.0+.
FAST_FP16_CC = {(5, 3), (6, 0), (6, 2)}
CHECKED_KEYS = ("tensorrt", "gpu", "compute_capability", "onnx_sha256")


def import_tensorrt():
    """The tensorrt module, or InputError (one line) saying how to install it."""
    try:
        import tensorrt as trt  # noqa: F401
    except Exception:  # ImportError, or a broken install raising OSError on its libraries
        raise InputError(INSTALL) from None
    return trt


def sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def gpu_info(device: int = 0) -> dict:
    """{"gpu": name, "compute_capability": "M.m"} of CUDA device `device`, best effort (None when unknown):
    cuda-python, then NVML, then torch."""
    try:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python
        err, props = cudart.cudaGetDeviceProperties(device)
        if int(err) == 0:
            name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
            return {"gpu": name.strip("\x00 "), "compute_capability": f"{props.major}.{props.minor}"}
    except Exception:
        pass
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(device)
            name = pynvml.nvmlDeviceGetName(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            return {"gpu": name.decode() if isinstance(name, bytes) else name, "compute_capability": f"{major}.{minor}"}
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device)
            return {"gpu": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}
    except Exception:
        pass
    return {"gpu": None, "compute_capability": None}


def has_fast_fp16(builder, compute_capability: Optional[str]) -> bool:
    """builder.platform_has_fast_fp16 where it exists (deprecated in TensorRT 10), else by compute capability."""
    fast = getattr(builder, "platform_has_fast_fp16", None)
    if fast is not None:
        return bool(fast)
    if not compute_capability:
        return False
    major, minor = (int(x) for x in compute_capability.split(".")[:2])
    return major >= 7 or (major, minor) in FAST_FP16_CC


def current_environment(onnx_path: str | Path | None = None) -> dict:
    """What this machine would build now: the dict `check_sidecar` compares against (needs TensorRT)."""
    from recon.export.manifest import sha256_file

    trt = import_tensorrt()
    current = {"tensorrt": trt.__version__, **gpu_info()}
    if onnx_path is not None:
        current["onnx_sha256"] = sha256_file(onnx_path)
    return current


def check_sidecar(sidecar: dict, current: dict) -> None:
    """ModelError when an engine's sidecar does not match `current` (keys: tensorrt, gpu,
    compute_capability, onnx_sha256; a key missing or None in `current` is not compared)."""
    engine = sidecar.get("engine", "engine") if isinstance(sidecar, dict) else "engine"
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        raise ModelError(f"{engine}: sidecar is not a recon engine description; {REBUILD}")
    mismatches = []
    for key in CHECKED_KEYS:
        want = current.get(key)
        if want is None:
            continue
        have = sidecar.get(key)
        if have != want:
            label = {"tensorrt": "TensorRT", "gpu": "GPU", "compute_capability": "compute capability",
                     "onnx_sha256": "ONNX sha256"}[key]
            if key == "onnx_sha256":
                mismatches.append("its ONNX file changed since it was built")
            else:
                mismatches.append(f"{label} {have} (built) != {want} (here)")
    if mismatches:
        raise ModelError(f"{engine}: built for another setup: {'; '.join(mismatches)}; {REBUILD}")


def _network_flags(trt) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    return 0 if flag is None else 1 << int(flag)


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, profile: Sequence[int] | dict, fp16: str = "off",
                 workspace: int = 1 << 30, timing_cache: str | Path | None = None, optimization_level: int = 3,
                 log: Callable[[str], None] | None = print) -> dict:
    """Build `engine_path` from `onnx_path` with batch profile (min, opt, max), or the plan's per-precision
    profiles {"fp32": ..., "fp16": ...}; write and return the sidecar.

    `fp16`: "off" (FP32), "on" (FP16 flag even where FP16 is slow, said plainly), "auto" (flag only
    where FP16 is fast). The timing cache at `timing_cache` is read when present and written back.
    """
    from recon.export.manifest import sha256_file
    from recon.runtime.fileio import write_bytes_atomic, write_json_atomic

    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if builder is None:
        raise ModelError("TensorRT could not create a builder (no CUDA GPU or driver visible)")
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        problems = "; ".join(str(parser.get_error(i)) for i in range(min(parser.num_errors, 3)))
        raise ModelError(f"{onnx_path.name}: TensorRT's ONNX parser refused it: {problems}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = int(optimization_level)
    info = gpu_info()
    fast = has_fast_fp16(builder, info["compute_capability"])
    use_fp16 = fp16 == "on" or (fp16 == "auto" and fast)
    if fp16 != "off" and not fast and log:
        what = f"{info['gpu'] or 'this GPU'} (compute {info['compute_capability'] or '?'})"
        log(f"{what} has slow FP16 arithmetic (e.g. Pascal GP10x such as the GTX 1050): "
            + ("FP16 allowed anyway, TensorRT will choose per layer (expect FP32 kernels)" if fp16 == "on"
               else "building FP32 (--fp16 auto)"))
    if use_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if isinstance(profile, dict):  # the memory plan's {"fp32": [...], "fp16": [...]}: FP16 memory only if fast
        chosen = profile.get("fp16" if use_fp16 and fast else "fp32")
        if not chosen:
            raise ModelError(f"{onnx_path.name}: the memory plan has no batch that fits in "
                             f"{'FP16' if use_fp16 and fast else 'FP32'}; raise --vram or lower --workspace")
        profile = chosen
    minimum, optimum, maximum = (int(b) for b in profile)
    optimisation = builder.create_optimization_profile()
    shapes = {}
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        dims = list(tensor.shape)
        shape = {label: [batch] + [int(d) for d in dims[1:]]
                 for label, batch in (("min", minimum), ("opt", optimum), ("max", maximum))}
        if any(d < 0 for d in dims[1:]):
            raise ModelError(f"{onnx_path.name}: input {tensor.name} has dynamic non-batch dims {dims}")
        optimisation.set_shape(tensor.name, shape["min"], shape["opt"], shape["max"])
        shapes[tensor.name] = shape
    config.add_optimization_profile(optimisation)
    cache_bytes = b""
    if timing_cache is not None and Path(timing_cache).is_file():
        cache_bytes = Path(timing_cache).read_bytes()
    cache = config.create_timing_cache(cache_bytes)
    if not config.set_timing_cache(cache, False):
        cache = config.create_timing_cache(b"")  # a cache from another GPU/version: start afresh
        config.set_timing_cache(cache, False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(f"{onnx_path.name}: TensorRT failed to build an engine (see the log above; a larger "
                         "--workspace or a smaller --batch max may help)")
    write_bytes_atomic(engine_path, bytes(plan))
    if timing_cache is not None:
        write_bytes_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    sidecar = {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "engine": engine_path.name,
        "onnx": onnx_path.name,
        "onnx_sha256": sha256_file(onnx_path),
        "tensorrt": trt.__version__,
        "gpu": info["gpu"],
        "compute_capability": info["compute_capability"],
        "precision": "fp16" if use_fp16 else "fp32",
        "platform_has_fast_fp16": fast,
        "profiles": shapes,
        "workspace_bytes": int(workspace),
        "builder_optimization_level": int(optimization_level),
        "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(sidecar_path(engine_path), sidecar)
    if log:
        log(f"built {engine_path.name} ({sidecar['precision'].upper()}, batch {minimum}/{optimum}/{maximum}, "
            f"{engine_path.stat().st_size / 2**20:.1f} MiB) with TensorRT {trt.__version__} on {info['gpu']}")
    return sidecar


def load_sidecar(engine_path: str | Path) -> dict:
    from recon.export.manifest import read_json

    return read_json(sidecar_path(engine_path), "engine sidecar")
