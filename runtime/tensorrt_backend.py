"""TensorRT backend (native plans): `EngineFromPlan` (loader, after the sidecar check) and
`TensorRTRunner`, on the tensor-name API that TensorRT 8.6 and 10 share. TensorRT and cuda-python
are imported only inside the functions that use them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.runtime.devices import _cudart, gpu_info
from recon.runtime.errors import InputError, ModelError, first_line
from recon.runtime.model import read_json
from recon.runtime.runner_base import BaseRunner, TensorSpec


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
