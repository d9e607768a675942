"""TensorRT engines from the exported ONNX files, with a JSON sidecar saying what each was built for.

Only API shared by TensorRT 8.6 and 10.x is used: `trt.Builder`, `create_network` (EXPLICIT_BATCH
is required in 8.6 and deprecated/ignored in 10: passed when the enum still has it), `trt.OnnxParser`,
`create_builder_config`, `set_memory_pool_limit(MemoryPoolType.WORKSPACE, n)`, one optimisation
profile (`set_shape(name, min, opt, max)`, batch from the memory plan), a timing cache
(`create_timing_cache` / `set_timing_cache`, saved as MODEL/timing.cache), `builder_optimization_level`
and `build_serialized_network`. The `.engine` is the plain serialized plan.

An engine only runs with the TensorRT version and GPU it was built for, so `X.engine.json` records
the TensorRT version, GPU name, compute capability, precision, profile shapes and the ONNX file's
sha256; the runtime's `recon.runtime.backends.check_engine_sidecar` (no GPU, no TensorRT needed)
refuses a mismatch before deserialising. The GPU facts come from the runtime's `gpu_info`, so what
is written here and what is compared there are read the same way.

INT8 (`recon-cli export --int8 --engine`): the INT8 builder flag with `entropy_calibrator`, an
IInt8EntropyCalibrator2 (the same class in 8.6 and 10) that hands the builder MODEL/<net>.int8.cache
(written by recon.export.int8 from the CPU calibration over training views) and, where the builder
refuses it (a cache header from another TensorRT version), calibrates on the same views itself and
writes the cache back; `set_calibration_profile` gives it the shapes.

Precision: `--fp16 on` sets the FP16 builder flag; on a GPU without fast FP16 (Pascal GP10x such as
the GTX 1050: compute 6.1) it says so and still allows FP16, letting TensorRT pick the faster kernel
per layer (FP32 ones, in practice). `--fp16 auto` sets the flag only where FP16 is fast.
This module imports neither torch nor tensorrt at load time.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Callable, Optional, Sequence

from recon.runtime.backends import SIDECAR_FORMAT, engine_environment, fast_fp16, sidecar_path
from recon.runtime.errors import InputError, ModelError
from recon.runtime.model import sha256_file

SIDECAR_VERSION = 1
INSTALL = ("TensorRT is not installed: `pip install tensorrt` (desktop, CUDA 12) or, on Jetson, use JetPack's "
           "python3-libnvinfer (`sudo apt install python3-libnvinfer`); or deploy with ONNX Runtime (no --engine)")


def import_tensorrt():
    """The tensorrt module, or InputError (one line) saying how to install it."""
    try:
        import tensorrt as trt  # noqa: F401
    except Exception:  # ImportError, or a broken install raising OSError on its libraries
        raise InputError(INSTALL) from None
    return trt


def has_fast_fp16(builder, compute_capability: Optional[str]) -> bool:
    """builder.platform_has_fast_fp16 where it exists (deprecated in TensorRT 10), else by compute capability."""
    fast = getattr(builder, "platform_has_fast_fp16", None)
    if fast is not None:
        return bool(fast)
    if not compute_capability:
        return False
    major, minor = (int(x) for x in compute_capability.split(".")[:2])
    return fast_fp16({"capability": (major, minor)})


def current_environment(onnx_path: str | Path | None = None) -> dict:
    """What this machine would build now: the dict `check_engine_sidecar` compares against (needs TensorRT)."""
    trt = import_tensorrt()
    return engine_environment(trt.__version__, sha256_file(onnx_path) if onnx_path is not None else None)


def _network_flags(trt) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    return 0 if flag is None else 1 << int(flag)


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, profile: Sequence[int] | dict, fp16: str = "off",
                 workspace: int = 1 << 30, timing_cache: str | Path | None = None, optimization_level: int = 3,
                 sides: tuple[int, int] | None = None, int8_cache: str | Path | None = None,
                 calibration: Sequence = (), log: Callable[[str], None] | None = print) -> dict:
    """Build `engine_path` from `onnx_path` with batch profile (min, opt, max), or the plan's per-precision
    profiles {"fp32": ..., "fp16": ...}; write and return the sidecar.

    `fp16`: "off" (FP32), "on" (FP16 flag even where FP16 is slow, said plainly), "auto" (flag only
    where FP16 is fast). The timing cache at `timing_cache` is read when present and written back.
    `sides`: (smallest, largest) picture side of an input whose height and width are dynamic (the
    framing pass runs the sketch net at the smallest, the main pass at the largest, also the optimum).
    `int8_cache`: also INT8, from this TensorRT calibration cache (`entropy_calibrator`; `calibration`:
    the input batches it calibrates on where the builder refuses the cache).
    """
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
    info = engine_environment(trt.__version__)
    fast = has_fast_fp16(builder, info["compute_capability"])
    use_fp16 = fp16 == "on" or (fp16 == "auto" and fast)
    if fp16 != "off" and not fast and log:
        what = f"{info['gpu'] or 'this GPU'} (compute {info['compute_capability'] or '?'})"
        log(f"{what} has slow FP16 arithmetic (e.g. Pascal GP10x such as the GTX 1050): "
            + ("FP16 allowed anyway, TensorRT will choose per layer (expect FP32 kernels)" if fp16 == "on"
               else "building FP32 (--fp16 auto)"))
    if use_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    calibrator = None
    if int8_cache is not None:
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = entropy_calibrator(trt, Path(int8_cache), calibration)
        config.int8_calibrator = calibrator
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
        if sides is not None and len(dims) == 4 and dims[2] < 0 and dims[3] < 0:
            low, high = sides
            shape = {"min": [minimum, dims[1], low, low], "opt": [optimum, dims[1], high, high],
                     "max": [maximum, dims[1], high, high]}
        else:
            shape = {label: [batch] + [int(d) for d in dims[1:]]
                     for label, batch in (("min", minimum), ("opt", optimum), ("max", maximum))}
        if any(d < 0 for d in shape["min"]):
            raise ModelError(f"{onnx_path.name}: input {tensor.name} has dynamic non-batch dims {dims}")
        optimisation.set_shape(tensor.name, shape["min"], shape["opt"], shape["max"])
        shapes[tensor.name] = shape
    config.add_optimization_profile(optimisation)
    if calibrator is not None:
        config.set_calibration_profile(optimisation)
    cache_bytes = b""
    if timing_cache is not None and Path(timing_cache).is_file():
        cache_bytes = Path(timing_cache).read_bytes()
    cache = config.create_timing_cache(cache_bytes)
    if not config.set_timing_cache(cache, False):
        cache = config.create_timing_cache(b"")  # a cache from another GPU/version: start afresh
        config.set_timing_cache(cache, False)
    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
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
        "precision": "+".join(["int8"] * (calibrator is not None) + ["fp16"] * use_fp16) or "fp32",
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


def entropy_calibrator(trt, cache: Path, batches: Sequence = ()):
    """A trt.IInt8EntropyCalibrator2 (TensorRT 8.6 and 10): `read_calibration_cache` gives the builder
    `cache`; where it refuses that, `get_batch` feeds `batches` (float32 arrays of the one input, all of
    one shape; a shorter last batch is left out) through one device buffer, and the builder's fresh
    cache is written back to `cache`. Call `free()` after the build."""
    import numpy as np

    from recon.runtime.backends import _cuda_check, _cudart
    from recon.runtime.fileio import write_bytes_atomic

    arrays = [np.ascontiguousarray(b, dtype=np.float32) for b in batches]
    arrays = [a for a in arrays if a.shape == arrays[0].shape]

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index, self.device = 0, None

        def get_batch_size(self):
            return int(arrays[0].shape[0]) if arrays else 1

        def get_batch(self, names):
            if self.index >= len(arrays):
                return None  # no more data: the builder finishes calibrating
            batch = arrays[self.index]
            self.index += 1
            cudart = _cudart()
            if self.device is None:
                self.device = _cuda_check(cudart.cudaMalloc(batch.nbytes))
            _cuda_check(cudart.cudaMemcpy(self.device, batch.ctypes.data, batch.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            return [int(self.device)]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data):
            write_bytes_atomic(cache, bytes(data))

        def free(self):
            if self.device is not None:
                _cudart().cudaFree(self.device)
                self.device = None

    return EntropyCalibrator()
