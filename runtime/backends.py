"""Inference backends in polygraphy's shape: a loader builds the thing, a runner runs it.

    runner = OnnxRuntimeRunner(SessionFromOnnx("MODEL/sketch.onnx", device="auto"))
    with runner:                                   # activate() ... deactivate()
        outputs = runner.infer({"image": batch})   # name -> numpy array

Loaders are callables: `SessionFromOnnx` (an ONNX Runtime session for a device of `DEVICES`) and
`EngineFromPlan` (a deserialized TensorRT engine). `BaseRunner.infer` checks the inputs once,
with messages naming the tensor, what came and what was expected; subclasses fill the `*_impl`.

ONNX Runtime silently falls back to the CPU when a provider cannot start, so after loading we read
`session.get_providers()` and report (or, for an explicitly requested device, refuse) what runs.
TensorRT and cuda-python are imported only inside the functions that use them.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.runtime.errors import InputError, ModelError, first_line
from recon.runtime.model import read_json

__all__ = ["DEVICES", "parse_device", "TensorSpec", "BaseRunner", "SessionFromOnnx", "OnnxRuntimeRunner", "EngineFromPlan",
           "TensorRTRunner", "check_engine_sidecar", "engine_environment", "fast_fp16", "gpu_info", "provider_chain"]

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"

# --device -> ONNX Runtime providers in order of preference; the CPU stays last so nodes a GPU
# provider cannot take still run. auto drops what this onnxruntime build lacks; cuda and tensorrt
# insist on their first provider. openvino runs the nets with OpenVINO (openvino_backend.py; auto
# too, where it is installed and no GPU provider is), so ONNX Runtime tools asked for it use the CPU.
DEVICES: dict[str, tuple[str, ...]] = {
    "auto": (TRT, CUDA, CPU),
    "cpu": (CPU,),
    "cuda": (CUDA, CPU),
    "tensorrt": (TRT, CUDA, CPU),
    "openvino": (CPU,),
}

# GPUs with fast FP16 arithmetic: compute capability 7.0 and up (Jetson Xavier 7.2, Orin 8.7 included),
# plus the Jetsons before Volta (TX1 5.3, TX2 6.2) and the P100 (6.0). Elsewhere (e.g. Pascal GP10x such
# as the GTX 1050: 6.1) FP16 only saves memory, at a speed cost.
_FAST_FP16_BEFORE_VOLTA = {(5, 3), (6, 0), (6, 2)}
GiB = 1 << 30


# ---------------------------------------------------------------- machine facts


@functools.lru_cache(maxsize=None)
def gpu_info() -> dict | None:
    """{"name", "memory_bytes", "capability": (major, minor)} of GPU 0, or None without a usable one.

    cuda-python first (works on Jetsons, which have no nvidia-smi), then nvidia-smi. Looked up once
    per process (it may start nvidia-smi, and every runner and engine check asks); do not modify.
    """
    try:
        cudart = _cudart()
        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
            return {"name": name.strip("\x00 "), "memory_bytes": int(props.totalGlobalMem),
                    "capability": (int(props.major), int(props.minor))}
    except Exception:  # cuda-python missing, no driver, no device
        pass
    from recon.runtime.system import cuda_gpus

    gpus = cuda_gpus()
    if not gpus:
        return None
    major, _, minor = gpus[0]["compute_capability"].partition(".")
    return {"name": gpus[0]["name"], "memory_bytes": gpus[0]["memory_mib"] << 20,
            "capability": (int(major or 0), int(minor or 0))}


def fast_fp16(gpu: dict | None) -> bool:
    """Whether `gpu` (a `gpu_info` dict; only "capability" is read) has fast FP16 arithmetic."""
    return bool(gpu) and (tuple(gpu["capability"]) >= (7, 0) or tuple(gpu["capability"]) in _FAST_FP16_BEFORE_VOLTA)


def workspace_bytes(gpu: dict | None) -> int:
    """TensorRT's tactic workspace: small on small cards so the engine and buffers still fit."""
    memory = gpu["memory_bytes"] if gpu else 0
    if memory <= int(4.5 * GiB):  # 4 GB cards and Jetson Nano: 1 GiB
        return GiB
    return 2 * GiB if memory <= int(8.5 * GiB) else 4 * GiB


def cache_root() -> Path:
    """Where TensorRT engine and timing caches go: $RECON_CACHE_DIR or ~/.cache/recon."""
    if os.environ.get("RECON_CACHE_DIR"):
        return Path(os.environ["RECON_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "recon"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unknown"


def trt_cache_dir(model_sha256: str, gpu: dict | None) -> Path:
    """One cache folder per GPU model, TensorRT and ONNX Runtime version and model file: an engine
    built for one of them is useless (or unsafe) with another."""
    import onnxruntime

    from recon.runtime.system import package_version

    trt_version = next((v for v in (package_version(p) for p in ("tensorrt", "tensorrt-cu12", "tensorrt-libs")) if v),
                       "trt-unknown")
    key = f"{gpu['name'] if gpu else 'gpu'}-trt{trt_version}-ort{onnxruntime.__version__}-{model_sha256[:16]}"
    return cache_root() / "tensorrt" / _slug(key)


def parse_device(device: str) -> tuple[str, int]:
    """A --device value -> (kind of DEVICES, GPU index): "cuda:1" -> ("cuda", 1), "cpu" -> ("cpu", 0).
    InputError for an unknown kind, or an index on anything but cuda/tensorrt."""
    kind, colon, index = str(device).partition(":")
    if kind not in DEVICES or (colon and (kind not in ("cuda", "tensorrt") or not index.isdigit())):
        raise InputError(f"device {device!r} is not one of {', '.join(DEVICES)} (or cuda:N, tensorrt:N for GPU N)")
    return kind, int(index or 0)


def provider_chain(device: str, model_sha256: str = "", available=None) -> list[tuple[str, dict]]:
    """[(provider, options)] for `device` on this machine, most preferred first (cuda:N / tensorrt:N: on GPU N).

    InputError for an unknown device, or for cuda/tensorrt when this onnxruntime build lacks them.
    """
    import onnxruntime

    device, device_id = parse_device(device)
    available = list(onnxruntime.get_available_providers() if available is None else available)
    wanted = DEVICES[device]
    if device in ("cuda", "tensorrt") and wanted[0] not in available:
        raise InputError(f"device {device!r}: this onnxruntime has no {wanted[0]} (it has {', '.join(available)}); "
                         "install the GPU runtime (pip install onnxruntime-gpu) or use --device cpu")
    gpu = gpu_info() if any(p in available for p in (TRT, CUDA)) and device != "cpu" else None
    chain = []
    for provider in wanted:
        if provider not in available:
            continue
        if provider == TRT:
            cache = trt_cache_dir(model_sha256 or "nohash", gpu)
            chain.append((TRT, {
                "device_id": device_id,
                "trt_fp16_enable": fast_fp16(gpu),
                "trt_max_workspace_size": workspace_bytes(gpu),
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache),
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": str(cache),
            }))
        elif provider == CUDA:
            # kSameAsRequested: grow the memory arena by what is asked, not by doubling (small cards).
            chain.append((CUDA, {"device_id": device_id, "arena_extend_strategy": "kSameAsRequested"}))
        else:
            chain.append((CPU, {}))
    return chain


# ---------------------------------------------------------------- runners


@dataclass(frozen=True)
class TensorSpec:
    """dtype and shape of an input; None in the shape is a free (dynamic) dimension."""

    dtype: np.dtype
    shape: tuple


class BaseRunner:
    """activate() -> infer(feed) ... -> deactivate(); usable as a context manager.

    `inputs` maps input names to TensorSpec; `max_batch` is the largest first dimension the
    backend accepts (None: no limit); `provider` says what actually runs (e.g. "CUDAExecutionProvider").
    """

    name = "runner"

    def __init__(self):
        self.is_active = False
        self.inputs: dict[str, TensorSpec] = {}
        self.max_batch: int | None = None
        self.provider = ""  # what actually runs the model
        self.note = ""  # why that is not the first choice, when it is not

    def activate(self) -> "BaseRunner":
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self):
        return self.activate()

    def __exit__(self, *exc):
        self.deactivate()

    def infer(self, feed: dict) -> dict:
        """{input name: array} -> {output name: array}; the inputs are checked here, once for all backends."""
        if not self.is_active:
            raise RuntimeError(f"{self.name}: activate() the runner (or use `with runner:`) before infer()")
        self.check_inputs(feed)
        return self.infer_impl({name: np.ascontiguousarray(value) for name, value in feed.items()})

    def check_inputs(self, feed: dict) -> None:
        missing = sorted(set(self.inputs) - set(feed))
        unexpected = sorted(set(feed) - set(self.inputs))
        if missing or unexpected:
            raise InputError(f"{self.name}: inputs {sorted(feed)} given, expected {sorted(self.inputs)}"
                             + (f" (missing {missing})" if missing else "")
                             + (f" (unexpected {unexpected})" if unexpected else ""))
        for name, spec in self.inputs.items():
            value = feed[name]
            if not isinstance(value, np.ndarray):
                raise InputError(f"{self.name}: input {name!r} is a {type(value).__name__}, expected a numpy array")
            if value.dtype != spec.dtype:
                raise InputError(f"{self.name}: input {name!r} has dtype {value.dtype}, expected {spec.dtype}")
            shown = tuple("B" if d is None else d for d in spec.shape)
            if value.ndim != len(spec.shape) or any(d is not None and d != v for d, v in zip(spec.shape, value.shape)):
                raise InputError(f"{self.name}: input {name!r} has shape {value.shape}, expected {shown}")
            if value.shape[0] < 1 or (self.max_batch is not None and value.shape[0] > self.max_batch):
                raise InputError(f"{self.name}: input {name!r} has batch {value.shape[0]}, expected 1 to {self.max_batch}")

    def activate_impl(self) -> None:
        raise NotImplementedError

    def infer_impl(self, feed: dict) -> dict:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------- ONNX Runtime


class SessionFromOnnx:
    """Loader: an ONNX Runtime InferenceSession for `device` (see DEVICES) with `threads` CPU threads.

    After loading, `provider` is the provider that runs the model and `note` says why it is not
    the first choice (e.g. "TensorrtExecutionProvider failed: ..."). An explicitly requested
    cuda/tensorrt device that does not come up is an InputError.
    """

    def __init__(self, path, device: str = "auto", threads: int | None = None, model_sha256: str = ""):
        self.path = Path(path)
        self.device = device
        self.kind, self.device_id = parse_device(device)  # InputError now for a bad --device
        self.threads = threads
        self.model_sha256 = model_sha256
        self.provider = ""
        self.note = ""
        if threads is not None and int(threads) < 1:
            raise InputError(f"threads: must be >= 1, got {threads}")

    def options(self):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: fallbacks are reported through `note`
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
            options.inter_op_num_threads = 1  # one branch at a time: the nets are single chains
        # Idle pool threads would otherwise spin between runs, taking the cores from our numpy
        # preprocessing and meshing (and other processes): on a 2-core CPU that halves the speed.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    def __call__(self):
        import onnxruntime

        chain = provider_chain(self.device, self.model_sha256)
        for provider, opts in chain:
            if provider == TRT:
                Path(opts["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
        errors = []
        # auto: when a provider fails to start (missing libnvinfer, out of memory), try without it.
        while chain:
            try:
                session = onnxruntime.InferenceSession(str(self.path), self.options(),
                                                       providers=[p for p, _ in chain],
                                                       provider_options=[_as_strings(o) for _, o in chain])
                break
            except Exception as error:
                message = first_line(error)
                if self.device != "auto" or len(chain) == 1:
                    raise ModelError(f"{self.path}: cannot load on {self.device} ({message})") from None
                errors.append(f"{chain[0][0]} failed: {message}")
                chain = chain[1:]
        running = session.get_providers()
        self.provider = running[0]
        wanted = DEVICES[self.kind][0]
        if self.kind in ("cuda", "tensorrt") and wanted not in running:
            raise InputError(f"device {self.device!r}: {wanted} did not start for {self.path.name} "
                             f"(running on {', '.join(running)}); check the CUDA/TensorRT install or use --device cpu")
        if self.provider != chain[0][0]:
            errors.append(f"{chain[0][0]} did not start")
        self.note = "; ".join(errors)
        return session


class OnnxRuntimeRunner(BaseRunner):
    """Runs an ONNX Runtime session.

    On CUDA/TensorRT it uses IO binding: per batch size, input and output tensors are allocated on
    the GPU once and reused (inputs refreshed in place), so a run does no device allocation and the
    outputs cross to the host once, when read. `binding_device` (None on the CPU) selects this.
    """

    name = "onnxruntime"

    def __init__(self, loader, name: str | None = None):
        super().__init__()
        self.loader = loader
        self.session = None
        self.name = name or getattr(loader, "path", Path("onnxruntime")).name
        self.binding_device = None
        self._bindings = {}  # batch size -> (binding, inputs, outputs)

    def activate_impl(self) -> None:
        self.session = self.loader() if callable(self.loader) else self.loader
        self.provider = getattr(self.loader, "provider", "") or self.session.get_providers()[0]
        self.note = getattr(self.loader, "note", "")
        self.inputs = {i.name: TensorSpec(_dtype(i.type), _shape(i.shape)) for i in self.session.get_inputs()}
        self.output_specs = {o.name: TensorSpec(_dtype(o.type), _shape(o.shape)) for o in self.session.get_outputs()}
        first = [spec.shape[0] for spec in self.inputs.values()]
        self.max_batch = first[0] if first and first[0] is not None else None
        self.binding_device = "cuda" if self.provider in (CUDA, TRT) else None
        self.device_id = getattr(self.loader, "device_id", 0)  # the GPU the session runs on (cuda:N)
        self._bindings = {}

    def infer_impl(self, feed: dict) -> dict:
        outputs = list(self.output_specs)
        if self.binding_device is None:
            return dict(zip(outputs, self.session.run(outputs, feed)))
        batch = next(iter(feed.values())).shape[0]
        if batch not in self._bindings:
            self._bindings[batch] = self._bind(batch, feed)
        binding, inputs, bound = self._bindings[batch]
        for name, value in feed.items():
            inputs[name].update_inplace(value)
        self.session.run_with_iobinding(binding)
        if bound is None:  # outputs of unknown shape: ONNX Runtime allocates them each run
            return dict(zip(outputs, binding.copy_outputs_to_cpu()))
        # Copies: the bound tensors are reused by the next run of this batch size.
        return {name: np.array(value.numpy()) for name, value in bound.items()}

    def _bind(self, batch: int, feed: dict):
        from onnxruntime import OrtValue

        device = self.binding_device
        binding = self.session.io_binding()
        # Allocated by ONNX Runtime, not wrapping the caller's array (on the CPU it would alias it).
        inputs = {name: OrtValue.ortvalue_from_shape_and_type(value.shape, value.dtype, device, self.device_id)
                  for name, value in feed.items()}
        for name, value in inputs.items():
            binding.bind_ortvalue_input(name, value)
        shapes = {name: (batch, *spec.shape[1:]) for name, spec in self.output_specs.items()}
        if all(None not in shape for shape in shapes.values()):
            bound = {name: OrtValue.ortvalue_from_shape_and_type(shapes[name], self.output_specs[name].dtype, device,
                                                                 self.device_id)
                     for name in shapes}
            for name, value in bound.items():
                binding.bind_ortvalue_output(name, value)
        else:
            bound = None
            for name in self.output_specs:
                binding.bind_output(name, device, self.device_id)
        return binding, inputs, bound

    def deactivate_impl(self) -> None:
        self.session = None
        self._bindings = {}


def _dtype(onnx_type: str) -> np.dtype:
    types = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}
    return np.dtype(types.get(onnx_type, np.float32))


def _shape(dims) -> tuple:
    return tuple(d if isinstance(d, int) else None for d in dims)


# ---------------------------------------------------------------- TensorRT (native plans)


def _cudart():
    """cuda-python's runtime module (its import path moved in cuda-python 12.6)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart
    return cudart


def _cuda_check(result):
    """cuda-python returns (error, *values): raise on error, return the values."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise RuntimeError(f"CUDA error {error}")
    return values[0] if len(values) == 1 else values


SIDECAR_FORMAT = "recon-engine"  # what recon.export.tensorrt writes beside each plan (<plan>.json)
REBUILD_ENGINE = "rebuild with `recon-cli export --engine --weights RUN --out MODEL` on this machine"
_SIDECAR_LABELS = {"tensorrt": "TensorRT", "gpu": "GPU", "compute_capability": "compute capability",
                   "onnx_sha256": "ONNX sha256"}


def sidecar_path(engine_path) -> Path:
    """Where the sidecar of a TensorRT plan lies: `<plan>.json` beside it."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def engine_environment(tensorrt_version: str, onnx_sha256: str | None = None) -> dict:
    """What a TensorRT plan must have been built for to run here: the facts its sidecar records and
    `check_engine_sidecar` compares ("gpu" and "compute_capability" None when no GPU is seen)."""
    gpu = gpu_info()
    return {"tensorrt": tensorrt_version, "gpu": gpu["name"] if gpu else None,
            "compute_capability": "%d.%d" % tuple(gpu["capability"]) if gpu else None, "onnx_sha256": onnx_sha256}


def check_engine_sidecar(engine_path, current: dict) -> dict:
    """Refuse a TensorRT plan built for another setup before deserialising it (it would fail to
    load, or worse): compare its `<plan>.json` sidecar with `current`. Returns the sidecar.

    Keys compared (as recon.export.tensorrt writes them, see `engine_environment`): "tensorrt"
    (version), "gpu" (name), "compute_capability" ("M.m") and "onnx_sha256"; a key missing or None
    in `current` is skipped.
    """
    engine_path = Path(engine_path)
    path = sidecar_path(engine_path)
    sidecar = read_json(path, "recon engine description", f"a TensorRT plan needs its sidecar; {REBUILD_ENGINE}")
    if sidecar.get("format") != SIDECAR_FORMAT:
        raise ModelError(f"{path}: not a recon engine description; {REBUILD_ENGINE}")
    mismatches = [f"{label} {sidecar.get(key)} (built) != {current[key]} (here)" if key != "onnx_sha256"
                  else "its ONNX file changed since it was built"
                  for key, label in _SIDECAR_LABELS.items()
                  if current.get(key) is not None and sidecar.get(key) != current[key]]
    if mismatches:
        raise ModelError(f"{engine_path}: built for another setup: {'; '.join(mismatches)}; {REBUILD_ENGINE}")
    return sidecar


class EngineFromPlan:
    """Loader: a deserialized TensorRT engine from a plan file, after the sidecar check.

    onnx_sha256: the model folder's hash of the ONNX file the plan was built from (checked too).
    """

    def __init__(self, path, onnx_sha256: str | None = None):
        self.path = Path(path)
        self.onnx_sha256 = onnx_sha256

    def __call__(self):
        try:
            import tensorrt as trt
        except Exception as error:  # ImportError, or OSError from a broken libnvinfer
            raise InputError(f"{self.path}: TensorRT is not usable here ({first_line(error)}); "
                             "use the ONNX files (--device auto/cuda/cpu)") from None
        check_engine_sidecar(self.path, engine_environment(trt.__version__, self.onnx_sha256))
        logger = trt.Logger(trt.Logger.ERROR)
        engine = trt.Runtime(logger).deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise ModelError(f"{self.path}: TensorRT could not deserialize this plan; {REBUILD_ENGINE}")
        return engine


class TensorRTRunner(BaseRunner):
    """Runs a TensorRT engine with the tensor-name API (TensorRT 8.6 and 10 alike).

    One execution context on its own CUDA stream; device buffers and pinned host buffers are
    allocated once, at the profile's largest shapes, and reused; copies are asynchronous on the stream.
    """

    name = "tensorrt"

    def __init__(self, loader, name: str | None = None):
        super().__init__()
        self.loader = loader
        self.name = name or getattr(loader, "path", Path("tensorrt")).name
        self.provider = "TensorRT"
        self._allocations = []  # (kind, pointer) to free

    def activate_impl(self) -> None:
        self.engine = self.loader() if callable(self.loader) else self.loader
        try:
            self._allocate()
        except BaseException:
            self.deactivate_impl()  # free what was allocated before the failure
            raise

    def _allocate(self) -> None:
        import tensorrt as trt

        cudart = _cudart()
        self.context = self.engine.create_execution_context()
        self.stream = _cuda_check(cudart.cudaStreamCreate())
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        self.inputs = {}
        for name in self.input_names:
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            shape = tuple(self.engine.get_tensor_shape(name))
            largest = tuple(self.engine.get_tensor_profile_shape(name, 0)[2]) if -1 in shape else shape
            self.inputs[name] = TensorSpec(dtype, tuple(None if d == -1 else d for d in shape))
            self.context.set_input_shape(name, largest)  # so the outputs' largest shapes can be read
            self.max_batch = largest[0]
        self.buffers = {}  # name -> (device pointer, pinned host array of the largest shape)
        for name in names:
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            shape = tuple(self.context.get_tensor_shape(name))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            device = _cuda_check(cudart.cudaMalloc(nbytes))
            self._allocations.append(("device", device))
            host_pointer = _cuda_check(cudart.cudaMallocHost(nbytes))
            self._allocations.append(("host", host_pointer))
            host = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_byte * nbytes).from_address(int(host_pointer)))
            self.buffers[name] = (device, host.view(dtype).reshape(shape))
            self.context.set_tensor_address(name, int(device))

    def infer_impl(self, feed: dict) -> dict:
        cudart = _cudart()
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.input_names:
            value = feed[name]
            device, host = self.buffers[name]
            staged = host.reshape(-1)[: value.size].reshape(value.shape)
            staged[...] = value
            self.context.set_input_shape(name, value.shape)
            _cuda_check(cudart.cudaMemcpyAsync(device, staged.ctypes.data, value.nbytes, h2d, self.stream))
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError(f"{self.name}: TensorRT execution failed")
        results = {}
        for name in self.output_names:
            device, host = self.buffers[name]
            shape = tuple(self.context.get_tensor_shape(name))
            out = host.reshape(-1)[: int(np.prod(shape))].reshape(shape)
            _cuda_check(cudart.cudaMemcpyAsync(out.ctypes.data, device, out.nbytes, d2h, self.stream))
            results[name] = out
        _cuda_check(cudart.cudaStreamSynchronize(self.stream))
        # Copies: the pinned buffers are overwritten by the next call.
        return {name: np.array(value, dtype=np.float32) for name, value in results.items()}

    def deactivate_impl(self) -> None:
        cudart = _cudart()
        for kind, pointer in self._allocations:
            (cudart.cudaFree if kind == "device" else cudart.cudaFreeHost)(pointer)
        self._allocations = []
        if getattr(self, "stream", None) is not None:
            cudart.cudaStreamDestroy(self.stream)
        self.stream = self.context = self.engine = self.buffers = None


def _as_strings(options: dict) -> dict:
    """Provider options as ONNX Runtime parses them: strings, booleans as "true"/"false"."""
    return {key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in options.items()}
