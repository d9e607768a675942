"""INT8 twins: calibration on training views, QDQ graphs that the runtime runs, the gate refusing a
model that fails it (nothing left behind), per-layer fallback, and the TensorRT cache format."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import onnx
import pytest

from recon.export.int8 import (CALIBRATION_BATCH, FALLBACKS, cache_path, calibration_feeds, calibration_ranges,
                               engine_calibration, make_int8_twins, quantizable_nodes, quantize_net, read_trt_cache,
                               trt_cache_text, trt_header_version, twin_path)
from recon.export.manifest import file_entries
from recon.export.onnx_export import export_model
from recon.runtime.errors import InputError, ModelError
from recon.runtime.model import load_model_dir
from test_export_gpu import REASON as GPU_REASON


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three chairs (two training objects, one test object), two 64 px views each."""
    from recon.train.data import RenderSettings, synth

    out = tmp_path_factory.mktemp("int8_data") / "data"
    synth(out, 3, ["chair"], 0, RenderSettings(views=2, image_size=64, voxel_res=32))
    return out


@pytest.fixture(scope="module")
def info(model_dir):
    model = load_model_dir(model_dir)
    return dict(image_size=model.image_size, voxel_res=model.voxel_res, mean=model.mean, std=model.std,
                threshold=model.threshold)


def _copy(model_dir, folder):
    shutil.copytree(model_dir, folder)
    return folder


def _relist(folder) -> None:
    """model.json lists the files now in the folder (what export does after the twins are written)."""
    manifest = json.loads((folder / "model.json").read_text())
    manifest["files"] = file_entries(folder)
    (folder / "model.json").write_text(json.dumps(manifest))


def _train_views(dataset) -> int:
    manifest = json.loads((dataset / "manifest.json").read_text())
    return sum(entry["views"] for entry in manifest["objects"] if entry["split"] == "train")


@pytest.fixture(scope="module")
def int8_model(model_dir, dataset, info, tmp_path_factory):
    """A copy of the test model folder with INT8 twins (kept whatever the gate says: the nets are untrained)."""
    folder = _copy(model_dir, tmp_path_factory.mktemp("int8") / "model")
    figures = make_int8_twins(folder, data=dataset, force=True, log=None, **info)
    _relist(folder)
    return folder, figures


def test_twins_are_qdq_graphs_calibrated_on_training_views(int8_model, dataset):
    folder, figures = int8_model
    assert figures["calibration"]["split"] == "train" and figures["calibration"]["views"] == _train_views(dataset)
    assert figures["step"] in FALLBACKS
    engines = {"onnxruntime"} | ({"openvino"} if _has_openvino() else set())
    assert set(figures["gates"]) == engines  # every engine the runtime may run the twins on is gated
    assert all(gate["split"] == "test" and gate["label"] == "int8" for gate in figures["gates"].values())
    for net in ("sketch", "voxel"):
        model = onnx.load(str(twin_path(folder, net)))
        fp32 = onnx.load(str(folder / f"{net}.onnx"))
        ops = [node.op_type for node in model.graph.node]
        assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
        produced_by = {out: node.op_type for node in model.graph.node for out in node.output}
        quantised = [n for n in quantizable_nodes(model) if n.name not in figures["excluded"][net]]
        # every quantised layer reads INT8 activations and weights (DequantizeLinear in front of both)
        assert quantised and all(produced_by.get(n.input[0]) == produced_by.get(n.input[1]) == "DequantizeLinear"
                                 for n in quantised)
        assert {p.key: p.value for p in model.metadata_props} == {p.key: p.value for p in fp32.metadata_props}
        assert [i.name for i in model.graph.input] == [i.name for i in fp32.graph.input]
        assert [o.name for o in model.graph.output] == [o.name for o in fp32.graph.output]


def test_runtime_runs_the_twins(int8_model):
    from recon.runtime.pipeline import Reconstructor
    from test_runtime_pipeline import cutout

    folder, _ = int8_model
    devices = ["cpu"] + (["openvino"] if _has_openvino() else [])
    for device in devices:
        with Reconstructor(folder, device=device, threads=1, precision="int8") as reconstruct:
            assert {r.name for r in reconstruct.runners.values()} == {"sketch.int8.onnx", "voxel.int8.onnx"}
            if device == "openvino":
                assert set(reconstruct.providers.values()) == {"OpenVINO CPU INT8"}
            result = reconstruct(cutout())
            assert result.ok, result.error
            assert result.voxels.shape == (reconstruct.model.voxel_res,) * 3


def test_missing_twin_is_one_clear_error(model_dir):
    from recon.runtime.pipeline import Reconstructor

    with pytest.raises(ModelError, match="sketch.int8.onnx: not in this model folder .export with --int8"):
        Reconstructor(model_dir, device="cpu", precision="int8")
    with pytest.raises(InputError, match="precision 'int4': choose one of fp32, fp16, int8"):
        Reconstructor(model_dir, device="cpu", precision="int4")


def test_gate_refuses_a_model_that_fails_it(model_dir, dataset, info, tmp_path):
    """A gate no model can pass (the IoU must rise by 1): every fallback step is tried, then the twins
    are refused with the figures, and no twin or cache is left in the folder."""
    folder = _copy(model_dir, tmp_path / "model")
    lines = []
    with pytest.raises(ModelError) as error:
        make_int8_twins(folder, data=dataset, max_drop=-1.0, log=lines.append, **info)
    message = str(error.value)
    assert "\n" not in message and f"after {len(FALLBACKS)} fallback steps" in message and "voxel IoU" in message
    assert sum("fails the gate" in line for line in lines) == len(FALLBACKS)
    assert not list(folder.glob("*.int8.*"))


def test_export_int8_needs_data_before_any_work(tmp_path):
    with pytest.raises(InputError, match="--int8 needs --data"):
        export_model(tmp_path / "no_run", tmp_path / "model", int8=True, log=None)
    assert not (tmp_path / "model").exists()


def test_fallback_keeps_excluded_layers_fp32(model_dir, dataset, info, tmp_path):
    path = model_dir / "sketch.onnx"
    feeds = calibration_feeds(dataset, path, samples=CALIBRATION_BATCH, **{k: info[k] for k in
                                                                           ("image_size", "voxel_res", "mean", "std")})
    nodes = quantizable_nodes(onnx.load(str(path)))
    excluded = FALLBACKS["stem and heads FP32"](nodes)
    assert excluded[0] == nodes[0].name and nodes[-1].name in excluded
    quantize_net(path, tmp_path / "twin.onnx", feeds["sketch"], excluded)
    model = onnx.load(str(tmp_path / "twin.onnx"))
    produced_by = {out: node.op_type for node in model.graph.node for out in node.output}
    kept = {n.name: produced_by.get(n.input[1]) for n in model.graph.node if n.name in excluded}
    assert kept and all(op != "DequantizeLinear" for op in kept.values())  # FP32 weights


def test_tensorrt_cache_format(int8_model, dataset, info):
    """The cache: TensorRT's header, one `tensor: hex` line per tensor, scale = max |value| / 127 of the
    calibration data (checked for the input against the training views themselves)."""
    folder, figures = int8_model
    text = cache_path(folder, "sketch").read_text()
    header, *lines = text.splitlines()
    assert header == f"TRT-{figures['tensorrt_cache']['header_version']}-EntropyCalibration2"
    assert all(len(line.rpartition(": ")[2]) == 8 for line in lines)
    scales = read_trt_cache(text)
    fp32 = onnx.load(str(folder / "sketch.onnx"))
    conv_inputs = {n.input[0] for n in quantizable_nodes(fp32)}
    assert "image" in scales and conv_inputs <= set(scales)
    feeds = calibration_feeds(dataset, folder / "sketch.onnx", **{k: info[k] for k in
                                                                  ("image_size", "voxel_res", "mean", "std")})
    largest = max(float(np.abs(f["image"]).max()) for f in feeds["sketch"])
    assert scales["image"] == pytest.approx(largest / 127, rel=1e-6)
    ranges = calibration_ranges(folder / "sketch.onnx", feeds["sketch"])
    assert read_trt_cache(trt_cache_text(ranges)) == pytest.approx(
        {k: struct.unpack(">f", struct.pack(">f", max(abs(a), abs(b), 1e-8) / 127))[0] for k, (a, b) in ranges.items()})


def test_cache_header_versions():
    """TensorRT refuses a cache whose header names another version: 8.6.1 -> 8601, 10.14.1 -> 101401."""
    assert [trt_header_version(v) for v in ("8.6.1", "8.6.1.6", "10.14.1.48", "10.3.0", None)] == \
        ["8601", "8601", "101401", "100300", "8601"]


@pytest.mark.gpu
@pytest.mark.skipif(GPU_REASON is not None, reason=f"gpu test: {GPU_REASON}")
def test_tensorrt_int8_engine_from_the_cache(int8_model, dataset, info, tmp_path):
    """On a GPU: an INT8 engine built from the CPU-written cache (or recalibrated where TensorRT refuses
    it) agrees with ONNX Runtime FP32 on the training batches."""
    from recon.export.parity import iou_agreement, ort_session, run_session
    from recon.export.tensorrt import build_engine
    from recon.runtime.backends import EngineFromPlan, TensorRTRunner
    from recon.runtime.model import sha256_file

    folder, _ = int8_model
    calibration = engine_calibration(folder, data=dataset, **info)["voxel"]
    engine = tmp_path / "voxel.engine"
    batch = calibration["calibration"][0].shape[0]
    sidecar = build_engine(folder / "voxel.onnx", engine, profile=(1, batch, batch), log=None, **calibration)
    assert sidecar["precision"] == "int8"
    feed = {"sketch": calibration["calibration"][0]}
    with TensorRTRunner(EngineFromPlan(engine, sha256_file(folder / "voxel.onnx"))) as runner:
        got = runner.infer(feed)["occupancy"]
    expected = run_session(ort_session(folder / "voxel.onnx"), feed)["occupancy"]
    assert iou_agreement(expected, got, info["threshold"]) > 0.9


def _has_openvino() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def test_profile_runs_the_int8_twins(int8_model, tmp_path):
    from cli_runner import assert_one_line_error, run_cli

    folder, _ = int8_model
    out = tmp_path / "profile.json"
    done = run_cli("profile", "--model", folder, "--device", "cpu", "--int8", "--batch", "1", "--iterations", "1",
                   "--warmup", "0", "--threads", "1", "--json", out)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["precision"] == "int8" and report["peak"]["gflops"] > 0
    assert {entry["provider"] for entry in report["peak"]["nets"].values()} == {"CPUExecutionProvider"}
    assert_one_line_error(run_cli("profile", "--model", folder, "--fp16", "--int8"), "--fp16 and --int8")


def test_export_int8_writes_listed_twins_and_figures(dataset, tmp_path):
    """`recon-cli export --int8 --data` end to end: twins and caches listed (hashed) in model.json with
    the gate's figures, the OpenVINO checks beside them where installed, and the folder loads."""
    from conftest import make_run

    run = make_run(tmp_path / "run")
    manifest = export_model(run, tmp_path / "model", int8=True, data=dataset, force=True, log=None)
    names = {"sketch.int8.onnx", "voxel.int8.onnx", "sketch.int8.cache", "voxel.int8.cache"}
    assert names <= set(manifest["files"]) and manifest["export"]["int8"] is True
    assert manifest["int8"]["kept"] and manifest["int8"]["calibration"]["split"] == "train"
    assert (manifest["openvino"] is not None) == _has_openvino()
    if _has_openvino():
        assert manifest["openvino"]["fp32_parity"]["voxel_iou_agreement"] >= 0.999
    model = load_model_dir(tmp_path / "model")
    assert model.onnx("voxel", "int8") == tmp_path / "model" / "voxel.int8.onnx"
