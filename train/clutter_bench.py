"""The clutter benchmark: a dataset split's objects pasted into cluttered scenes, with ground truth.

`make_bench` (`recon-cli data clutter`) writes, torch-free:
```
OUT/manifest.json                 entries: id, object_id, category, view, picture, plain, mask,
                                  box [x0, y0, x1, y1] of the object in the cluttered picture, plain_box
OUT/pictures/<id>.png             the object in a cluttered room (recon.train.clutter.compose_scene)
OUT/plain/<id>.png                the same view as rendered (the dataset's plain background)
OUT/masks/<id>.png                the object's mask in the cluttered picture (white = object)
OUT/masks/<id>.plain.png          its mask in the plain view
OUT/voxels/<object_id>.npz        voxels (R, R, R) bool, canonical frame (docs/design.md)
OUT/boxes.csv                     image,x1,y1,x2,y2: the true boxes, in `recon-cli infer --boxes` form
```
`evaluate_bench` (scripts/eval_clutter.py) runs a Reconstructor on each cluttered picture (framing
itself, with the true box given, with the true mask given) and on its plain twin, and scores per category: framing (IoU of the
chosen square crop with the crop the true mask gives, and the share >= FRAMING_GOOD), silhouette IoU
(inside the chosen crop) and voxel IoU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from recon.runtime.errors import InputError
from recon.runtime.fileio import check_output_dir, save_npz_atomic, write_bytes_atomic, write_json_atomic
from recon.runtime.pictures import save_png
from recon.runtime.preprocess import Box, crop_map, frame_box
from recon.runtime.voxels import downsample, iou
from recon.train.clutter import compose_scene
from recon.train.data import load_manifest, load_view, load_voxels

FRAMING_GOOD = 0.85  # a framing box IoU at or above this counts as found
VARIANTS = ("plain", "cluttered", "cluttered+box", "cluttered+mask")  # what evaluate_bench runs per picture


def _xyxy(mask: np.ndarray) -> list[int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def make_bench(data, out, split: str = "test", views_per_object: int = 2, seed: int = 0, size: int = 256,
               distractors: tuple[int, int] = (1, 3), progress=None) -> dict:
    """Write the benchmark folder (module docstring) for `split` of dataset `data`; returns its manifest."""
    data = Path(data)
    manifest = load_manifest(data)
    objects = [entry for entry in manifest["objects"] if entry["split"] == split]
    if not objects:
        raise InputError(f"{data}: no {split!r} objects (splits: {sorted({e['split'] for e in manifest['objects']})})")
    if views_per_object < 1:
        raise InputError(f"--views-per-object must be >= 1, got {views_per_object}")
    out = check_output_dir(out, owned_by=("manifest.json", "pictures"))  # pictures/: an interrupted run of ours
    for folder in ("pictures", "plain", "masks", "voxels"):
        (out / folder).mkdir(exist_ok=True)
    rng = np.random.default_rng([seed, 79])
    entries = []
    for entry in objects:
        save_npz_atomic(out / "voxels" / f"{entry['id']}.npz", voxels=load_voxels(data, entry["id"]))
        views = rng.permutation(entry["views"])[:views_per_object]
        for number, view in enumerate(views):
            picked = load_view(data, entry["id"], int(view))
            others = [load_view(data, other["id"], int(rng.integers(other["views"])))
                      for other in rng.choice(objects, size=int(rng.integers(distractors[0], distractors[1] + 1)))
                      if other["id"] != entry["id"]]
            scene = compose_scene(picked["rgb"], picked["mask"], rng, size=size, others=others)
            name = f"{entry['id']}_{number}"
            save_png(out / "pictures" / f"{name}.png", scene["rgb"])
            save_png(out / "plain" / f"{name}.png", picked["rgb"])
            save_png(out / "masks" / f"{name}.png", np.where(scene["mask"], 255, 0).astype(np.uint8))
            save_png(out / "masks" / f"{name}.plain.png", np.where(picked["mask"], 255, 0).astype(np.uint8))
            entries.append({"id": name, "object_id": entry["id"], "category": entry["category"], "view": int(view),
                            "picture": f"pictures/{name}.png", "plain": f"plain/{name}.png", "mask": f"masks/{name}.png",
                            "plain_mask": f"masks/{name}.plain.png", "box": _xyxy(scene["mask"]), "plain_box": _xyxy(picked["mask"])})
        if progress:
            progress()
    lines = ["image,x1,y1,x2,y2"] + [f"{e['id']}.png,{','.join(map(str, e['box']))}" for e in entries]
    write_bytes_atomic(out / "boxes.csv", ("\n".join(lines) + "\n").encode())
    bench = {"kind": "clutter-bench", "data": str(data), "fingerprint": manifest.get("fingerprint"), "split": split,
             "views_per_object": views_per_object, "seed": seed, "size": size, "entries": entries}
    write_json_atomic(out / "manifest.json", bench)  # last: its presence marks a finished benchmark
    return bench


def load_bench(root) -> dict:
    path = Path(root) / "manifest.json"
    try:
        bench = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{root}: not a clutter benchmark folder (make one with recon-cli data clutter): {error}") from None
    if bench.get("kind") != "clutter-bench":
        raise InputError(f"{path}: not a clutter benchmark manifest")
    return bench


def _read_mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) >= 128


def _square_iou(a: Box, b: Box) -> float:
    height = max(0.0, min(a.top + a.side, b.top + b.side) - max(a.top, b.top))
    width = max(0.0, min(a.left + a.side, b.left + b.side) - max(a.left, b.left))
    inter = height * width
    return float(inter / (a.side ** 2 + b.side ** 2 - inter))


def score(result, truth_mask: np.ndarray, voxels: np.ndarray, fill: float) -> dict:
    """framing / silhouette / voxel IoU of one Result against the picture's true mask and the voxels."""
    if result.box is None or result.voxels is None:
        return {"framing": 0.0, "silhouette": 0.0, "voxel": 0.0, "status": result.status}
    size = result.sketch["silhouette"].shape[0]
    truth_crop = crop_map(truth_mask, result.box, size)
    res = result.voxels.shape[0]
    truth = downsample(voxels, res) if voxels.shape[0] != res else voxels
    return {"framing": _square_iou(result.box, frame_box(truth_mask, fill)),
            "silhouette": iou(result.sketch["silhouette"] > 0.5, truth_crop),
            "voxel": iou(result.voxels > result.threshold, truth.astype(bool)), "status": result.status,
            "confidence": result.confidence}


def evaluate_bench(reconstructor, root, max_pictures: int | None = None, progress=None, keep: int = 0):
    """(rows, kept): a row per picture and variant {id, category, variant, framing, silhouette, voxel,
    status, confidence}; kept: the first `keep` pictures' (entry, {variant: Result}) for a contact sheet."""
    root = Path(root)
    bench = load_bench(root)
    entries = interleaved(bench["entries"])[:max_pictures]
    fill = reconstructor.model.fill
    rows, kept = [], []
    for entry in entries:
        voxels = np.load(root / "voxels" / f"{entry['object_id']}.npz")["voxels"]
        truth = _read_mask(root / entry["mask"])
        picture = str(root / entry["picture"])
        results = (reconstructor.batch([str(root / entry["plain"])], names=[entry["id"]])[0],
                   reconstructor.batch([picture], names=[entry["id"]])[0],
                   reconstructor.batch([picture], names=[entry["id"]], box=tuple(entry["box"]))[0],
                   reconstructor.batch([picture], names=[entry["id"]], mask=truth)[0])
        truths = (_read_mask(root / entry["plain_mask"]), truth, truth, truth)
        for variant, result, mask in zip(VARIANTS, results, truths):
            rows.append({"id": entry["id"], "category": entry["category"], "variant": variant,
                         **score(result, mask, voxels, fill)})
        if len(kept) < keep:
            kept.append((entry, dict(zip(VARIANTS, results))))
        if progress:
            progress()
    return rows, kept


def interleaved(entries: list[dict]) -> list[dict]:
    """Entries taking turns by category, so the first N of them cover every category."""
    by_category: dict[str, list[dict]] = {}
    for entry in entries:
        by_category.setdefault(entry["category"], []).append(entry)
    rounds = max(len(group) for group in by_category.values()) if by_category else 0
    return [group[i] for i in range(rounds) for group in by_category.values() if i < len(group)]


def table(rows: list[dict]) -> dict:
    """{category (and "all"): {variant: {framing, framing_good, silhouette, voxel, flagged}}}."""
    categories = sorted({row["category"] for row in rows})
    out = {}
    for category in categories + ["all"]:
        out[category] = {}
        for variant in VARIANTS:
            chosen = [r for r in rows if r["variant"] == variant and category in ("all", r["category"])]
            if not chosen:
                continue
            framing = np.array([r["framing"] for r in chosen])
            out[category][variant] = {
                "pictures": len(chosen), "framing": round(float(framing.mean()), 3),
                "framing_good": round(float((framing >= FRAMING_GOOD).mean()), 3),
                "silhouette": round(float(np.mean([r["silhouette"] for r in chosen])), 3),
                "voxel": round(float(np.mean([r["voxel"] for r in chosen])), 3),
                "flagged": round(float(np.mean([r["status"] != "ok" for r in chosen])), 3)}
    return out
