"""Backends: the device table, loaders, runner life cycle and the input checks' messages."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnxruntime
import pytest

from recon.runtime import backends
from recon.runtime.backends import (CPU, CUDA, DEVICES, TRT, EngineFromPlan, OnnxRuntimeRunner, SessionFromOnnx,
                                    TensorRTRunner, check_engine_sidecar, engine_environment, fast_fp16,
                                    provider_chain, workspace_bytes)
from recon.runtime.errors import InputError, ModelError
from recon.runtime.model import load_model_dir


def _gpu_reason() -> str | None:
    """Why the GPU runners cannot be tried here (None when they can)."""
    if CUDA not in onnxruntime.get_available_providers():
        return "no CUDA: this onnxruntime has no CUDAExecutionProvider (CPU-only machine or package)"
    for module in ("tensorrt", "cuda"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'recon[gpu]' tensorrt)"
    return None if backends.gpu_info() else "no NVIDIA GPU visible"


_GPU_REASON = _gpu_reason()
needs_gpu = pytest.mark.skipif(_GPU_REASON is not None, reason=f"gpu test: {_GPU_REASON}")


def test_device_table():
    assert set(DEVICES) == {"auto", "cpu", "cuda", "tensorrt", "openvino"}
    assert DEVICES["auto"] == (TRT, CUDA, CPU) and DEVICES["cpu"] == (CPU,)
    assert all(chain[-1] == CPU for chain in DEVICES.values())  # nodes a GPU cannot take still run


def test_provider_chain_on_this_machine():
    available = onnxruntime.get_available_providers()
    assert provider_chain("cpu") == [(CPU, {})]
    auto = [name for name, _ in provider_chain("auto")]
    assert auto == [p for p in DEVICES["auto"] if p in available]
    with pytest.raises(InputError, match="not one of auto, cpu, cuda, tensorrt"):
        provider_chain("gpu")


def test_provider_chain_gpu_options(monkeypatch, tmp_path):
    """What a TensorRT/CUDA build would get: FP16 only where fast, caches keyed by model hash."""
    monkeypatch.setenv("RECON_CACHE_DIR", str(tmp_path))
    chain = dict(provider_chain("auto", "ab" * 32, available=[TRT, CUDA, CPU]))
    assert list(chain) == [TRT, CUDA, CPU]
    trt = chain[TRT]
    assert trt["trt_engine_cache_enable"] and trt["trt_timing_cache_enable"]
    assert trt["trt_engine_cache_path"] == trt["trt_timing_cache_path"]
    assert trt["trt_engine_cache_path"].startswith(str(tmp_path)) and "abababab" in trt["trt_engine_cache_path"]
    assert trt["trt_max_workspace_size"] in (1 << 30, 2 << 30, 4 << 30)
    assert chain[CUDA]["device_id"] == 0


@pytest.mark.parametrize("device, kind, index", [("cuda:1", "cuda", 1), ("tensorrt:2", "tensorrt", 2), ("cpu", "cpu", 0)])
def test_device_with_a_gpu_index(device, kind, index, monkeypatch, tmp_path):
    """--device cuda:N runs every provider of the chain on GPU N."""
    monkeypatch.setenv("RECON_CACHE_DIR", str(tmp_path))
    assert backends.parse_device(device) == (kind, index)
    chain = dict(provider_chain(device, "ab" * 32, available=[TRT, CUDA, CPU]))
    assert all(options.get("device_id", index) == index for options in chain.values()) and CPU in chain


@pytest.mark.parametrize("device", ["cuda:x", "cpu:1", "cuda:", "gpu:0"])
def test_bad_gpu_index_is_one_clear_error(device):
    with pytest.raises(InputError, match="cuda:N"):
        SessionFromOnnx("model.onnx", device=device)


@pytest.mark.parametrize("device, provider", [("cuda", CUDA), ("tensorrt", TRT)])
def test_missing_gpu_provider_is_one_clear_error(device, provider):
    with pytest.raises(InputError) as error:
        provider_chain(device, available=[CPU])
    message = str(error.value)
    assert provider in message and "--device cpu" in message and "\n" not in message


def test_fp16_and_workspace_rules():
    gpu = lambda capability, gib=8: {"name": "x", "capability": capability, "memory_bytes": gib << 30}  # noqa: E731
    assert fast_fp16(gpu((7, 5))) and fast_fp16(gpu((8, 7))) and fast_fp16(gpu((5, 3))) and fast_fp16(gpu((6, 0)))
    assert not fast_fp16(gpu((6, 1))) and not fast_fp16(None)  # GTX 1050: slow FP16
    assert workspace_bytes(gpu((6, 1), 4)) == 1 << 30  # 4 GB cards: 1 GiB
    assert workspace_bytes(None) == 1 << 30
    assert workspace_bytes(gpu((8, 6), 24)) > 1 << 30


@pytest.fixture(scope="module")
def sketch_runner(model_dir):
    info = load_model_dir(model_dir)
    with OnnxRuntimeRunner(SessionFromOnnx(info.onnx("sketch"), "cpu", threads=1)) as runner:
        yield runner, info


def test_onnxruntime_runner_matches_a_plain_session(sketch_runner, model_dir):
    runner, info = sketch_runner
    s = info.image_size
    assert runner.provider == CPU and runner.note == ""
    assert list(runner.inputs) == ["image"] and runner.inputs["image"].shape == (None, 3, s, s)
    image = np.random.default_rng(0).standard_normal((2, 3, s, s)).astype(np.float32)
    out = runner.infer({"image": image})
    assert out["normals"].shape == (2, 3, s, s) and out["depth"].shape == (2, 1, s, s)
    assert out["silhouette"].min() >= 0 and out["silhouette"].max() <= 1
    plain = onnxruntime.InferenceSession(str(model_dir / "sketch.onnx"), providers=[CPU])
    np.testing.assert_allclose(out["normals"], plain.run(["normals"], {"image": image})[0], atol=1e-5)


@pytest.mark.parametrize("feed, fragments", [
    ({}, ["missing ['image']"]),
    ({"image": None, "extra": None}, ["unexpected ['extra']"]),
    ({"image": [1, 2]}, ["'image'", "list", "numpy array"]),
    ({"image": np.zeros((1, 3, 128, 128), np.float64)}, ["'image'", "float64", "expected float32"]),
    ({"image": np.zeros((1, 3, 64, 64), np.float32)}, ["'image'", "(1, 3, 64, 64)", "expected ('B', 3, 128, 128)"]),
    ({"image": np.zeros((3, 128, 128), np.float32)}, ["'image'", "(3, 128, 128)"]),
])
def test_input_checks_name_the_tensor(sketch_runner, feed, fragments):
    runner, _ = sketch_runner
    with pytest.raises(InputError) as error:
        runner.infer(feed)
    for fragment in fragments:
        assert fragment in str(error.value), str(error.value)


def test_batch_limit_is_checked(sketch_runner):
    runner, info = sketch_runner
    s = info.image_size
    runner.max_batch = 1
    try:
        with pytest.raises(InputError, match="batch 2, expected 1 to 1"):
            runner.infer({"image": np.zeros((2, 3, s, s), np.float32)})
    finally:
        runner.max_batch = None


def test_life_cycle(model_dir):
    runner = OnnxRuntimeRunner(SessionFromOnnx(model_dir / "voxel.onnx", "cpu", threads=1))
    with pytest.raises(RuntimeError, match="activate"):
        runner.infer({})
    with runner:
        assert runner.is_active and runner.session is not None
    assert not runner.is_active and runner.session is None
    runner.activate()
    runner.activate()  # idempotent
    runner.deactivate()
    runner.deactivate()


def test_bad_loader_arguments(tmp_path):
    with pytest.raises(InputError, match="threads"):
        SessionFromOnnx(tmp_path / "x.onnx", threads=0)
    (tmp_path / "x.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="x.onnx: cannot load on cpu"):
        SessionFromOnnx(tmp_path / "x.onnx", "cpu")()


def _sidecar(tmp_path, **values):
    engine = tmp_path / "sketch.engine"
    engine.write_bytes(b"plan")
    sidecar = {"format": "recon-engine", "tensorrt": "10.3.0", "gpu": "NVIDIA GeForce GTX 1050",
               "compute_capability": "6.1", "onnx_sha256": "aa", **values}
    (tmp_path / "sketch.engine.json").write_text(json.dumps(sidecar))
    return engine


def _sidecar_error(engine, current: dict) -> str:
    with pytest.raises(ModelError) as error:
        check_engine_sidecar(engine, current)
    message = str(error.value)
    assert "\n" not in message and "rebuild with `recon-cli export --engine" in message, message
    return message


def test_engine_sidecar_check(tmp_path):
    engine = _sidecar(tmp_path)
    here = {"tensorrt": "10.3.0", "gpu": "NVIDIA GeForce GTX 1050", "compute_capability": "6.1", "onnx_sha256": "aa"}
    assert check_engine_sidecar(engine, here)["gpu"] == "NVIDIA GeForce GTX 1050"
    assert check_engine_sidecar(engine, {**here, "gpu": None})  # unknown here: not compared
    assert check_engine_sidecar(engine, {"tensorrt": "10.3.0"})  # nor are facts missing here
    for key, value, words in (("tensorrt", "8.6.1", "TensorRT 10.3.0 (built) != 8.6.1 (here)"),
                              ("gpu", "Orin", "GPU NVIDIA GeForce GTX 1050 (built) != Orin (here)"),
                              ("compute_capability", "8.7", "compute capability 6.1 (built) != 8.7 (here)"),
                              ("onnx_sha256", "bb", "its ONNX file changed")):
        message = _sidecar_error(engine, {**here, key: value})
        assert message.startswith(f"{engine}: built for another setup: ") and words in message
    two = _sidecar_error(engine, {**here, "tensorrt": "8.6.1", "gpu": "Orin"})
    assert "TensorRT 10.3.0" in two and "GPU NVIDIA GeForce GTX 1050" in two  # every mismatch named at once
    (tmp_path / "sketch.engine.json").write_text(json.dumps({"engine": "sketch.engine"}))
    assert "sketch.engine.json: not a recon engine description" in _sidecar_error(engine, here)
    (tmp_path / "sketch.engine.json").write_text("[]")
    assert "not a recon engine description" in _sidecar_error(engine, here)
    (tmp_path / "sketch.engine.json").write_text("{not json")
    assert "sketch.engine.json: unreadable" in _sidecar_error(engine, here)
    (tmp_path / "sketch.engine.json").unlink()
    assert "sketch.engine.json: missing; a TensorRT plan needs its sidecar" in _sidecar_error(engine, here)


def test_engine_environment_has_the_sidecar_keys():
    """What export writes into a sidecar and what the loader compares come from the same function."""
    gpu = backends.gpu_info()
    assert engine_environment("10.3.0", "aa") == {
        "tensorrt": "10.3.0", "onnx_sha256": "aa", "gpu": gpu["name"] if gpu else None,
        "compute_capability": "%d.%d" % gpu["capability"] if gpu else None}


def test_engine_loader_without_tensorrt(tmp_path):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    with pytest.raises(InputError, match="TensorRT is not usable here"):
        EngineFromPlan(_sidecar(tmp_path))()


@pytest.mark.gpu
@needs_gpu
def test_cuda_runner_matches_cpu(model_dir):
    info = load_model_dir(model_dir)
    image = np.random.default_rng(0).standard_normal((2, 3, info.image_size, info.image_size)).astype(np.float32)
    with OnnxRuntimeRunner(SessionFromOnnx(info.onnx("sketch"), "cuda")) as gpu, \
            OnnxRuntimeRunner(SessionFromOnnx(info.onnx("sketch"), "cpu")) as cpu:
        assert gpu.provider == CUDA and gpu.binding_device == "cuda"
        np.testing.assert_allclose(gpu.infer({"image": image})["depth"], cpu.infer({"image": image})["depth"],
                                   atol=1e-3)


@pytest.mark.gpu
@needs_gpu
def test_tensorrt_runner_matches_onnxruntime(model_dir, tmp_path):
    """Build a plan with the export helper, run it natively, compare with ONNX Runtime on the CPU."""
    from recon.export.tensorrt import build_engine

    info = load_model_dir(model_dir)
    engine = tmp_path / "sketch.engine"
    build_engine(info.onnx("sketch"), engine, profile=(1, 1, 4), log=None)
    image = np.random.default_rng(0).standard_normal((3, 3, info.image_size, info.image_size)).astype(np.float32)
    with TensorRTRunner(EngineFromPlan(engine, info.sha256("sketch.onnx"))) as trt, \
            OnnxRuntimeRunner(SessionFromOnnx(info.onnx("sketch"), "cpu")) as cpu:
        assert trt.max_batch == 4
        for batch in (1, 3, 1):  # buffers are reused across shapes
            got = trt.infer({"image": image[:batch]})
            want = cpu.infer({"image": image[:batch]})
            np.testing.assert_allclose(got["silhouette"], want["silhouette"], atol=2e-3)
        with pytest.raises(InputError, match="batch 5, expected 1 to 4"):
            trt.infer({"image": np.zeros((5, 3, info.image_size, info.image_size), np.float32)})


def test_gpu_info_is_none_or_complete():
    info = backends.gpu_info()
    assert info is None or {"name", "memory_bytes", "capability"} <= set(info)


def test_io_binding_path_matches_plain_runs(model_dir):
    """The CUDA path's IO binding (tensors allocated once per batch size, refreshed in place), run on
    CPU memory here: same answers as plain runs, across batch sizes and repeated calls."""
    with OnnxRuntimeRunner(SessionFromOnnx(model_dir / "voxel.onnx", "cpu", threads=1)) as runner:
        rng = np.random.default_rng(0)
        inputs = [rng.random((b, 5, 128, 128), dtype=np.float32) for b in (2, 1, 2)]
        plain = [runner.infer({"sketch": x})["occupancy"] for x in inputs]
        runner.binding_device = "cpu"
        bound = [runner.infer({"sketch": x})["occupancy"] for x in inputs]
        assert sorted(runner._bindings) == [1, 2]
        for a, b in zip(plain, bound):
            np.testing.assert_allclose(a, b, atol=1e-6)
