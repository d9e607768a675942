"""Where the 3D stage loses IoU: the voxel net on ground-truth vs predicted 2.5D sketches, against
a nearest-neighbour retrieval of training shapes and its oracle upper bound (Tatarchenko et al.
2019, "What do single-view 3D reconstruction networks learn?").

Torch-free: the model runs through the runtime's ONNX Runtime runners on views framed as training
frames them (`recon.runtime.preprocess.frame_view`); every IoU is scored at 32^3 after max-pooling
(`recon.runtime.voxels.downsample`), predictions cut at the model's own iso level.

Retrieval: a view is described by its framed sketch (silhouette, depth offset, normals / sqrt(3),
so each of the three weighs alike; background zeroed) average-pooled to `size` x `size`; the
prediction for a test view is the voxels of the training object owning the nearest (L2) library
view. The library holds the first `views_per_object` views of every training object of every
dataset given, all categories together (the nets are not told the category either).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.runtime.errors import InputError
from recon.runtime.fileio import save_npz_atomic
from recon.runtime.preprocess import frame_view, normalize_image
from recon.runtime.voxels import downsample
from recon.train.data import load_manifest, load_view, load_voxels
from recon.train.evaluate import iou_many, pooled, sketch_errors

SCORE_RES = 32  # every IoU here is at 32^3, as the paper and issue 12 score it
LIBRARY_FORMAT = 1  # bump when the descriptor changes: old caches are then ignored

# column -> what it measures (the Markdown table's header reads these)
IOU_COLUMNS = {
    "gt_sketch": "net on GT sketch",
    "pred_sketch": "net on predicted sketch",
    "pred_gt_silhouette": "predicted normals+depth, GT silhouette",
    "retrieval_pred": "retrieval, predicted sketch",
    "retrieval_gt": "retrieval, GT sketch",
    "retrieval_oracle": "oracle retrieval",
}
SKETCH_COLUMNS = ("silhouette_iou", "depth_mae", "normal_angle_deg")


def split_objects(root: Path, split: str, per_category: int | None = None) -> list[dict]:
    """Manifest entries of one split in manifest order (as `recon-cli eval` takes them), optionally
    only `per_category` of each category, evenly spaced through it (corpus ids are sorted by mesh
    name, so the first few would all be one kind, e.g. biplanes)."""
    entries = [entry for entry in load_manifest(root)["objects"] if entry["split"] == split]
    if not entries:
        raise InputError(f"{root}: the {split} split is empty")
    if per_category is None:
        return entries
    chosen = set()
    for category in dict.fromkeys(entry["category"] for entry in entries):
        members = [index for index, entry in enumerate(entries) if entry["category"] == category]
        chosen.update(members[round(i * len(members) / per_category)] for i in range(min(per_category, len(members))))
    return [entry for index, entry in enumerate(entries) if index in chosen]


def trial_views(entries: list[dict], trials: int, seed: int) -> list[list[int]]:
    """For trial t, one random view of every object, drawn exactly as `recon-cli eval` draws them."""
    if trials <= 0:
        raise InputError(f"--trials must be positive, got {trials}")
    chosen = []
    for trial in range(trials):
        rng = np.random.default_rng([seed, trial])
        chosen.append([int(rng.integers(entry["views"])) for entry in entries])
    return chosen


def truth_grid(root: Path, object_id: str) -> np.ndarray:
    """The object's stored voxels max-pooled to SCORE_RES^3 (bool)."""
    return downsample(load_voxels(root, object_id), SCORE_RES).astype(bool)


def descriptor(normals: np.ndarray, depth: np.ndarray, silhouette: np.ndarray, size: int) -> np.ndarray:
    """(5 * size * size,) float32 retrieval key of one framed sketch (S, S, 3), (S, S), (S, S)."""
    side = silhouette.shape[0]
    if side % size:
        raise InputError(f"--descriptor {size} must divide the model's input size {side}")
    mask = silhouette > 0.5
    channels = [mask.astype(np.float32), np.where(mask, depth, 0)]
    channels += [np.where(mask, normals[..., k], 0) / np.sqrt(3) for k in range(3)]
    factor = side // size
    blocks = np.stack(channels).astype(np.float32).reshape(5, size, factor, size, factor)
    return blocks.mean(axis=(2, 4)).ravel()


@dataclass
class ShapeLibrary:
    """Training objects (ids, categories, SCORE_RES^3 voxels) and the retrieval keys of their views."""

    ids: np.ndarray  # (M,) str
    categories: np.ndarray  # (M,) str
    voxels: np.ndarray  # (M, SCORE_RES ** 3) bool
    keys: np.ndarray  # (N, D) float32, one per library view
    owner: np.ndarray  # (N,) int: index into ids of the object the view shows

    def nearest(self, queries: np.ndarray) -> np.ndarray:
        """(B,) index of the object owning the library view nearest (L2) to each query (B, D)."""
        distance = (self.keys ** 2).sum(1)[None] - 2 * queries @ self.keys.T  # |q|^2 is the same for every view
        return self.owner[distance.argmin(axis=1)]

    def best_match(self, truth: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """For (B, R, R, R) bool grids: (B,) index of the library object with the highest IoU, and that IoU."""
        flat = truth.reshape(len(truth), -1).astype(np.float32)
        best, best_iou = np.zeros(len(truth), np.int64), np.full(len(truth), -1.0)
        for start in range(0, len(self.voxels), chunk):
            block = self.voxels[start:start + chunk].astype(np.float32)  # (C, R^3)
            inter = flat @ block.T  # (B, C)
            union = flat.sum(1)[:, None] + block.sum(1)[None] - inter
            scores = inter / np.maximum(union, 1)
            better = scores.max(1) > best_iou
            best[better] = start + scores.argmax(1)[better]
            best_iou = np.maximum(best_iou, scores.max(1))
        return best, best_iou

    def grid(self, index: int) -> np.ndarray:
        return self.voxels[index].reshape((SCORE_RES,) * 3)


def _library_cache(cache: Path, roots: list[Path], image_size: int, fill: float, views: int, size: int) -> Path:
    key = json.dumps([LIBRARY_FORMAT, [load_manifest(r)["fingerprint"] for r in roots], image_size, fill, views, size])
    return cache / f"library-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def build_library(roots: list[Path], image_size: int, fill: float, views_per_object: int, size: int,
                  cache: Path | None = None, progress=None) -> ShapeLibrary:
    """The training objects of every dataset in `roots`; read from (and saved to) `cache` when given,
    keyed by the datasets' fingerprints and the descriptor settings. progress(done, total) per object."""
    if views_per_object <= 0:
        raise InputError(f"--library-views must be positive, got {views_per_object}")
    path = _library_cache(cache, roots, image_size, fill, views_per_object, size) if cache else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as archive:
            return ShapeLibrary(**{key: archive[key] for key in archive.files})
    work = [(root, entry) for root in roots for entry in split_objects(root, "train")]
    ids, categories, voxels, keys, owner = [], [], [], [], []
    for index, (root, entry) in enumerate(work):
        ids.append(entry["id"])
        categories.append(entry["category"])
        voxels.append(truth_grid(root, entry["id"]).ravel())
        for view in range(min(views_per_object, entry["views"])):
            framed = frame_view(load_view(root, entry["id"], view), image_size, fill)
            keys.append(descriptor(framed["normals"], framed["depth"], framed["mask"], size))
            owner.append(index)
        if progress is not None:
            progress(index + 1, len(work))
    library = ShapeLibrary(np.array(ids), np.array(categories), np.stack(voxels), np.stack(keys),
                           np.array(owner, dtype=np.int64))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npz_atomic(path, **vars(library))
    return library


class SketchVoxelNets:
    """The model folder's two nets through the runtime's runners (ONNX Runtime on the CPU)."""

    def __init__(self, model_dir, threads: int | None = 1):
        from recon.runtime.pipeline import Reconstructor

        self.reconstructor = Reconstructor(model_dir, device="cpu", threads=threads)
        self.info = self.reconstructor.model

    def sketch(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """(B, S, S, 3) uint8 framed crops -> normals (B, S, S, 3), depth (B, S, S), silhouette (B, S, S)."""
        out = self.reconstructor.runners["sketch"].infer({"image": normalize_image(rgb, self.info.mean, self.info.std)})
        return {"normals": out["normals"].transpose(0, 2, 3, 1), "depth": out["depth"][:, 0],
                "silhouette": out["silhouette"][:, 0]}

    def occupancy(self, normals: np.ndarray, depth: np.ndarray, silhouette: np.ndarray) -> np.ndarray:
        """(B, R, R, R) probabilities from a batch of sketches shaped as `sketch` returns them."""
        stacked = np.concatenate([normals.transpose(0, 3, 1, 2), depth[:, None], silhouette[:, None]], axis=1)
        return self.reconstructor.runners["voxel"].infer({"sketch": stacked.astype(np.float32)})["occupancy"]

    def close(self) -> None:
        self.reconstructor.close()


def score_batch(nets: SketchVoxelNets, framed: list[dict], truth: np.ndarray, library: ShapeLibrary | None,
                size: int, threshold: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-view scores of one batch of framed views against truth (B, 32, 32, 32) bool; and what was
    scored: the nets' grids at their own resolution, the retrieved ones, the predicted sketch."""
    gt = {"normals": np.stack([f["normals"] for f in framed]), "depth": np.stack([f["depth"] for f in framed]),
          "silhouette": np.stack([f["mask"] for f in framed]).astype(np.float32)}
    pred = nets.sketch(np.stack([f["rgb"] for f in framed]))
    grids = {
        "gt_sketch": nets.occupancy(**gt) > threshold,
        "pred_sketch": nets.occupancy(**pred) > threshold,
        "pred_gt_silhouette": nets.occupancy(pred["normals"], pred["depth"], gt["silhouette"]) > threshold,
    }
    scores = {key: iou_many(pooled(value, SCORE_RES), truth) for key, value in grids.items()}
    scores.update(sketch_errors(pred, {"mask": gt["silhouette"] > 0.5, "depth": gt["depth"], "normals": gt["normals"]}))
    if library is not None:
        for source, sketch in (("pred", pred), ("gt", gt)):
            keys = np.stack([descriptor(n, d, s, size)
                             for n, d, s in zip(sketch["normals"], sketch["depth"], sketch["silhouette"])])
            found = library.nearest(keys)
            grids[f"retrieval_{source}"] = np.stack([library.grid(i) for i in found])
            scores[f"retrieval_{source}"] = iou_many(grids[f"retrieval_{source}"], truth)
            scores[f"found_{source}"] = found
        found, scores["retrieval_oracle"] = library.best_match(truth)
        grids["retrieval_oracle"] = np.stack([library.grid(i) for i in found])
        scores["found_oracle"] = found
    grids.update({f"sketch_{key}": value for key, value in pred.items()})
    return scores, grids


def diagnose_split(nets: SketchVoxelNets, root: Path, entries: list[dict], chosen: list[list[int]],
                   library: ShapeLibrary | None, size: int, threshold: float, batch: int = 16,
                   keep: set[str] = frozenset(), progress=None) -> dict:
    """Scores of every (trial, object) view of `entries` (chosen[t][i]: the view of object i in trial t).

    Returns {"category": (V,) str, "object": (V,) str, "trial": (V,) int, <score>: (V,) ...,
    "kept": {object id: {"rgb", "truth", "grids": {name: array}, "scores": {name: value}}}}, where `kept`
    holds trial 0 of the ids in `keep` (for pictures).
    """
    info = nets.info
    truths = {entry["id"]: truth_grid(root, entry["id"]) for entry in entries}
    columns: dict[str, list] = {"category": [], "object": [], "trial": []}
    kept = {}
    for trial, views in enumerate(chosen):
        for start in range(0, len(entries), batch):
            part = entries[start:start + batch]
            framed = [frame_view(load_view(root, e["id"], v), info.image_size, info.fill)
                      for e, v in zip(part, views[start:start + batch])]
            truth = np.stack([truths[e["id"]] for e in part])
            scores, grids = score_batch(nets, framed, truth, library, size, threshold)
            for key, values in scores.items():
                columns.setdefault(key, []).append(np.asarray(values))
            columns["category"].append(np.array([e["category"] for e in part]))
            columns["object"].append(np.array([e["id"] for e in part]))
            columns["trial"].append(np.full(len(part), trial))
            for offset, entry in enumerate(part):
                if trial == 0 and entry["id"] in keep:
                    kept[entry["id"]] = {"rgb": framed[offset]["rgb"], "truth": truth[offset],
                                         "grids": {key: value[offset] for key, value in grids.items()},
                                         "scores": {key: value[offset] for key, value in scores.items()}}
            if progress is not None:
                progress(len(part))
    result = {key: np.concatenate(values) for key, values in columns.items()}
    result["kept"] = kept
    return result


def per_category(result: dict, column: str) -> dict[str, float]:
    """Mean of a score column per category (over all trials and objects), and their mean ("mean", as the paper)."""
    names = result["category"]
    table = {c: float(np.nanmean(result[column][names == c])) for c in sorted(set(names.tolist()))}
    table["mean"] = float(np.mean(list(table.values())))
    return table


def category_hits(result: dict, library: ShapeLibrary, source: str = "pred") -> dict[str, float]:
    """Per category, the fraction of views whose retrieved training object is of the right category."""
    hits = {"category": result["category"], "hit": library.categories[result[f"found_{source}"]] == result["category"]}
    return per_category(hits, "hit")


def training_curve(model_manifest: dict, run: Path | None = None) -> tuple[list[dict], str]:
    """The per-epoch metrics rows that carry a training-batch "iou", in the order they ran, and where
    they came from: RUN/metrics.jsonl when a run folder is given, else the model's own model.json recipe."""
    if run is not None:
        path = Path(run) / "metrics.jsonl"
        if not path.is_file():
            raise InputError(f"{run}: no metrics.jsonl (not a run folder of recon-cli train)")
        try:
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except ValueError as error:
            raise InputError(f"{path}: not JSON lines ({error})") from None
        source = str(path)
    else:
        rows = (model_manifest.get("recipe") or {}).get("metrics") or []
        source = "model.json recipe.metrics"
    return [row for row in rows if isinstance(row, dict) and "iou" in row], source
