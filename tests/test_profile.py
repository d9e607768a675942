"""`recon-cli profile` on the shipped model: the JSON report, the per-layer profile, the FLOP estimates
of a hand-built graph, and usage errors."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from recon.runtime.errors import InputError
from recon.runtime.profile import STAGE_ROWS, TARGET_GPUS, graph_costs, latency_stats, parse_batches

from cli_runner import assert_one_line_error, modules_loaded_by, run_cli

def run_profile(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_cli("profile", *args, timeout=timeout)


STAT_KEYS = ("min_ms", "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("profile") / "profile.json"
    result = run_profile("--device", "cpu", "--batch", "1,2", "--iterations", "3", "--warmup", "1",
                         "--threads", "1", "--json", out, "--per-layer")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text()), result.stdout


def test_report_has_every_field(report):
    data, _ = report
    assert data["device"] == "cpu" and data["provider"] == "CPUExecutionProvider"
    assert set(data["batches"]) == {"1", "2"}
    assert data["host_peak_mb"] > 10
    for batch, entry in data["batches"].items():
        assert set(entry["stages"]) == set(STAGE_ROWS)
        for stage, stats in entry["stages"].items():
            values = [stats[key] for key in STAT_KEYS]
            assert values[0] > 0, (batch, stage, stats)
            # min <= median <= p90 <= p95 <= p99 <= max, and the mean within [min, max]
            ordered = [stats["min_ms"], stats["median_ms"], stats["p90_ms"], stats["p95_ms"], stats["p99_ms"],
                       stats["max_ms"]]
            assert ordered == sorted(ordered), (batch, stage, stats)
            assert stats["min_ms"] <= stats["mean_ms"] <= stats["max_ms"]
            # warm-up runs excluded; each timed run covers the same 2 pictures, `batch` per call
            assert stats["samples"] == 3 * (2 // int(batch))
        end = entry["stages"]["end_to_end"]
        expected = int(batch) * 1000.0 / end["mean_ms"]
        assert entry["throughput_ips"] == pytest.approx(expected, rel=0.2)
        # the stages happen inside the end-to-end call
        parts = sum(entry["stages"][s]["mean_ms"] for s in STAGE_ROWS[:-1])
        assert parts <= end["mean_ms"] * 1.05
        assert entry["failed"] == 0


def test_estimates_are_labelled_and_complete(report):
    data, stdout = report
    estimates = data["estimates"]
    assert "not measured" in estimates["label"]
    for net in ("sketch", "voxel"):
        cost = estimates["nets"][net]
        assert cost["flops_per_sample"] > 1e6 and cost["weight_bytes"] > 1e5 and cost["activation_bytes_per_sample"] > 0
        assert cost["unknown_shapes"] == []
    assert set(estimates["devices"]) == set(TARGET_GPUS)
    for entry in estimates["devices"].values():
        assert entry["spec"]["source"] == "vendor spec sheet"
        one, two = entry["batches"]["1"], entry["batches"]["2"]
        assert 0 < one["networks_fp32_ms"] < two["networks_fp32_ms"]
    assert "estimate (lower bound from spec sheets), not measured" in " ".join(stdout.split())


def test_per_layer_lists_real_op_types(report):
    data, stdout = report
    for net in ("sketch", "voxel"):
        layers = data["per_layer"][net]
        ops = [row["op_type"] for row in layers["by_op"]]
        assert "Conv" in ops and len(layers["by_op"]) <= 10 and len(layers["by_node"]) <= 10
        assert layers["total_ms"] > 0
        assert sum(row["share"] for row in layers["by_op"]) <= 1.0 + 1e-9
    assert "Resize" in stdout  # edge2's up-sampling (the shipped model has no ConvTranspose)


def _tiny_graph():
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.random((4, 3, 3, 3), dtype=np.float32), "w_conv"),
             numpy_helper.from_array(rng.random((4, 2, 2, 2), dtype=np.float32), "w_deconv"),
             numpy_helper.from_array(rng.random((512, 10), dtype=np.float32), "w_mm"),
             numpy_helper.from_array(rng.random((10, 6), dtype=np.float32), "w_gemm")]
    nodes = [helper.make_node("Conv", ["x", "w_conv"], ["c"], pads=[1, 1, 1, 1], name="conv"),  # (B,4,8,8)
             helper.make_node("ConvTranspose", ["c", "w_deconv"], ["d"], strides=[2, 2], name="deconv"),  # (B,2,16,16)
             helper.make_node("Flatten", ["d"], ["f"], axis=1),  # (B, 512)
             helper.make_node("MatMul", ["f", "w_mm"], ["m"], name="matmul"),  # (B, 10)
             helper.make_node("Gemm", ["m", "w_gemm"], ["y"], name="gemm")]  # (B, 6)
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_flops_of_a_hand_built_graph():
    model = _tiny_graph()
    conv = 4 * 8 * 8 * (3 * 3 * 3)  # output elements x (Cin x kh x kw) MACs
    deconv = 4 * 8 * 8 * (2 * 2 * 2)  # input elements x (Cout x kh x kw) MACs
    matmul = 512 * 10
    gemm = 10 * 6
    for batch in (1, 3):
        costs = graph_costs(model, batch)
        assert costs["flops"] == batch * 2 * (conv + deconv + matmul + gemm)
        assert costs["unknown_shapes"] == []
    assert costs["weight_bytes"] == 4 * (4 * 3 * 9 + 4 * 2 * 4 + 512 * 10 + 10 * 6)
    # activations at batch 1: x read (192), c written+read (256 x 2), d written+read (512 x 2),
    # f written+read (512 x 2), m written+read (10 x 2), y written (6); float32
    assert graph_costs(model, 1)["activation_bytes"] == 4 * (192 + 2 * 256 + 2 * 512 + 2 * 512 + 2 * 10 + 6)


def test_parse_batches_and_stats():
    assert parse_batches("1, 2,4,8,4") == [1, 2, 4, 8]
    for bad in ("0", "a", "1,-2", "", ",", "1.5"):
        with pytest.raises(InputError, match="--batch"):
            parse_batches(bad)
    stats = latency_stats([5.0, 1.0, 3.0, 100.0], images=2)
    assert stats["min_ms"] == 1.0 and stats["max_ms"] == 100.0 and stats["median_ms"] == 4.0
    assert stats["throughput_ips"] == pytest.approx(2000.0 / stats["mean_ms"])


def test_missing_model_folder(tmp_path):
    result = run_profile("--model", tmp_path / "nope", "--batch", "1", "--iterations", "1")
    assert result.returncode == 2
    assert_one_line_error(result, "nope")
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


def test_not_a_model_folder(tmp_path):
    result = run_profile("--model", tmp_path, "--batch", "1", "--iterations", "1")
    assert result.returncode == 2
    assert_one_line_error(result, "not a model folder")


def test_missing_weights_folder_is_refused_before_measuring(tmp_path):
    result = run_profile("--batch", "1", "--iterations", "1", "--compare", "--weights", tmp_path / "nope")
    assert_one_line_error(result, "--weights", "no such run or model folder")
    assert "measured" not in result.stdout  # refused before any timing ran


def test_json_folder_missing(tmp_path):
    result = run_profile("--batch", "1", "--iterations", "1", "--json", tmp_path / "no" / "p.json")
    assert result.returncode == 2
    assert_one_line_error(result, "--json")


def test_compare_cpu_against_other_providers(tmp_path):
    out = tmp_path / "p.json"
    result = run_profile("--device", "cpu", "--batch", "1", "--iterations", "2", "--warmup", "0", "--threads", "1",
                         "--compare", "--json", out)
    assert result.returncode == 0, result.stdout + result.stderr
    compare = json.loads(out.read_text())["compare"]
    assert compare["providers"][0] == "CPUExecutionProvider"
    for net in ("sketch", "voxel"):
        assert compare["nets"][net]["CPUExecutionProvider"]["median_ms"] > 0
    if len(compare["providers"]) == 1:
        assert any("only CPU" in note for note in compare["notes"])


@pytest.mark.parametrize("batch", ["0", "x,y", "1,,-4"])
def test_bad_batch(batch):
    result = run_profile("--batch", batch, "--iterations", "1")
    assert result.returncode == 2
    assert_one_line_error(result, "--batch")


def test_command_module_imports_no_runtime():
    assert modules_loaded_by("import recon.cli.profile_cmd", ("onnxruntime", "numpy", "onnx", "torch", "rich")) == []


def test_per_layer_profile_of_a_model_with_a_free_picture_side(tmp_path):
    """edge2's sketch graph takes any picture side: the profiler's random inputs use the model's side
    (a side of 1 made its Concat fail)."""
    from conftest import make_run
    from recon.export.onnx_export import export_model
    from recon.runtime.profile import profile_layers

    export_model(make_run(tmp_path / "run", "edge2"), tmp_path / "model", log=None)
    layers = profile_layers(tmp_path / "model", device="cpu", batch=1, iterations=1, warmup=0, threads=1)
    assert set(layers) == {"sketch", "voxel"} and all(summary["total_ms"] > 0 for summary in layers.values())


def test_sgemm_peak_names_the_kernels_openblas_chose():
    """The peak is numpy's BLAS, not the CPU's: OpenBLAS running AVX2 kernels on a full-width AVX-512 CPU
    it does not know measures half that CPU's FP32 peak, so the report says which kernels ran."""
    from recon.runtime.speed import sgemm_peak

    peak = sgemm_peak(sizes=(64,), repeats=1)
    assert peak["gflops"] > 0
    if "openblas" in peak["library"].lower():
        assert peak["library"].endswith(" kernels") and len(peak["library"].split(", ")[-1]) > len(" kernels")
