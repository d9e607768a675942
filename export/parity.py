"""Comparison harness: one runtime's outputs against another's, reported the way `polygraphy run
--onnxrt --trt` reports them (per output: max abs / max rel / mean abs error, the tolerance it would
need, PASSED/FAILED), plus the voxel IoU agreement at the default threshold.

Used for ONNX Runtime vs PyTorch (export `--check`), FP16/INT8/BF16 vs FP32, OpenVINO vs ONNX Runtime
(`openvino_checks`), and later TensorRT vs ONNX Runtime.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping

import numpy as np

from recon.runtime.errors import ModelError, first_line
from recon.runtime.voxels import iou

FP32_ATOL = 1e-4  # max abs error per output, ONNX Runtime vs PyTorch
IOU_AGREEMENT = 0.999  # voxel IoU between the two runtimes' grids at the default threshold
OPENVINO_ATOL = 1e-3  # max abs error per output, OpenVINO FP32 vs ONNX Runtime (other conv kernels)


def compare_arrays(name: str, reference: np.ndarray, actual: np.ndarray, atol: float,
                   weight: np.ndarray | None = None, weight_label: str = "") -> dict:
    """Error figures of one output; `passed` when max abs error <= atol and shapes/finiteness agree.

    weight (broadcastable to the output): gate on max(|difference| x weight) instead, e.g. to discount
    elements whose value is ill-conditioned; the raw figures are reported all the same.
    """
    reference = np.asarray(reference, np.float64)
    actual = np.asarray(actual, np.float64)
    if reference.shape != actual.shape:
        return {"output": name, "shape": list(reference.shape), "actual_shape": list(actual.shape),
                "passed": False, "reason": "shape mismatch"}
    finite = bool(np.isfinite(actual).all() and np.isfinite(reference).all())
    diff = np.abs(actual - reference)
    rel = diff / np.maximum(np.abs(reference), 1e-12)
    figures = {
        "output": name,
        "shape": list(reference.shape),
        "max_abs": float(diff.max()) if diff.size else 0.0,
        "max_abs_at": [int(i) for i in np.unravel_index(int(diff.argmax()), diff.shape)] if diff.size else [],
        "max_rel": float(rel.max()) if rel.size else 0.0,
        "mean_abs": float(diff.mean()) if diff.size else 0.0,
        "atol": atol,
        "finite": finite,
    }
    gated = figures["max_abs"]
    if weight is not None and diff.size:
        gated = float((diff * np.asarray(weight, np.float64)).max())
        figures["conditioned_max_abs"], figures["condition"] = gated, weight_label
    figures["required_atol"] = gated  # the smallest abs tolerance this output passes at
    figures["passed"] = finite and gated <= atol
    return figures


def iou_agreement(reference: np.ndarray, actual: np.ndarray, threshold: float) -> float:
    """Mean per-sample IoU between two batches of probability grids thresholded at `threshold`."""
    return float(np.mean([iou(r > threshold, a > threshold) for r, a in zip(reference, actual)]))


def format_comparison(figures: dict, reference: str, actual: str) -> str:
    name = figures["output"]
    if "max_abs" not in figures:
        return (f"[I] Comparing Output: '{name}' {tuple(figures['shape'])} with {tuple(figures['actual_shape'])}\n"
                f"[E]     FAILED | Output: '{name}' | {figures['reason']}")
    status = "PASSED" if figures["passed"] else "FAILED"
    level = "I" if figures["passed"] else "E"
    return (f"[I] Comparing Output: '{name}' (shape={tuple(figures['shape'])}) | {actual} vs {reference}\n"
            f"[I]     Tolerance: [abs={figures['atol']:.1e}] | Checking elemwise error\n"
            f"[I]     Minimum Required Tolerance: [abs={figures['required_atol']:.5g}] OR "
            f"[rel={figures['max_rel']:.5g}]\n"
            f"[I]     Absolute Difference | max={figures['max_abs']:.5g} at {tuple(figures['max_abs_at'])}, "
            f"mean={figures['mean_abs']:.5g}\n"
            f"[I]     Relative Difference | max={figures['max_rel']:.5g}\n"
            + (f"[I]     Gated Difference ({figures['condition']}) | max={figures['conditioned_max_abs']:.5g}\n"
               if "conditioned_max_abs" in figures else "")
            +
            f"[{level}]     {status} | Output: '{name}' | "
            + ("Difference is within tolerance" if figures["passed"] else "Difference exceeds tolerance")
            + ("" if figures["finite"] else " (non-finite values)"))


def compare_outputs(reference: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray], atol: float,
                    reference_name: str = "reference", actual_name: str = "actual",
                    log: Callable[[str], None] | None = print,
                    weights: Mapping[str, tuple[np.ndarray, str]] | None = None) -> Dict[str, dict]:
    """Compare every output of `reference` with `actual`; return figures per output. `log` gets one line
    per output that passed, and polygraphy's full report for one that failed (figures a user acts on).

    weights: output name -> (weight array, label) to gate that output on |difference| x weight.
    """
    results = {}
    for name, ref in reference.items():
        if name not in actual:
            results[name] = {"output": name, "shape": list(np.shape(ref)), "actual_shape": [], "passed": False,
                             "reason": f"{actual_name} has no output {name!r}"}
        else:
            weight, label = (weights or {}).get(name, (None, ""))
            results[name] = compare_arrays(name, ref, actual[name], atol, weight, label)
        if log and results[name]["passed"]:
            figures = results[name]
            error = figures.get("conditioned_max_abs", figures["max_abs"])
            log(f"[I] {name}: {actual_name} vs {reference_name} max abs diff {error:.2e} "
                f"(tolerance {figures['atol']:.1e}) | PASSED")
        elif log:
            log(format_comparison(results[name], reference_name, actual_name))
    return results


def require_pass(results: Dict[str, dict], what: str, extra: Dict[str, float] | None = None,
                 minimum: Dict[str, float] | None = None) -> None:
    """ModelError with the figures when any output failed or any `extra` figure is below its `minimum`."""
    failed = [r for r in results.values() if not r["passed"]]
    low = {key: value for key, value in (extra or {}).items() if value < (minimum or {}).get(key, -np.inf)}
    if not failed and not low:
        return
    parts = []
    for r in failed:
        if "max_abs" not in r:
            parts.append(f"{r['output']}: {r['reason']}")
        else:
            error = r.get("conditioned_max_abs", r["max_abs"])
            parts.append(f"{r['output']} max abs {error:.3g} > {r['atol']:.1g} (max rel {r['max_rel']:.3g}, "
                         f"mean abs {r['mean_abs']:.3g})" + ("" if r["finite"] else " with non-finite values"))
    parts += [f"{key} {value:.4f} < {minimum[key]}" for key, value in low.items()]
    raise ModelError(f"{what}: parity check failed: " + "; ".join(parts))


def ort_session(path_or_bytes, threads: int | None = None):
    """A CPU ONNX Runtime session (full graph optimisations, as the runtime uses)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    source = str(path_or_bytes) if not isinstance(path_or_bytes, (bytes, bytearray)) else bytes(path_or_bytes)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as error:
        raise ModelError(f"ONNX Runtime cannot load {path_or_bytes if isinstance(path_or_bytes, str) else 'model'}: "
                         f"{first_line(error)}") from None


def run_session(session, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Outputs by name of an ONNX Runtime session, or of an active runtime runner (e.g. OpenVINO)."""
    if hasattr(session, "infer"):
        return session.infer(dict(feeds))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(feeds))))


def synthetic_inputs(image_size: int, batch: int = 2, seed: int = 0) -> Dict[str, np.ndarray]:
    """A fixed seeded batch for both nets: `image` (normalised-RGB-like noise) and a plausible `sketch`.

    The sketch is a sphere-ish blob per sample (unit normals facing the camera, depth offsets, a
    silhouette with hard 0/1 values plus a soft rim away from 0.5), so the voxel net's background
    masking sees a real object rather than noise balanced on its 0.5 threshold.
    """
    rng = np.random.default_rng(seed)
    s = image_size
    image = rng.standard_normal((batch, 3, s, s)).astype(np.float32)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    sketches = []
    for _ in range(batch):
        cy, cx = rng.uniform(0.4, 0.6, 2) * s
        radius = rng.uniform(0.25, 0.4) * s
        u, v = (xx - cx) / radius, (cy - yy) / radius
        r2 = u * u + v * v
        inside = r2 < 1.0
        z = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
        normals = np.stack([u, v, z]) * inside  # (3, S, S)
        depth = (-z * 0.3) * inside  # offset from the centre, nearer is negative
        silhouette = np.where(inside, rng.uniform(0.75, 1.0, (s, s)), rng.uniform(0.0, 0.25, (s, s)))
        sketches.append(np.concatenate([normals, depth[None], silhouette[None]]).astype(np.float32))
    return {"image": image, "sketch": np.stack(sketches)}


def torch_reference(model_dir, run, iterations: int = 10, threads: int | None = None) -> Dict[str, dict]:
    """Each net at batch 1 through ONNX Runtime CPU (the model folder) and PyTorch eager (the run
    folder it was exported from, or the model folder's own weights), same inputs and threads: median ms,
    their ratio, max abs difference."""
    import torch

    from recon.export.run_folder import eager_nets
    from recon.runtime.model import default_model_dir, load_model_dir
    from recon.runtime.profile import timed_ms

    model = load_model_dir(default_model_dir() if model_dir is None else model_dir)
    nets = dict(zip(("sketch", "voxel"), eager_nets(run)))
    if threads:
        torch.set_num_threads(threads)
    feeds = {name: value[:1] for name, value in synthetic_inputs(model.image_size).items()}

    def eager(net: str):
        with torch.no_grad():
            out = nets[net](torch.from_numpy(feeds["image" if net == "sketch" else "sketch"]))
        if net == "voxel":
            return [torch.sigmoid(out).numpy()]  # the exported graphs end in a sigmoid
        return [out["normals"].numpy(), out["depth"].numpy(), torch.sigmoid(out["silhouette_logits"]).numpy(),
                out["features"].numpy()]

    rows = {}
    for net in ("sketch", "voxel"):
        session = ort_session(model.onnx(net), threads)
        feed = {"image": feeds["image"]} if net == "sketch" else {"sketch": feeds["sketch"]}
        ort_ms = float(np.median(timed_ms(lambda: session.run(None, feed), iterations)))
        torch_ms = float(np.median(timed_ms(lambda: eager(net), iterations)))
        difference = max(float(np.max(np.abs(a - b))) for a, b in zip(session.run(None, feed), eager(net)))
        rows[net] = {"onnxruntime_cpu_ms": ort_ms, "pytorch_eager_ms": torch_ms,
                     "speedup": torch_ms / ort_ms, "max_abs_diff": difference}
    return rows


def openvino_checks(folder, *, image_size: int, voxel_res: int, mean, std, threshold: float, data=None,
                    log: Callable[[str], None] | None = print) -> dict | None:
    """What `--device openvino` (and auto on a CPU with openvino) will run, checked at export: OpenVINO
    FP32 against ONNX Runtime on the seeded batch (ModelError on failure, like the PyTorch parity), and
    OpenVINO BF16 through the FP16 gate (label "bf16"; recorded, never fatal: the runtime then keeps
    FP32) where the CPU has BF16. None when openvino is not installed."""
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec("openvino") is None:
        return None
    from recon.export.fp16 import describe, fp16_gate  # fp16 imports this module
    from recon.runtime.openvino_backend import CompiledFromOnnx, OpenVINORunner, cpu_capabilities

    folder = Path(folder)
    paths = {net: folder / f"{net}.onnx" for net in ("sketch", "voxel")}
    inputs = synthetic_inputs(image_size, batch=2, seed=0)
    feeds = {"sketch": {"image": inputs["image"]}, "voxel": {"sketch": inputs["sketch"]}}
    reference, actual = {}, {}
    for net, path in paths.items():
        reference.update(run_session(ort_session(path), feeds[net]))
        with OpenVINORunner(CompiledFromOnnx(path, "fp32")) as runner:
            actual.update(runner.infer(feeds[net]))
    # Gated on what the masks and depth need; normals are reported (a unit vector's direction is
    # ill-conditioned where the head's output is short, as in the PyTorch parity).
    results = compare_outputs(reference, actual, OPENVINO_ATOL, "onnxrt", "openvino", log=None)
    agreement = iou_agreement(reference["occupancy"], actual["occupancy"], threshold)
    gated = {k: v for k, v in results.items() if k != "normals"}
    require_pass(gated, "OpenVINO FP32 vs ONNX Runtime", {"voxel IoU agreement": agreement},
                 {"voxel IoU agreement": IOU_AGREEMENT})
    if log:
        log(f"OpenVINO FP32 matches ONNX Runtime on a seeded batch of 2: max abs diff "
            f"{max(r['max_abs'] for r in gated.values()):.1e} (tolerance {OPENVINO_ATOL:g}; normals "
            f"{results['normals']['max_abs']:.1e}, not gated), voxel IoU agreement {agreement:.6f}")
    figures = {"fp32_parity": {"atol": OPENVINO_ATOL, "voxel_iou_agreement": agreement,
                               "max_abs": {name: r.get("max_abs") for name, r in results.items()}}}
    if "BF16" in cpu_capabilities()["capabilities"]:
        gate = fp16_gate(paths, paths, image_size=image_size, voxel_res=voxel_res, mean=mean, std=std,
                         threshold=threshold, data=data, log=None, label="bf16",
                         open_candidate=lambda path: OpenVINORunner(CompiledFromOnnx(path, "bf16")).activate())
        figures["bf16"] = {**gate, "summary": describe(gate)}
        if log:
            log(f"OpenVINO BF16 gate: {describe(gate)}: " + ("PASSED, the runtime may run BF16" if gate["passed"]
                                                             else "FAILED, the runtime keeps FP32"))
    return figures
