"""OpenVINO backend: the runner against ONNX Runtime on the same files, the device table and auto,
the precision it reports, BF16 only where the CPU has it and the export gated it, export's checks."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from recon.export.parity import iou_agreement, synthetic_inputs
from recon.runtime.backends import DEVICES, OnnxRuntimeRunner, SessionFromOnnx
from recon.runtime.errors import InputError
from recon.runtime.model import load_model_dir

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                reason="openvino is not installed (pip install 'recon[openvino]'; CI installs it)")

FEEDS = {"sketch": "image", "voxel": "sketch"}


def _runners(model_dir, net: str, precision: str = "fp32"):
    from recon.runtime.openvino_backend import CompiledFromOnnx, OpenVINORunner

    path = model_dir / f"{net}.onnx"
    return (OnnxRuntimeRunner(SessionFromOnnx(path, "cpu", threads=1)),
            OpenVINORunner(CompiledFromOnnx(path, precision, threads=1)))


@pytest.mark.parametrize("net", FEEDS)
def test_runner_matches_onnxruntime(model_dir, net):
    """Same ONNX file, same inputs: OpenVINO FP32 gives ONNX Runtime's outputs (names, shapes, values)."""
    model = load_model_dir(model_dir)
    feed = {FEEDS[net]: synthetic_inputs(model.image_size, batch=2, seed=3)[FEEDS[net]]}
    reference, candidate = _runners(model_dir, net)
    with reference, candidate:
        assert candidate.inputs == reference.inputs and candidate.max_batch is None
        assert candidate.provider == "OpenVINO CPU FP32"
        expected, got = reference.infer(feed), candidate.infer(feed)
    assert list(got) == list(expected)
    for name in expected:
        assert got[name].shape == expected[name].shape and got[name].dtype == np.float32
        if name != "normals":  # unit vectors are ill-conditioned where the head's output is short
            assert np.abs(got[name] - expected[name]).max() < 1e-3, name
    if net == "voxel":
        assert iou_agreement(expected["occupancy"], got["occupancy"], model.threshold) > 0.999


def test_input_checks_are_the_shared_ones(model_dir):
    _, runner = _runners(model_dir, "sketch")
    with runner:
        size = runner.inputs["image"].shape[-1]
        with pytest.raises(InputError, match="input 'image' has dtype float64, expected float32"):
            runner.infer({"image": np.zeros((1, 3, size, size))})
        with pytest.raises(InputError, match="missing"):
            runner.infer({})


def test_bf16_runs_where_the_cpu_has_it(model_dir):
    from recon.runtime.openvino_backend import cpu_capabilities

    if "BF16" not in cpu_capabilities()["capabilities"]:
        pytest.skip("this CPU has no BF16 (OpenVINO's OPTIMIZATION_CAPABILITIES)")
    model = load_model_dir(model_dir)
    feed = {"sketch": synthetic_inputs(model.image_size, batch=2, seed=3)["sketch"]}
    reference, candidate = _runners(model_dir, "voxel", "bf16")
    with reference, candidate:
        assert candidate.provider == "OpenVINO CPU BF16"
        expected, got = reference.infer(feed)["occupancy"], candidate.infer(feed)["occupancy"]
    difference = np.abs(got - expected).max()
    assert 0 < difference < 0.2  # BF16 changes the numbers (8 mantissa bits), a little


@pytest.mark.parametrize("capabilities, gate, expected, note", [
    (["FP32", "INT8"], {"passed": True}, "fp32", ""),  # no BF16 on this CPU: nothing to say
    (["BF16", "FP32"], None, "fp32", "not measured"),  # an export without the BF16 gate
    (["BF16", "FP32"], {"passed": False, "summary": "voxel IoU drop 0.02"}, "fp32", "voxel IoU drop 0.02"),
    (["BF16", "FP32"], {"passed": True}, "bf16", ""),
])
def test_bf16_only_where_the_cpu_has_it_and_the_gate_passed(capabilities, gate, expected, note):
    from recon.runtime.openvino_backend import GATE_KEY, model_precision

    manifest = {} if gate is None else {GATE_KEY: {"bf16": gate}}
    precision, why = model_precision(manifest, capabilities)
    assert precision == expected and (note in why if note else why == "")


def test_device_openvino_and_auto_on_a_cpu(model_dir):
    from recon.runtime.openvino_backend import openvino_preferred
    from recon.runtime.pipeline import Reconstructor
    from test_runtime_pipeline import cutout

    assert "openvino" in DEVICES
    picture = cutout()
    with Reconstructor(model_dir, device="cpu", threads=1) as reconstruct:
        reference = reconstruct(picture)
    devices = ["openvino"] + (["auto"] if openvino_preferred() else [])
    for device in devices:
        with Reconstructor(model_dir, device=device, threads=1) as reconstruct:
            assert all(p.startswith("OpenVINO CPU ") for p in reconstruct.providers.values())
            result = reconstruct(picture)
        assert result.ok, result.error
        assert iou_agreement(reference.voxels[None], result.voxels[None], reconstruct.threshold) > 0.99


def test_export_checks_parity_and_gates_bf16(model_dir):
    from recon.export.parity import openvino_checks
    from recon.runtime.openvino_backend import cpu_capabilities

    model = load_model_dir(model_dir)
    figures = openvino_checks(model_dir, image_size=model.image_size, voxel_res=model.voxel_res, mean=model.mean,
                              std=model.std, threshold=model.threshold, log=None)
    assert figures["fp32_parity"]["voxel_iou_agreement"] >= 0.999
    assert max(v for k, v in figures["fp32_parity"]["max_abs"].items() if k != "normals") < 1e-3
    if "BF16" in cpu_capabilities()["capabilities"]:
        gate = figures["bf16"]
        assert gate["label"] == "bf16" and gate["mode"] == "synthetic" and isinstance(gate["passed"], bool)
        assert 0 < gate["voxel_agreement"] <= 1 and gate["summary"].startswith("BF16 vs FP32")
    else:
        assert "bf16" not in figures


def test_gate_script_records_openvino_on_an_existing_model_folder(model_dir, tmp_path):
    """scripts/gate_openvino.py: a folder exported without the OpenVINO entry gets it (FP32 parity, BF16
    where this CPU has it), the folder still verifies, and the runtime's precision follows it."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from recon.runtime.openvino_backend import cpu_capabilities, model_precision

    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    manifest = json.loads((folder / "model.json").read_text())
    manifest.pop("openvino", None)
    (folder / "model.json").write_text(json.dumps(manifest))
    assert model_precision(manifest, ["BF16"])[0] == "fp32"  # never measured: FP32 even on a BF16 CPU
    script = Path(__file__).resolve().parents[1] / "scripts" / "gate_openvino.py"
    done = subprocess.run([sys.executable, str(script), str(folder)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    written = json.loads((folder / "model.json").read_text())["openvino"]
    assert written["fp32_parity"]["voxel_iou_agreement"] >= 0.999
    assert ("bf16" in written) == ("BF16" in cpu_capabilities()["capabilities"])
    load_model_dir(folder)  # the listed files' hashes still hold
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
