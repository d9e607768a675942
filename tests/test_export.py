"""`recon-cli export`: run folder -> model folder. Real checkpoints of freshly built nets (BatchNorm
statistics calibrated on noise so activations have trained-like scales), real ONNX files, ONNX Runtime.

Covers the graph contract (names, dynamic batch, folded BatchNorm, explicit symmetric pads, checker,
single file, metadata), ONNX Runtime vs PyTorch parity, FP16 twins and their gate (a broken twin is
refused), the memory plan against hand-computed numbers, the TensorRT lint, the folder's modes, and
every bad input leaving no model folder behind. Checking a model folder against model.json and an engine
against its sidecar is the runtime's (tests/test_runtime_model.py, tests/test_runtime_backends.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from cli_runner import modules_loaded_by
from conftest import make_run as _make_run
from conftest import save_net
from recon.export import fp16 as fp16_tools
from recon.export.lint import check_lint, errors, lint_model
from recon.export.onnx_export import METADATA_KEYS, export_model, load_run, read_metadata
from recon.export.parity import (FP32_ATOL, compare_outputs, ort_session, require_pass, run_session,
                                 synthetic_inputs)
from recon.export.plan import GiB, MiB, activation_peak, memory_plan, parse_size, weights_bytes
from recon.runtime.errors import InputError, ModelError, ReconError
from recon.runtime.model import sha256_file, verify_model_dir
from recon.runtime.preprocess import DEFAULT_FILL
from recon.train.checkpoint import save_checkpoint
from recon.train.evaluate import DEFAULT_THRESHOLD
from recon.train.presets import IMAGE_MEAN, IMAGE_STD, build_sketch_net, get_preset

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- fixtures


def make_run(run: Path, preset_name: str = "edge", voxel_stage: str = "joint", seed: int = 0,
             calibrate: bool = True) -> Path:
    """A run folder as `recon-cli train` writes it (design.md keys), nets untrained (BatchNorm calibrated)."""
    return _make_run(run, preset_name, seed, silhouette_bias=0.0, voxel_stage=voxel_stage, calibrate=calibrate,
                     epoch=4, fingerprint="0123456789abcdef")


def quiet(message: str) -> None:
    pass


@pytest.fixture(scope="module")
def edge_run(tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("edge") / "run")
    (run / "recipe.json").write_text(json.dumps({"epochs": {"sketch": 4}, "preset": "edge"}))
    (run / "eval.json").write_text(json.dumps({"mean_iou": 0.123}))
    return run


@pytest.fixture(scope="module")
def edge_model(edge_run, tmp_path_factory):
    """The edge run exported with FP16 twins; (manifest, folder, printed lines)."""
    lines = []
    out = tmp_path_factory.mktemp("edge_model") / "model"
    manifest = export_model(edge_run, out, fp16="on", log=lines.append)
    return manifest, out, lines


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from recon.train.data import RenderSettings, synth

    out = tmp_path_factory.mktemp("data") / "data"
    synth(out, 2, ["chair"], 0, RenderSettings(views=2, image_size=64, voxel_res=32))
    return out


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _no_leftovers(parent: Path, name: str) -> None:
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")], "temporary folder left behind"


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text, text
    return text


def _refused(error: type, run: Path, tmp_path: Path, *fragments: str, **kwargs) -> str:
    """export_model(run, tmp_path / "model", **kwargs) raises `error` in one line naming every fragment,
    and leaves no model folder (nor a temporary one) behind. Returns the message."""
    with pytest.raises(error) as caught:
        export_model(run, tmp_path / "model", log=quiet, **kwargs)
    message = _one_line(caught.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    _no_leftovers(tmp_path, "model")
    return message


# ---------------------------------------------------------------- the exported graphs


def test_model_folder_contract(edge_model, edge_run):
    manifest, out, _ = edge_model
    names = {"sketch.onnx", "voxel.onnx", "sketch.fp16.onnx", "voxel.fp16.onnx", "plan.json", "model.json"}
    assert {p.name for p in out.iterdir()} == names
    assert manifest["format"] == "recon-model" and manifest["format_version"] == 1
    assert set(manifest["files"]) == names - {"model.json"}
    assert verify_model_dir(out) == json.loads((out / "model.json").read_text()) == manifest
    umask = os.umask(0o022)
    os.umask(umask)
    # Readable by other users (not mkdtemp/mkstemp's 0700/0600): 0755 and 0644 under the usual umask 022.
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {name: 0o666 & ~umask for name in names}
    assert manifest["recipe"] == {"epochs": {"sketch": 4}, "preset": "edge"}
    assert manifest["iou"] == {"mean_iou": 0.123}
    assert json.loads((out / "plan.json").read_text()) == manifest["plan"]
    preset = get_preset("edge")
    s, r = preset.image_size, preset.voxel_res
    channels = build_sketch_net(preset).encoder.channels  # features: the two deepest maps, averaged
    expected = {"sketch.onnx": ({"image": ["batch", 3, s, s]},
                                {"normals": ["batch", 3, s, s], "depth": ["batch", 1, s, s],
                                 "silhouette": ["batch", 1, s, s], "features": ["batch", channels[4] + channels[3]]}),
                "voxel.onnx": ({"sketch": ["batch", 5, s, s]}, {"occupancy": ["batch", r, r, r]})}
    for name, (inputs, outputs) in expected.items():
        model = onnx.load(str(out / name))
        for values, want in ((model.graph.input, inputs), (model.graph.output, outputs)):
            got = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
            assert got == want
            assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in values)
        assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
        ops = {n.op_type for n in model.graph.node}
        assert "BatchNormalization" not in ops and "Sigmoid" in ops
        assert all(t.data_location == TensorProto.DEFAULT for t in model.graph.initializer)  # single file
        for node in model.graph.node:
            attrs = _attrs(node)
            assert attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
            pads = list(attrs.get("pads", []))
            assert pads[: len(pads) // 2] == pads[len(pads) // 2:], (node.name, pads)
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
        assert errors(lint_model(model)) == []
    # The paper's up-sampling layer keeps output_padding 1 with pads 2: TensorRT folds it into post-padding.
    deconvs = [_attrs(n) for n in onnx.load(str(out / "sketch.onnx")).graph.node if n.op_type == "ConvTranspose"]
    assert deconvs and all(a["output_padding"] == [1, 1] and a["pads"] == [2, 2, 2, 2] for a in deconvs)


def test_metadata_round_trip(edge_model, edge_run):
    manifest, out, _ = edge_model
    files = ("sketch.onnx", "voxel.onnx", "sketch.fp16.onnx", "voxel.fp16.onnx")
    metadata = [read_metadata(out / name) for name in files]
    assert all(m == metadata[0] for m in metadata)  # identical in every file
    meta = metadata[0]
    assert tuple(meta) == METADATA_KEYS and meta == manifest["metadata"]
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["recon.format_version"] == "1" and meta["recon.preset"] == "edge"
    assert int(meta["recon.image_size"]) == 128 and int(meta["recon.voxel_res"]) == 32
    assert meta["recon.channel_order"] == "RGB" and meta["recon.background"] == "white"
    assert json.loads(meta["recon.mean"]) == list(IMAGE_MEAN) and json.loads(meta["recon.std"]) == list(IMAGE_STD)
    assert float(meta["recon.framing_fill"]) == DEFAULT_FILL
    assert float(meta["recon.threshold"]) == DEFAULT_THRESHOLD
    assert set(json.loads(meta["recon.outputs"])) == {"normals", "depth", "silhouette", "features", "occupancy"}
    assert meta["recon.data_fingerprint"] == "0123456789abcdef"
    assert meta["recon.version"] == __import__("recon").__version__
    assert meta["recon.git_commit"] and meta["recon.export_time"].endswith("+00:00")
    stages = json.loads(meta["recon.stage_weights"])
    assert stages["sketch"]["file"] == "sketch.pt" and stages["voxel"]["file"] == "joint.pt"
    assert stages["voxel"]["epoch"] == 4
    assert stages["voxel"]["sha256"] == sha256_file(edge_run / "joint.pt")


def test_parity_onnxruntime_matches_pytorch(edge_model):
    manifest, _, lines = edge_model
    parity = manifest["parity"]
    assert parity["passed"] and parity["batch"] == 2
    assert set(parity["outputs"]) == {"normals", "depth", "silhouette", "features", "occupancy"}
    for name, figures in parity["outputs"].items():
        assert figures["passed"]
        assert figures.get("conditioned_max_abs", figures["max_abs"]) <= FP32_ATOL, name
    for name in ("depth", "silhouette", "occupancy"):
        assert parity["outputs"][name]["max_abs"] <= FP32_ATOL
    assert parity["voxel_iou_agreement"] >= 0.999
    # a check that passed is one line with the figures; the per-output report is for failures
    parity_lines = [line for line in lines if "parity" in line or "Output:" in line or "Tolerance" in line]
    assert len(parity_lines) == 1 and "matches PyTorch" in parity_lines[0], parity_lines
    assert "voxel IoU agreement 1.000000" in parity_lines[0] or "voxel IoU agreement 0.99" in parity_lines[0]


def test_parity_failure_is_one_line_with_figures():
    rng = np.random.default_rng(0)
    reference = {"occupancy": rng.random((2, 4, 4, 4)).astype(np.float32)}
    off = {"occupancy": reference["occupancy"] + np.float32(1e-3)}
    lines = []
    results = compare_outputs(reference, off, FP32_ATOL, "torch", "onnxrt", lines.append)
    assert not results["occupancy"]["passed"] and results["occupancy"]["max_abs"] == pytest.approx(1e-3, rel=1e-3)
    assert "FAILED | Output: 'occupancy'" in lines[0]
    with pytest.raises(ModelError) as caught:
        require_pass(results, "ONNX Runtime vs PyTorch", {"voxel IoU agreement": 0.5}, {"voxel IoU agreement": 0.999})
    message = _one_line(caught.value)
    assert "occupancy max abs 0.001 > 0.0001" in message and "voxel IoU agreement 0.5000 < 0.999" in message
    # A gate weight discounts ill-conditioned elements (normals where the pre-normalisation vector is short).
    weight = np.full((2, 1, 4, 4), 0.01, np.float32)
    gated = compare_outputs({"normals": np.zeros((2, 3, 4, 4), np.float32)},
                            {"normals": np.full((2, 3, 4, 4), 1e-3, np.float32)}, FP32_ATOL, log=None,
                            weights={"normals": (weight, "test")})["normals"]
    assert gated["passed"] and gated["max_abs"] == pytest.approx(1e-3) and gated["conditioned_max_abs"] < FP32_ATOL


def test_onnxruntime_dynamic_batch_and_ranges(edge_model):
    _, out, _ = edge_model
    inputs = synthetic_inputs(128, batch=3, seed=5)
    sketch = run_session(ort_session(out / "sketch.onnx"), {"image": inputs["image"]})
    voxel = run_session(ort_session(out / "voxel.onnx"), {"sketch": inputs["sketch"]})
    assert sketch["normals"].shape == (3, 3, 128, 128) and voxel["occupancy"].shape == (3, 32, 32, 32)
    assert np.allclose(np.linalg.norm(sketch["normals"], axis=1), 1.0, atol=1e-4)
    for value in (sketch["silhouette"], voxel["occupancy"]):
        assert value.min() >= 0.0 and value.max() <= 1.0


# ---------------------------------------------------------------- FP16


def test_fp16_twins(edge_model):
    manifest, out, lines = edge_model
    assert manifest["fp16"]["passed"] and manifest["fp16"]["kept"] and manifest["fp16"]["mode"] == "synthetic"
    assert manifest["fp16"]["voxel_agreement"] >= 0.99 and manifest["fp16"]["silhouette_agreement"] >= 0.99
    for name in ("sketch", "voxel"):
        full, half = out / f"{name}.onnx", out / f"{name}.fp16.onnx"
        assert half.stat().st_size < 0.6 * full.stat().st_size
        model = onnx.load(str(half))
        assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT
                   for v in list(model.graph.input) + list(model.graph.output))  # FP32 I/O
        assert any(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer)
        produced = {o: n for n in model.graph.node for o in n.output}
        for node in model.graph.node:  # sensitive ops read FP32: their inputs come through a Cast to FLOAT
            if node.op_type in ("Sigmoid", "ReduceL2", "Greater"):
                source = produced.get(node.input[0])
                assert source is not None and source.op_type == "Cast" and _attrs(source)["to"] == TensorProto.FLOAT
    assert any(line.startswith("FP16 gate") and "PASSED" in line for line in lines)


def _break_fp16(folder: Path, name: str) -> None:
    """Zero every FP16 weight of MODEL/<name>.fp16.onnx (a botched conversion)."""
    path = folder / f"{name}.fp16.onnx"
    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        if tensor.data_type == TensorProto.FLOAT16:
            array = np.zeros(tuple(tensor.dims), np.float16)
            tensor.CopyFrom(onnx.numpy_helper.from_array(array, tensor.name))
    onnx.save(model, str(path))


def test_fp16_gate_rejects_broken_twin(edge_model, tmp_path):
    _, out, _ = edge_model
    copy = tmp_path / "model"
    shutil.copytree(out, copy)
    _break_fp16(copy, "voxel")
    _break_fp16(copy, "sketch")
    paths32 = {n: copy / f"{n}.onnx" for n in ("sketch", "voxel")}
    paths16 = {n: copy / f"{n}.fp16.onnx" for n in ("sketch", "voxel")}
    figures = fp16_tools.fp16_gate(paths32, paths16, image_size=128, voxel_res=32, mean=IMAGE_MEAN, std=IMAGE_STD,
                                   threshold=DEFAULT_THRESHOLD, log=None)
    assert not figures["passed"]
    assert min(figures["voxel_agreement"], figures["silhouette_agreement"]) < 0.99
    with pytest.raises(ModelError) as caught:
        fp16_tools.require_fp16(figures)
    message = _one_line(caught.value)
    assert "accuracy gate" in message and f"{figures['voxel_agreement']:.4f}" in message
    fp16_tools.require_fp16(figures, force=True)  # --force keeps it


def test_fp16_gate_on_dataset(edge_model, dataset):
    _, out, _ = edge_model
    paths32 = {n: out / f"{n}.onnx" for n in ("sketch", "voxel")}
    paths16 = {n: out / f"{n}.fp16.onnx" for n in ("sketch", "voxel")}
    figures = fp16_tools.fp16_gate(paths32, paths16, image_size=128, voxel_res=32, mean=IMAGE_MEAN, std=IMAGE_STD,
                                   threshold=DEFAULT_THRESHOLD, data=dataset, log=None)
    assert figures["mode"] == "data" and figures["split"] == "test" and figures["samples"] == 2
    for key in ("voxel", "silhouette"):
        assert 0.0 <= figures[f"{key}_iou_fp16"] <= 1.0
        assert figures[f"{key}_iou_drop"] == pytest.approx(figures[f"{key}_iou_fp32"] - figures[f"{key}_iou_fp16"])
        assert figures[f"{key}_iou_drop"] <= fp16_tools.MAX_IOU_DROP
    assert figures["passed"]


# ---------------------------------------------------------------- memory plan


def _tiny_graph():
    """X (N,4) -> MatMul W (4x4) -> Add b (4) -> Relu -> Add with the MatMul output -> Y (N,4).

    Weights 16*4 + 4*4 = 80 bytes. Per sample every tensor is 16 bytes; live along the schedule:
    matmul X+A = 32, add_bias A+B = 32, relu A+B+C = 48, add_skip A+C+Y = 48: peak 48 (first at relu).
    """
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])
    w = onnx.numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    b = onnx.numpy_helper.from_array(np.ones(4, np.float32), "b")
    nodes = [helper.make_node("MatMul", ["X", "W"], ["A"], name="matmul"),
             helper.make_node("Add", ["A", "b"], ["B"], name="add_bias"),
             helper.make_node("Relu", ["B"], ["C"], name="relu"),
             helper.make_node("Add", ["A", "C"], ["Y"], name="add_skip")]
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=[w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_memory_plan_against_hand_numbers():
    model = _tiny_graph()
    assert weights_bytes(model) == 80 and weights_bytes(model, half=True) == 40
    assert activation_peak(model, 1) == {"bytes": 48, "node": "relu", "op": "Relu"}
    assert activation_peak(model, 7)["bytes"] == 7 * 48
    assert activation_peak(model, 3, half=True)["bytes"] == 3 * 24
    context, workspace = 1000, 100
    # need(B) = 1000 + 100 + 80 + 48 B (FP32), 1000 + 100 + 40 + 24 B (FP16)
    plan = memory_plan({"tiny": model}, vram=1660, workspace=workspace, batch=(1, 4, 16), context=context)
    assert plan["nets"]["tiny"]["weights_bytes"] == {"fp32": 80, "fp16": 40}
    assert plan["nets"]["tiny"]["activation_bytes_per_sample"] == {"fp32": 48, "fp16": 24}
    assert plan["need_bytes_batch1"] == {"fp32": 1228, "fp16": 1164}
    assert plan["max_batch"] == {"fp32": 10, "fp16": 21}  # (1660-1180)/48, (1660-1140)/24 = 21.7
    assert plan["profile"] == {"fp32": [1, 4, 10], "fp16": [1, 4, 16]}
    two = memory_plan({"a": model, "b": model}, vram=1660, workspace=workspace, batch=(1, 1, 8), context=context)
    assert two["max_batch"]["fp32"] == 4  # 1000 + 100 + 2 * 80 + 2 * 48 B <= 1660: B <= 4.17
    only_fp16 = memory_plan({"tiny": model}, vram=1227, workspace=workspace, context=context)
    assert only_fp16["max_batch"] == {"fp32": 0, "fp16": 3} and only_fp16["profile"]["fp32"] is None
    with pytest.raises(InputError) as caught:
        memory_plan({"tiny": model}, vram=1163, workspace=workspace, context=context)
    assert "smaller than batch 1 needs" in _one_line(caught.value)


def test_parse_size_and_batch():
    assert parse_size("4GiB") == 4 * GiB and parse_size("3500MiB") == 3500 * MiB
    assert parse_size("1.5GB") == 1_500_000_000 and parse_size("512M") == 512 * MiB
    for bad in ("4096", "lots", "-1GiB", "4 parsecs", "0GiB"):
        with pytest.raises(InputError):
            parse_size(bad)
    with pytest.raises(InputError):
        memory_plan({"tiny": _tiny_graph()}, vram=GiB, workspace=1, batch=(4, 2, 1))


def test_edge_plan_is_saved_and_sane(edge_model):
    manifest, _, lines = edge_model
    plan = manifest["plan"]
    assert plan["vram_bytes"] == 4 * GiB and plan["workspace_bytes"] == GiB
    for name, net in plan["nets"].items():
        assert net["weights_bytes"]["fp16"] * 2 == pytest.approx(net["weights_bytes"]["fp32"], rel=0.01)
        assert net["activation_bytes_per_sample"]["fp32"] > 4 * 128 * 128 * 4  # at least its input
    assert plan["profile"]["fp32"] == [1, 1, 8] and plan["max_batch"]["fp32"] >= 8
    assert any(line.startswith("memory plan for --vram 4.0 GiB") for line in lines)


# ---------------------------------------------------------------- TensorRT lint


def test_lint_catches_injected_nodes(edge_model):
    _, out, _ = edge_model
    model = onnx.load(str(out / "voxel.onnx"))
    model.graph.node.append(helper.make_node("Cast", ["occupancy"], ["occupancy64"], name="to_double",
                                             to=TensorProto.DOUBLE))
    model.graph.node.append(helper.make_node("FancyOp", ["occupancy64"], ["fancy"], name="custom_op",
                                             domain="com.example"))
    model.graph.node.append(helper.make_node("StringNormalizer", ["fancy"], ["text"], name="strings"))
    findings = lint_model(model)
    assert {f.node for f in errors(findings)} == {"to_double", "custom_op", "strings"}
    with pytest.raises(ModelError) as caught:
        check_lint(findings, "voxel.onnx")
    message = _one_line(caught.value)
    assert all(name in message for name in ("to_double", "custom_op", "strings"))


def test_lint_rules_for_pads_opset_and_io():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, ["N", 2, 8, 8])
    w = onnx.numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w"], ["a"], name="folded", pads=[2, 2, 2, 2], output_padding=[1, 1],
                         strides=[2, 2]),
        helper.make_node("ConvTranspose", ["a", "w"], ["b"], name="unfolded", pads=[0, 0, 0, 0],
                         output_padding=[1, 1], strides=[2, 2]),
        helper.make_node("Conv", ["b", "w"], ["c"], name="same", auto_pad="SAME_UPPER"),
        helper.make_node("Conv", ["c", "w"], ["d"], name="negative", pads=[-1, -1, -1, -1]),
        helper.make_node("Cast", ["d"], ["y"], name="to_int64", to=TensorProto.INT64),
    ]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=[w]),
                              opset_imports=[helper.make_opsetid("", 18)])
    findings = {(f.node, f.severity) for f in lint_model(model)}
    assert ("unfolded", "warning") in findings and not any(node == "folded" for node, _ in findings)
    assert {("same", "error"), ("negative", "error"), ("(graph)", "error"), ("y", "error")} <= findings


# ---------------------------------------------------------------- model.json and TensorRT engines without a GPU
# (verify_model_dir and the engine sidecar check live in recon.runtime: tests/test_runtime_model.py and
# tests/test_runtime_backends.py)


def test_export_writers_import_no_torch():
    assert modules_loaded_by("import recon.export.manifest, recon.export.tensorrt", ("torch", "onnx", "tensorrt")) == []


def test_engine_without_tensorrt_is_one_line(edge_run, tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here: the missing-TensorRT message cannot be shown")
    except ImportError:
        pass
    _refused(InputError, edge_run, tmp_path, "TensorRT is not installed", "pip install tensorrt", engine=True)


# ---------------------------------------------------------------- bad input: one line, no model folder


def test_missing_run_folder(tmp_path):
    _refused(InputError, tmp_path / "no_run", tmp_path, "run folder not found")


def test_missing_and_corrupt_checkpoints(edge_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(edge_run / "sketch.pt", run / "sketch.pt")
    _refused(ModelError, run, tmp_path, "no joint.pt or voxel.pt")
    (run / "joint.pt").write_bytes((edge_run / "joint.pt").read_bytes()[:5000])  # truncated
    _refused(ModelError, run, tmp_path, "joint.pt: corrupt")
    (run / "sketch.pt").write_bytes(b"not a checkpoint at all")
    _refused(ModelError, run, tmp_path, "sketch.pt: corrupt")


def test_checkpoints_of_two_presets(edge_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    torch.manual_seed(0)
    paper = get_preset("paper")
    save_net(run / "sketch.pt", "sketch", "sketch", build_sketch_net(paper), paper)
    shutil.copy(edge_run / "joint.pt", run / "joint.pt")
    _refused(ModelError, run, tmp_path, "joint.pt", "'edge'", "'paper'")


def test_weights_that_do_not_fit_the_preset(edge_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(edge_run, run)
    state = torch.load(run / "joint.pt", weights_only=True)
    state["nets"]["voxel"] = {k: v for k, v in state["nets"]["voxel"].items() if not k.startswith("fc.")}
    save_checkpoint(run / "joint.pt", state)
    _refused(ModelError, run, tmp_path, "weights do not fit the 'edge' preset's voxel net")


def test_unwritable_output(edge_run, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    with pytest.raises(InputError) as caught:
        export_model(edge_run, blocker / "model", log=quiet)
    assert "file.txt" in _one_line(caught.value)
    with pytest.raises(InputError, match="exists and is not a folder"):
        export_model(edge_run, blocker, log=quiet)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a model folder"):
        export_model(edge_run, busy, log=quiet)
    assert (busy / "notes.txt").read_text() == "mine"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(InputError) as caught:
                export_model(edge_run, locked / "model", log=quiet)
            assert "not writable" in _one_line(caught.value)
        finally:
            locked.chmod(0o700)


def test_vram_too_small_and_bad_arguments(edge_run, tmp_path):
    # 300 MiB context + 1 GiB workspace leave nothing of 1 GiB
    _refused(InputError, edge_run, tmp_path, "smaller than batch 1 needs", vram="1GiB")
    for kwargs in ({"fp16": "maybe"}, {"batch": (4, 2, 1)}, {"batch": (1, 2)}, {"opset": 18}, {"vram": "4096"},
                   {"workspace": "lots"}, {"data": tmp_path / "no_data"}):
        _refused(InputError, edge_run, tmp_path, **kwargs)


def test_voxel_fallback_and_replacing_a_model_folder(edge_model, tmp_path):
    _, exported, _ = edge_model
    run = make_run(tmp_path / "run", voxel_stage="voxel", seed=1)
    loaded = load_run(run)
    assert loaded["voxel_stage"] == "voxel" and loaded["paths"]["voxel"].name == "voxel.pt"
    out = tmp_path / "model"
    shutil.copytree(exported, out)  # an older model folder: replaced as a whole
    manifest = export_model(run, out, batch=(1, 1, 1), log=quiet)
    assert not (out / "sketch.fp16.onnx").exists()
    assert json.loads(read_metadata(out / "voxel.onnx")["recon.stage_weights"])["voxel"]["file"] == "voxel.pt"
    assert manifest["parity"]["batch"] == 1 and manifest["plan"]["profile"]["fp32"] == [1, 1, 1]
    verify_model_dir(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "run"]


# ---------------------------------------------------------------- CLI


def test_cli_help_imports_no_torch():
    code = ("import sys, typer; from recon.cli.export_cmd import export; app = typer.Typer(); app.command()(export)\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'onnx' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for option in ("--weights", "--out", "--fp16", "--engine", "--vram", "--workspace", "--batch", "--data",
                   "--force", "--opset"):
        assert option in done.stdout


def test_cli_reports_bad_batch(tmp_path):
    import typer
    from typer.testing import CliRunner

    from recon.cli.export_cmd import export

    app = typer.Typer()
    app.command()(export)
    result = CliRunner().invoke(app, ["--weights", str(tmp_path), "--out", str(tmp_path / "m"), "--batch", "1,x,8"])
    assert isinstance(result.exception, ReconError) and "--batch" in str(result.exception)


# ---------------------------------------------------------------- the paper preset (batch 1)


@pytest.mark.slow
def test_paper_preset_exports_at_batch_one(tmp_path):
    run = make_run(tmp_path / "run", "paper", calibrate=False)  # BatchNorm at its init statistics: cheaper
    manifest = export_model(run, tmp_path / "model", batch=(1, 1, 1), log=quiet)
    out = tmp_path / "model"
    assert manifest["metadata"]["recon.preset"] == "paper"
    assert manifest["metadata"]["recon.image_size"] == "256" and manifest["metadata"]["recon.voxel_res"] == "128"
    assert manifest["parity"]["passed"] and manifest["parity"]["batch"] == 1
    assert manifest["plan"]["profile"]["fp32"] == [1, 1, 1]
    assert manifest["plan"]["nets"]["voxel"]["weights_bytes"]["fp32"] > 250 * MiB
    assert manifest["files"]["voxel.onnx"]["bytes"] < 2 * GiB  # single file, under protobuf's limit
    verify_model_dir(out)


def test_chosen_threshold_travels_to_the_runtime(edge_run, tmp_path):
    from recon.runtime.model import load_model_dir

    export_model(edge_run, tmp_path / "model", threshold=0.25, log=None)
    assert float(read_metadata(tmp_path / "model" / "voxel.onnx")["recon.threshold"]) == 0.25
    assert load_model_dir(tmp_path / "model").threshold == 0.25
    with pytest.raises(InputError, match="--threshold"):
        export_model(edge_run, tmp_path / "other", threshold=1.5, log=None)
    assert not (tmp_path / "other").exists()
