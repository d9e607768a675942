"""Which runner runs a model folder's network: its TensorRT plan, OpenVINO, or ONNX Runtime
(recon.runtime.pipeline's Reconstructor and recon.runtime.speed ask here), and the fallback when a
TensorRT plan does not fit the machine."""

from __future__ import annotations

from recon.runtime.backends import EngineFromPlan, OnnxRuntimeRunner, SessionFromOnnx, TensorRTRunner
from recon.runtime.errors import InputError, ModelError
from recon.runtime.model import ModelInfo

__all__ = ["make_runner", "activate_runner"]


def make_runner(model: ModelInfo, net: str, device: str = "auto", threads: int | None = None,
                precision: str = "fp32"):
    """The runner for MODEL/<net>, not yet activated: the folder's native TensorRT plan when it has
    one, the device is auto or tensorrt and TensorRT + cuda-python import; OpenVINO for device
    openvino, or auto where it is installed on a CPU; else ONNX Runtime. precision: which ONNX file
    runs (model.PRECISIONS: fp32, or the fp16/int8 twin)."""
    import importlib.util

    from recon.runtime.openvino_backend import openvino_preferred

    engine = model.engine(net)
    native = all(importlib.util.find_spec(m) is not None for m in ("tensorrt", "cuda"))
    if engine is not None and device in ("auto", "tensorrt") and native:
        return TensorRTRunner(EngineFromPlan(engine, model.sha256(f"{net}.onnx")), name=engine.name)
    if device == "openvino" or (device == "auto" and openvino_preferred()):
        return _openvino_runner(model, net, threads, precision)
    return _onnx_runner(model, net, device, threads, precision)


def _onnx_runner(model: ModelInfo, net: str, device: str, threads, precision: str) -> OnnxRuntimeRunner:
    path = model.onnx(net, precision)
    return OnnxRuntimeRunner(SessionFromOnnx(path, device, threads, model.sha256(path.name)), name=path.name)


def _openvino_runner(model: ModelInfo, net: str, threads, precision: str):
    """FP32 files in BF16 where the CPU has it and the model's export gated it (a note says why not);
    the fp16/int8 twins with FP32 arithmetic around their own FP16/INT8 layers."""
    from recon.runtime.openvino_backend import CompiledFromOnnx, OpenVINORunner, import_openvino, model_precision

    import_openvino()  # --device openvino without it installed: one line saying how to install it
    path = model.onnx(net, precision)
    if precision == "fp32":
        chosen, note = model_precision(model.manifest)
        loader = CompiledFromOnnx(path, chosen, threads)
        loader.note = note
    else:
        loader = CompiledFromOnnx(path, "fp32", threads, label=precision)
    return OpenVINORunner(loader, name=path.name)


def activate_runner(runner, model: ModelInfo, net: str, device: str, threads, precision: str):
    """Activate; a TensorRT plan that does not fit this machine (sidecar mismatch) falls back to
    ONNX Runtime on the same device, with a note saying why."""
    try:
        return runner.activate()
    except (ModelError, InputError) as error:
        if not isinstance(runner, TensorRTRunner):
            raise
        fallback = _onnx_runner(model, net, device, threads, precision).activate()
        fallback.note = "; ".join(filter(None, [f"{runner.name} not used: {error}", fallback.note]))
        return fallback
