"""FP16 twins of the exported nets and the accuracy gate they must pass.

Conversion: onnxruntime.transformers.float16 with keep_io_types (inputs and outputs stay FP32, so the
runtime feeds both twins the same arrays); weights and most activations become FP16. Ops that are
sensitive to FP16 range/rounding stay FP32 behind Casts: normalisation and reductions (the normals'
L2 norm, global average pooling), the final sigmoids, divisions/clips and the comparison that masks
the background (a silhouette of 0.5004 rounded to 0.5 would flip a pixel).

Gate: with a dataset folder, the FP16 chain's voxel IoU (against ground truth, at the default
threshold) and silhouette IoU (against the true mask) may each drop at most MAX_IOU_DROP below the FP32
chain's. Without data: on a fixed synthetic batch, FP16 and FP32 must agree to IoU >= 1 - MAX_IOU_DROP
(silhouette at 0.5, occupancy at the default threshold).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

import numpy as np

from recon.export.parity import compare_outputs, iou_agreement, ort_session, run_session, synthetic_inputs
from recon.runtime.errors import InputError, ModelError
from recon.runtime.voxels import iou

MAX_IOU_DROP = 0.01
MAX_GATE_SAMPLES = 64  # views of the dataset the gate runs (spread over the split)
SILHOUETTE_THRESHOLD = 0.5
SENSITIVE_OPS = [
    "ReduceL2", "ReduceL1", "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceLogSumExp", "ReduceProd",
    "GlobalAveragePool", "LpNormalization", "BatchNormalization", "InstanceNormalization",
    "LayerNormalization", "Softmax", "LogSoftmax", "Sigmoid", "Div", "Clip", "Sqrt", "Pow", "Exp", "Log",
    "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal",
]


def convert_fp16(model):
    """An FP16 copy of `model` (onnx.ModelProto) with FP32 inputs/outputs and SENSITIVE_OPS in FP32."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    source = onnx.ModelProto()
    source.CopyFrom(model)
    converted = convert_float_to_float16(source, keep_io_types=True,
                                         op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | set(SENSITIVE_OPS)))
    topological_sort(converted.graph)
    del converted.metadata_props[:]
    converted.metadata_props.extend(model.metadata_props)
    converted.producer_name, converted.producer_version = model.producer_name, model.producer_version
    return converted


def topological_sort(graph) -> None:
    """Reorder graph.node so every node comes after the producers of its inputs (stable otherwise);
    the converter appends its input Casts at the end, which the ONNX checker refuses."""
    available = {t.name for t in graph.initializer} | {v.name for v in graph.input} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ModelError(f"graph {graph.name}: cycle or missing input near node {rest[0].name!r}")
        pending = rest
    copies = [type(node)() for node in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def _chain(sketch, voxel, images: np.ndarray, batch: int = 8) -> Dict[str, np.ndarray]:
    """image (N,3,S,S) -> sketch outputs and occupancy through two ORT sessions, in chunks."""
    parts = {"normals": [], "depth": [], "silhouette": [], "occupancy": []}
    for start in range(0, len(images), batch):
        out = run_session(sketch, {"image": images[start:start + batch]})
        stacked = np.concatenate([out["normals"], out["depth"], out["silhouette"]], axis=1)
        out["occupancy"] = run_session(voxel, {"sketch": stacked})["occupancy"]
        for key in parts:
            parts[key].append(out[key])
    return {key: np.concatenate(value) for key, value in parts.items()}


def _dataset_batch(data: str | Path, image_size: int, voxel_res: int, mean, std, limit: int,
                   splits=("test", "train")):
    """(images normalised (N,3,S,S), masks (N,S,S) bool, voxels (N,R,R,R) bool, split) from the first
    of `splits` the dataset has views in (INT8 calibration asks for ("train",) only)."""
    from recon.train.dataset import ViewDataset

    for split in splits:
        views = ViewDataset(data, split, image_size, voxel_res)
        if len(views):
            break
    else:
        raise InputError(f"--data {data}: the dataset has no {' or '.join(splits)} views to use")
    picks = np.unique(np.linspace(0, len(views) - 1, min(limit, len(views))).round().astype(int))
    images, masks, voxels = [], [], []
    mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
    std = np.asarray(std, np.float32).reshape(3, 1, 1)
    for index in picks:
        item = views[int(index)]
        images.append((item["rgb"].numpy() - mean) / std)
        masks.append(item["mask"].numpy()[0] > 0.5)
        voxels.append(item["voxels"].numpy() > 0.5)
    return np.stack(images).astype(np.float32), np.stack(masks), np.stack(voxels), split


def fp16_gate(fp32: Dict[str, str | Path], fp16: Dict[str, str | Path], *, image_size: int, voxel_res: int,
              mean, std, threshold: float, data: str | Path | None = None, max_samples: int = MAX_GATE_SAMPLES,
              log: Callable[[str], None] | None = print, max_drop: float = MAX_IOU_DROP, label: str = "fp16",
              open_candidate: Callable = ort_session) -> dict:
    """Measure a reduced-precision chain against FP32 (paths: {"sketch": ..., "voxel": ...}); return the
    figures with "passed". Does not raise on a failed gate (see `require_fp16`).

    The same gate serves FP16 twins, INT8 twins (label "int8", recon.export.int8) and OpenVINO BF16
    (label "bf16"): `open_candidate(path)` gives what runs the candidate (default: an ONNX Runtime
    CPU session; a runtime runner works too), `max_drop` the allowed IoU drop."""
    s32, v32 = ort_session(fp32["sketch"]), ort_session(fp32["voxel"])
    s16, v16 = open_candidate(fp16["sketch"]), open_candidate(fp16["voxel"])
    name = label.upper()
    if data is not None:
        images, masks, voxels, split = _dataset_batch(data, image_size, voxel_res, mean, std, max_samples)
        a, b = _chain(s32, v32, images), _chain(s16, v16, images)
        figures = {"mode": "data", "data": str(data), "split": split, "samples": int(len(images)),
                   "threshold": threshold, "label": label, "max_drop": max_drop}
        for key, truth, level in (("silhouette", masks, SILHOUETTE_THRESHOLD), ("voxel", voxels, threshold)):
            out = "silhouette" if key == "silhouette" else "occupancy"
            if key == "silhouette":
                full, half = a[out][:, 0], b[out][:, 0]
            else:
                full, half = a[out], b[out]
            score32 = float(np.mean([iou(p > level, t) for p, t in zip(full, truth)]))
            score16 = float(np.mean([iou(p > level, t) for p, t in zip(half, truth)]))
            figures[f"{key}_iou_fp32"], figures[f"{key}_iou_{label}"] = score32, score16
            figures[f"{key}_iou_drop"] = score32 - score16
            figures[f"{key}_agreement"] = iou_agreement(full, half, level)
        figures["passed"] = bool(figures["voxel_iou_drop"] <= max_drop and figures["silhouette_iou_drop"] <= max_drop)
        if log:
            log(f"{name} gate on {figures['samples']} {split} views of {data}: voxel IoU "
                f"{figures['voxel_iou_fp32']:.4f} FP32 -> {figures[f'voxel_iou_{label}']:.4f} {name} (drop "
                f"{figures['voxel_iou_drop']:+.4f}), silhouette IoU {figures['silhouette_iou_fp32']:.4f} -> "
                f"{figures[f'silhouette_iou_{label}']:.4f} (drop {figures['silhouette_iou_drop']:+.4f}); allowed "
                f"drop {max_drop}: " + ("PASSED" if figures["passed"] else "FAILED"))
        return figures
    inputs = synthetic_inputs(image_size, batch=4, seed=1)
    sketch32, sketch16 = run_session(s32, {"image": inputs["image"]}), run_session(s16, {"image": inputs["image"]})
    voxel32 = run_session(v32, {"sketch": inputs["sketch"]})
    voxel16 = run_session(v16, {"sketch": inputs["sketch"]})
    # Informational error figures, not gated and so not printed output by output (an elementwise "FAILED"
    # would alarm for a gate that passed): FP16 error is expected, its effect on the masks is what counts.
    errors = compare_outputs({**sketch32, **voxel32}, {**sketch16, **voxel16}, atol=1e-2, reference_name="fp32",
                             actual_name=label, log=None)
    figures = {
        "mode": "synthetic", "samples": 4, "threshold": threshold, "label": label, "max_drop": max_drop,
        "silhouette_agreement": iou_agreement(sketch32["silhouette"][:, 0], sketch16["silhouette"][:, 0],
                                              SILHOUETTE_THRESHOLD),
        "voxel_agreement": iou_agreement(voxel32["occupancy"], voxel16["occupancy"], threshold),
        "max_abs": {name: r.get("max_abs") for name, r in errors.items()},
    }
    figures["passed"] = bool(figures["silhouette_agreement"] >= 1 - max_drop
                             and figures["voxel_agreement"] >= 1 - max_drop)
    if log:
        log(f"{name} gate (synthetic batch, no --data): silhouette IoU agreement "
            f"{figures['silhouette_agreement']:.4f}, voxel IoU agreement {figures['voxel_agreement']:.4f} "
            f"(need >= {1 - max_drop}): " + ("PASSED" if figures["passed"] else "FAILED")
            + "; max abs diff (not gated) " + ", ".join(f"{out} {value:.2g}" for out, value in
                                                        figures["max_abs"].items() if value is not None))
    return figures


def describe(figures: dict) -> str:
    label, max_drop = figures.get("label", "fp16"), figures.get("max_drop", MAX_IOU_DROP)
    if figures["mode"] == "data":
        return (f"voxel IoU {figures['voxel_iou_fp32']:.4f} -> {figures[f'voxel_iou_{label}']:.4f} (drop "
                f"{figures['voxel_iou_drop']:.4f}), silhouette IoU {figures['silhouette_iou_fp32']:.4f} -> "
                f"{figures[f'silhouette_iou_{label}']:.4f} (drop {figures['silhouette_iou_drop']:.4f}); "
                f"allowed drop {max_drop}")
    return (f"{label.upper()} vs FP32 IoU agreement: silhouette {figures['silhouette_agreement']:.4f}, voxel "
            f"{figures['voxel_agreement']:.4f} (need >= {1 - max_drop})")


def require_fp16(figures: dict, force: bool = False) -> None:
    """ModelError with the measured figures when the gate failed, unless `force`."""
    if not figures["passed"] and not force:
        raise ModelError(f"FP16 model fails the accuracy gate: {describe(figures)}; export without --fp16, "
                         "or pass --force to keep it anyway")
