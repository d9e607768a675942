"""TensorRT engines for real: needs `import tensorrt` and a CUDA GPU, skipped elsewhere (with the reason).

Builds the edge model's engines through `export_model(engine=True)`, checks the sidecars against this
machine, deserialises each plan and checks its I/O names and profile, and (when torch sees the GPU)
runs the engines and compares them with ONNX Runtime CPU like `polygraphy run --trt --onnxrt`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_export import make_run

pytestmark = pytest.mark.gpu


def _skip_reason() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return "TensorRT is not installed (pip install tensorrt)"
    from recon.runtime.backends import gpu_info

    if gpu_info() is None:
        return "no CUDA GPU visible (neither cuda-python nor nvidia-smi found one)"
    return None


REASON = _skip_reason()
needs_gpu = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.fixture(scope="module")
def engine_model(tmp_path_factory):
    from recon.export.onnx_export import export_model

    root = tmp_path_factory.mktemp("gpu")
    run = make_run(root / "run")
    manifest = export_model(run, root / "model", engine=True, fp16="auto", batch=(1, 2, 4), log=None)
    return manifest, root / "model"


@needs_gpu
def test_engines_and_sidecars(engine_model):
    import tensorrt as trt

    from recon.export.tensorrt import current_environment
    from recon.runtime.backends import check_engine_sidecar
    from recon.runtime.model import verify_model_dir

    manifest, out = engine_model
    verify_model_dir(out)
    assert (out / "timing.cache").stat().st_size > 0
    for name, input_name, channels in (("sketch", "image", 3), ("voxel", "sketch", 5)):
        engine_path = out / f"{name}.engine"
        sidecar = check_engine_sidecar(engine_path, current_environment(out / f"{name}.onnx"))
        assert sidecar == manifest["engines"][name]
        assert sidecar["profiles"][input_name]["max"][0] == 4 and sidecar["profiles"][input_name]["opt"][0] == 2
        assert sidecar["profiles"][input_name]["min"] == [1, channels, 128, 128]
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        assert engine is not None
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        assert input_name in names


@needs_gpu
def test_engine_outputs_match_onnxruntime(engine_model):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here: cannot allocate device buffers to run the engine")
    import tensorrt as trt

    from recon.export.parity import compare_outputs, iou_agreement, ort_session, run_session, synthetic_inputs

    _, out = engine_model
    inputs = synthetic_inputs(128, batch=2, seed=3)
    for name, input_name, feed in (("sketch", "image", inputs["image"]), ("voxel", "sketch", inputs["sketch"])):
        reference = run_session(ort_session(out / f"{name}.onnx"), {input_name: feed})
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine((out / f"{name}.engine").read_bytes())
        context = engine.create_execution_context()
        context.set_input_shape(input_name, feed.shape)
        buffers = {input_name: torch.from_numpy(feed).cuda()}
        for output in reference:
            buffers[output] = torch.empty(tuple(context.get_tensor_shape(output)), device="cuda")
        for tensor, buffer in buffers.items():
            context.set_tensor_address(tensor, buffer.data_ptr())
        stream = torch.cuda.Stream()
        assert context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        got = {k: buffers[k].cpu().numpy() for k in reference}
        precision = json.loads((out / f"{name}.engine.json").read_text())["precision"]
        # FP32 engines may use TF32 on Ampere+ (TensorRT's default), FP16 ones half precision: judge the
        # masks the runtime thresholds and the mean error, not the last bit.
        results = compare_outputs(reference, got, atol=1e-2 if precision == "fp32" else 5e-2,
                                  reference_name="onnxrt", actual_name="trt", log=print)
        for output, figures in results.items():
            assert np.isfinite(got[output]).all()
            assert figures["mean_abs"] < (1e-3 if precision == "fp32" else 1e-2), (output, figures)
        if "occupancy" in got:
            assert iou_agreement(reference["occupancy"], got["occupancy"], 0.4) >= 0.99
        if "silhouette" in got:
            assert iou_agreement(reference["silhouette"][:, 0], got["silhouette"][:, 0], 0.5) >= 0.99
