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

The pieces: devices.py (the device table, GPU facts, provider chains), runner_base.py, and one file
per backend: onnxruntime_backend.py, tensorrt_backend.py (and openvino_backend.py). This module
gathers them under the names the rest of recon imports.
"""

from __future__ import annotations

from recon.runtime.devices import (CPU, CUDA, DEVICES, TRT, _cudart, fast_fp16, gpu_info, parse_device, provider_chain,
                                   workspace_bytes)
from recon.runtime.onnxruntime_backend import OnnxRuntimeRunner, SessionFromOnnx, _as_strings, _dtype
from recon.runtime.runner_base import BaseRunner, TensorSpec
from recon.runtime.tensorrt_backend import (SIDECAR_FORMAT, EngineFromPlan, TensorRTRunner, _cuda_check,
                                            check_engine_sidecar, engine_environment, sidecar_path)

# Also CPU, CUDA, TRT, workspace_bytes, SIDECAR_FORMAT, sidecar_path and the helpers _as_strings, _dtype,
# _cudart, _cuda_check: other modules import them from here.
__all__ = ["DEVICES", "parse_device", "TensorSpec", "BaseRunner", "SessionFromOnnx", "OnnxRuntimeRunner", "EngineFromPlan",
           "TensorRTRunner", "check_engine_sidecar", "engine_environment", "fast_fp16", "gpu_info", "provider_chain"]
