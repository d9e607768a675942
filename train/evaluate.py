"""Evaluation in the paper's layout: voxel IoU per category over trials (Table 1), variants (Table 2).

A predictor maps a batch of framed RGB images (B, S, S, 3) uint8 to the 2.5D sketch and voxel
probabilities; it comes from a run folder (PyTorch) or, through the runtime, from a model folder
(ONNX), so both are measured by the same code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from recon.runtime.errors import InputError
from recon.runtime.voxels import downsample

THRESHOLDS = tuple(round(0.1 + 0.05 * i, 2) for i in range(10))  # 0.1 ... 0.55
DEFAULT_THRESHOLD = 0.4

# variant -> (sketch stage or None, voxel stage): Table 2's rows.
VARIANTS = {
    "full": ("sketch", "joint"),  # the paper's method: 2.5D sketch + GAN-refined voxel net
    "no-refine": ("sketch", "voxel"),  # MarrNet-like: 2.5D sketch, no shape prior
    "direct": (None, "direct"),  # TL-network / 3D-R2N2-like: RGB straight to voxels
}

Predictor = Callable[[np.ndarray], dict]  # (B,S,S,3) uint8 -> {"voxels": (B,R,R,R) probs, optional sketch}


def iou_many(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-sample IoU of (B, ...) boolean grids."""
    inter = (pred & truth).reshape(len(pred), -1).sum(1)
    union = (pred | truth).reshape(len(pred), -1).sum(1)
    return inter / np.maximum(union, 1)


def pooled(grids: np.ndarray, res: int) -> np.ndarray:
    return np.stack([downsample(grid, res) for grid in grids]) if grids.shape[1] != res else grids


def sketch_errors(pred: dict, truth: dict) -> dict[str, np.ndarray]:
    """Per-sample silhouette IoU, depth mean absolute error, normal mean angular error (degrees)."""
    mask = truth["mask"]  # (B, S, S) bool
    silhouette = pred["silhouette"] > 0.5
    both = mask & silhouette
    depth_mae = np.array([np.abs(p[m] - t[m]).mean() if m.any() else np.nan
                          for p, t, m in zip(pred["depth"], truth["depth"], both)])
    cosine = np.clip((pred["normals"] * truth["normals"]).sum(-1), -1, 1)  # (B, S, S)
    angle = np.array([np.degrees(np.arccos(c[m])).mean() if m.any() else np.nan for c, m in zip(cosine, mask)])
    return {"silhouette_iou": iou_many(silhouette, mask), "depth_mae": depth_mae, "normal_angle_deg": angle}


def evaluate(predict: Predictor, data: str | Path, image_size: int, voxel_res: int, trials: int = 3,
             batch: int = 16, seed: int = 0, max_objects: int | None = None, progress=None,
             split: str = "test", threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Table 1 figures at `threshold`; split "train" is for choosing a model's threshold (never the test split)."""
    from recon.runtime.preprocess import frame_view
    from recon.train.data import load_view
    from recon.train.views import DatasetViews  # torch-free: an ONNX model folder evaluates without torch

    if trials <= 0:
        raise InputError(f"--trials must be positive, got {trials}")
    if batch <= 0:
        raise InputError(f"--batch must be positive, got {batch}")
    if not 0 < threshold < 1:
        raise InputError(f"--threshold {threshold}: must be between 0 and 1 (exclusive)")
    views = DatasetViews(data, split, image_size, voxel_res, max_objects=max_objects)
    if not views.objects:
        raise InputError(f"{data}: the {split} split is empty")
    categories = sorted({entry["category"] for entry in views.objects})
    levels = sorted(set(THRESHOLDS) | {round(float(threshold), 4)})
    trial_rows = []
    for trial in range(trials):
        rng = np.random.default_rng([seed, trial])  # trial t: one random view of every test object
        chosen = [int(rng.integers(entry["views"])) for entry in views.objects]
        scores = {t: [] for t in levels}
        scores32 = {t: [] for t in levels}
        sketch = {}
        for start in range(0, len(views.objects), batch):
            indices = range(start, min(start + batch, len(views.objects)))
            framed = [frame_view(load_view(views.root, views.objects[i]["id"], chosen[i]), image_size, views.fill)
                      for i in indices]
            out = predict(np.stack([f["rgb"] for f in framed]))
            truth = np.stack([views.voxels(i) for i in indices]).astype(bool)  # (B, R, R, R)
            for t in levels:
                pred = out["voxels"] > t
                scores[t].append(iou_many(pred, truth))
                scores32[t].append(iou_many(pooled(pred, 32), pooled(truth, 32)))
            if "silhouette" in out:
                truth_sketch = {key: np.stack([f[key] for f in framed]) for key in ("mask", "depth", "normals")}
                for key, values in sketch_errors(out, truth_sketch).items():
                    sketch.setdefault(key, []).append(values)
            if progress is not None:  # (pictures just done, pictures in all trials)
                progress(len(indices), trials * len(views.objects))
        names = [views.objects[i]["category"] for i in range(len(views.objects))]
        trial_rows.append({
            "per_threshold": {t: per_category(np.concatenate(scores[t]), names, categories) for t in levels},
            "per_threshold_32": {t: per_category(np.concatenate(scores32[t]), names, categories) for t in levels},
            "sketch": {key: round(float(np.nanmean(np.concatenate(v))), 4) for key, v in sketch.items()},
        })
    result = summarise(trial_rows, categories, voxel_res, len(views.objects), round(float(threshold), 4), split)
    result["skipped"] = views.skipped  # objects left out: missing files or an unknown category
    return result


def per_category(scores: np.ndarray, names: list[str], categories: list[str]) -> dict[str, float]:
    table = {c: float(np.mean([s for s, n in zip(scores, names) if n == c])) for c in categories}
    table["mean"] = float(np.mean([table[c] for c in categories]))  # mean over categories, as the paper
    return table


def average(rows: list[dict]) -> dict[str, float]:
    return {key: round(float(np.mean([row[key] for row in rows])), 4) for key in rows[0]}


def summarise(trial_rows: list[dict], categories: list[str], voxel_res: int, objects: int,
              threshold: float, split: str) -> dict:
    levels = list(trial_rows[0]["per_threshold"])
    per_threshold = {t: average([row["per_threshold"][t] for row in trial_rows]) for t in levels}
    per_threshold_32 = {t: average([row["per_threshold_32"][t] for row in trial_rows]) for t in levels}
    best = max(levels, key=lambda t: per_threshold[t]["mean"])
    sketch = average([row["sketch"] for row in trial_rows]) if trial_rows[0]["sketch"] else {}
    return {
        "iou": per_threshold[threshold],
        "threshold": threshold,
        "split": split,
        "resolution": voxel_res,
        "iou_32": per_threshold_32[threshold],
        "best_threshold": best,
        "iou_at_best": per_threshold[best],
        "per_threshold": {str(t): v for t, v in per_threshold.items()},
        "per_threshold_32": {str(t): v for t, v in per_threshold_32.items()},
        "trials": [{key: round(v, 4) for key, v in row["per_threshold"][threshold].items()}
                   for row in trial_rows],
        "sketch": sketch,
        "categories": categories,
        "objects": objects,
    }


def table1(result: dict) -> str:
    """Markdown in the paper's Table 1 layout: trials as rows, their average last."""
    columns = result["categories"] + ["mean"]
    lines = ["| trial | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for index, row in enumerate(result["trials"], 1):
        lines.append(f"| {index} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    lines.append("| average | " + " | ".join(f"{result['iou'][c]:.3f}" for c in columns) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- predictors


def load_predictor(model: str | Path, variant: str = "full", device: str = "cpu") -> tuple[Predictor, int, int, float]:
    """(predict, image size, voxel resolution, default threshold) for a model folder (has model.json)
    or a run folder (threshold DEFAULT_THRESHOLD)."""
    if (Path(model) / "model.json").is_file():
        if variant != "full":
            raise InputError(f"{model}: a model folder holds one chain; --variant {variant} needs a run folder")
        return onnx_predictor(model, device)
    predict, preset = torch_predictor(model, variant)
    return predict, preset.image_size, preset.voxel_res, DEFAULT_THRESHOLD


def onnx_predictor(model_dir: str | Path, device: str = "cpu") -> tuple[Predictor, int, int, float]:
    """The exported networks through the runtime's own runners: what users deploy, measured."""
    from recon.runtime.pipeline import Reconstructor
    from recon.runtime.preprocess import normalize_image

    reconstructor = Reconstructor(model_dir, device=device)
    info = reconstructor.model

    def predict(rgb: np.ndarray) -> dict:
        sketch = reconstructor.runners["sketch"].infer({"image": normalize_image(rgb, info.mean, info.std)})
        stacked = np.concatenate([sketch["normals"], sketch["depth"], sketch["silhouette"]], axis=1)  # (B, 5, S, S)
        voxels = reconstructor.runners["voxel"].infer({"sketch": stacked.astype(np.float32)})["occupancy"]
        return {"voxels": voxels, "silhouette": sketch["silhouette"][:, 0], "depth": sketch["depth"][:, 0],
                "normals": sketch["normals"].transpose(0, 2, 3, 1)}

    return predict, info.image_size, info.voxel_res, info.threshold



def torch_predictor(run: str | Path, variant: str = "full") -> tuple[Predictor, object]:
    import torch

    from recon.train.checkpoint import checkpoint_path, checkpoint_preset, load_checkpoint
    from recon.train.loop import load_net, normalize

    if variant not in VARIANTS:
        raise InputError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    sketch_stage, voxel_stage = VARIANTS[variant]
    preset = checkpoint_preset(load_checkpoint(checkpoint_path(run, voxel_stage)))
    voxel_net = load_net(run, voxel_stage, "direct" if voxel_stage == "direct" else "voxel", preset)
    sketch_net = load_net(run, sketch_stage, "sketch", preset) if sketch_stage else None

    @torch.no_grad()
    def predict(rgb: np.ndarray) -> dict:
        images = normalize(torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255)  # (B, 3, S, S)
        if sketch_net is None:
            return {"voxels": torch.sigmoid(voxel_net(images)).numpy()}
        sketch = sketch_net(images)
        silhouette = torch.sigmoid(sketch["silhouette_logits"])
        stacked = torch.cat([sketch["normals"], sketch["depth"], silhouette], dim=1)  # (B, 5, S, S)
        return {"voxels": torch.sigmoid(voxel_net(stacked)).numpy(),
                "silhouette": silhouette[:, 0].numpy(), "depth": sketch["depth"][:, 0].numpy(),
                "normals": sketch["normals"].permute(0, 2, 3, 1).numpy()}

    return predict, preset
