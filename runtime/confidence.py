"""How sure the model is that a picture shows an object it knows, and when it refuses.

`Result.confidence` is the calibrated probability (equal priors) that the picture shows one object of
the trained kinds (chair, car, airplane), framed and reconstructed as the model does on its training
renders. It is a logistic regression on evidence the networks give (`evidence`, and its squares): the
silhouette's size, certainty, compactness and fragmentation, how far it touches the crop's edge, how
well the framing (pass, alpha, mask or box) and the main pass's silhouette agree, how sure, how full
and how left-right symmetric the voxel grid is, and how well the mesh explains the sketch from the best
training camera (the colours' render-and-compare fit, recon.runtime.color.find_view, found once per
picture), and, where the sketch net has its `features` output, what the picture looks like to the
network (`appearance`: the logit of a second logistic regression, over those pooled encoder features,
stored with the calibration; fitted out of fold so the first one does not trust it more than it should).
The fit (`recon.train.calibration`, re-run with `scripts/calibrate_confidence.py MODEL`) takes the training
split's renders, plain and in cluttered rooms, framed automatically, by alpha, by a mask and by a
box, as objects, and generated non-objects (noise, flat textures, empty cluttered rooms, rendered
shapes of other kinds, plain and in rooms, each framed the ways a user could) as the rest
(recon.train.calibration_pictures); it is stored as MODEL/confidence.json, listed with its sha256 in
model.json and tied to the sha256 of the networks it was fitted on. docs/results/confidence.md: the
flagged shares per kind and per framing.

Statuses (STATUSES): `ok` when confidence >= accept; `low_confidence` when refuse <= confidence <
accept (the mesh is still made and saved); `no_object` below refuse (only the preview is saved).
accept is the level that 2% of the training renders fall below, refuse the level 0.5% of them fall
below (recon.train.calibration): low_confidence is unusual, no_object is unlike anything the model knows. A model folder without confidence.json gives confidence None
and leaves statuses alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from recon.runtime.errors import ModelError
from recon.runtime.preprocess import Box, crop_map

__all__ = ["STATUSES", "CALIBRATION_FILE", "FEATURES", "APPEARANCE", "Appearance", "Calibration", "evidence",
           "load_calibration", "judge"]

STATUSES = ("ok", "low_confidence", "no_object", "failed")
MESH_STATUSES = ("ok", "low_confidence")  # statuses whose mesh is saved
CALIBRATION_FILE = "confidence.json"
CALIBRATION_FORMAT = "recon-confidence"

# The evidence, in the order the fitted weights use (explained in `evidence`).
FEATURES = ("silhouette_area", "silhouette_certainty", "edge_contact", "largest_part", "parts", "box_fill", "solidity",
            "fill_error", "framing_iou", "framing_box_iou", "framing_area", "voxel_entropy", "voxel_occupancy",
            "voxel_solidity", "voxel_symmetry", "view_overlap", "view_depth_error")
# The logit of the calibration's appearance head over the sketch net's pooled encoder features: the
# evidence that tells a chair from a table or a lamp, which the silhouette and voxel evidence cannot.
APPEARANCE = "appearance"
NO_VIEW_DEPTH_ERROR = 0.5  # view_depth_error without a mesh to fit: half the unit cube, far beyond any fitted view


@dataclass(frozen=True)
class Appearance:
    """A logistic regression over the sketch net's pooled encoder features (Result.features): how much the
    picture looks like the training objects to the network. Its logit is the evidence `appearance`."""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: float

    def score(self, features: np.ndarray) -> float | np.ndarray:
        """(..., F) features -> their logits."""
        return (np.asarray(features, np.float64) - self.mean) / self.std @ self.weights + self.bias

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "weights": self.weights.tolist(),
                "bias": self.bias}


@dataclass(frozen=True)
class Calibration:
    """A fitted logistic regression over FEATURES (standardised) and the two status thresholds."""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: float
    accept: float
    refuse: float
    features: tuple = FEATURES  # the evidence it weighs, in order (a subset only while fitting)
    appearance: Appearance | None = None  # with it, features end in APPEARANCE (the head's logit)

    def confidence(self, features: dict) -> float:
        return float(self.confidences(np.array([features[name] for name in self.features], np.float64)))

    def confidences(self, x: np.ndarray) -> np.ndarray:
        """(..., len(features)) evidence rows -> their confidences."""
        z = (np.asarray(x, np.float64) - self.mean) / self.std
        return 1.0 / (1.0 + np.exp(-(expand(z) @ self.weights + self.bias)))

    def status(self, confidence: float) -> str:
        return "ok" if confidence >= self.accept else "low_confidence" if confidence >= self.refuse else "no_object"

    def to_dict(self, fitted_on: dict, report: dict) -> dict:
        head = {"appearance": self.appearance.to_dict()} if self.appearance is not None else {}
        return {"format": CALIBRATION_FORMAT, "format_version": 1, "features": list(self.features),
                "mean": self.mean.tolist(), "std": self.std.tolist(), "weights": self.weights.tolist(),
                "bias": self.bias, "accept": self.accept, "refuse": self.refuse, **head, "fitted_on": fitted_on,
                "report": report}


def load_calibration(model) -> Calibration | None:
    """MODEL/confidence.json (already hash-checked against model.json by load_model_dir), or None when the
    folder has none. ModelError when it is malformed or was fitted on other networks."""
    if CALIBRATION_FILE not in model.files:
        return None
    path = model.path / CALIBRATION_FILE
    try:
        data = json.loads(path.read_text())
        head = data.get("appearance")
        features = (*FEATURES, APPEARANCE) if head is not None else FEATURES
        if data.get("format") != CALIBRATION_FORMAT or data.get("features") != list(features):
            raise ValueError("another format or feature list")
        appearance = None if head is None else Appearance(
            *(np.asarray(head[k], np.float64) for k in ("mean", "std", "weights")), float(head["bias"]))
        calibration = Calibration(*(np.asarray(data[k], np.float64) for k in ("mean", "std", "weights")),
                                  float(data["bias"]), float(data["accept"]), float(data["refuse"]),
                                  features, appearance)
        fitted_on = dict(data["fitted_on"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(f"{path}: unreadable confidence calibration ({error}); re-run "
                         f"scripts/calibrate_confidence.py {model.path}") from None
    for name, sha256 in fitted_on.items():
        if model.files.get(name, {}).get("sha256") != sha256:
            raise ModelError(f"{path}: fitted on another {name}; re-run scripts/calibrate_confidence.py {model.path}")
    if not (calibration.mean.shape == calibration.std.shape == (len(features),)
            and calibration.weights.shape == (2 * len(features),)):
        raise ModelError(f"{path}: expected {len(features)} means and deviations and {2 * len(features)} weights")
    if appearance is not None and not (appearance.mean.shape == appearance.std.shape == appearance.weights.shape
                                       and appearance.mean.ndim == 1):
        raise ModelError(f"{path}: its appearance head needs as many means, deviations and weights as features")
    return calibration


def expand(z: np.ndarray) -> np.ndarray:
    """Standardised features and their squares: a too-large and a too-small silhouette are both suspect,
    which one weight per feature cannot say. (..., F) -> (..., 2F)."""
    return np.concatenate([z, z * z], axis=-1)


def _bounds(mask: np.ndarray):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1) if rows.size else None


def _solidity(part: np.ndarray) -> float:
    """A non-empty region's area over its convex hull's (pixel corners, so a filled square gives 1).

    The hull of a row's pixels is the rectangle from its first to its last pixel, so the four corners
    of that rectangle per row span the same hull as every pixel's corners (at most 4 x rows points,
    not 4 x area; integer corners, so Qhull's area is the same number). Never degenerate: one pixel
    is a unit square."""
    from scipy.spatial import ConvexHull

    rows = np.flatnonzero(part.any(axis=1))
    first = part[rows].argmax(axis=1)
    last = part.shape[1] - part[rows, ::-1].argmax(axis=1)  # one past the row's last pixel
    corners = np.stack([np.concatenate([rows, rows, rows + 1, rows + 1]),
                        np.concatenate([first, last, first, last])], axis=1)
    return float(min(1.0, part.sum() / ConvexHull(corners).volume))  # a 2-D hull's "volume" is its area


def _box_iou(a, b) -> float:
    if a is None or b is None:
        return 0.0
    height = min(a[2], b[2]) - max(a[0], b[0])
    width = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0, height) * max(0, width)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union else 0.0


def evidence(silhouette: np.ndarray, framing_mask: np.ndarray, box: Box, framing: str, voxels: np.ndarray,
             threshold: float, fill: float, fit=None) -> dict:
    """The features of one picture, each a float.

    silhouette: the sketch net's own (S, S) probabilities over the crop; framing_mask: the (H, W) mask the
    crop was framed from (the framing pass's silhouette, alpha, a given mask, or a given box's rectangle);
    box: that crop; framing: auto, alpha, mask or box; voxels: (R, R, R) probabilities; fit: the
    recon.runtime.color.ViewFit of the mesh to the sketch (None: no mesh). The voxel net turns a shape of
    another kind into a chair-, car- or airplane-like one that explains the sketch worse from every
    training camera (docs/results/confidence.md measures what each feature adds).
    """
    from scipy import ndimage

    size = silhouette.shape[0]
    solid = silhouette > 0.5
    area = int(solid.sum())
    labels, count = ndimage.label(solid)
    parts = np.bincount(labels.ravel())[1:] if count else np.zeros(1)
    bounds = _bounds(solid)
    edge = np.concatenate([solid[0], solid[-1], solid[:, 0], solid[:, -1]])
    framed = crop_map(framing_mask, box, size).astype(bool)
    framed_bounds = _bounds(framed)
    union = int((framed | solid).sum())
    box_iou = _box_iou(framed_bounds, bounds)
    # A box has no pixels to compare with: its rectangle's agreement is the box IoU.
    pixel_iou = box_iou if framing == "box" else (float((framed & solid).sum() / union) if union else 0.0)
    longer = max(bounds[2] - bounds[0], bounds[3] - bounds[1]) / size if bounds else 0.0
    box_area = (bounds[2] - bounds[0]) * (bounds[3] - bounds[1]) if bounds else 0
    p = np.clip(voxels.astype(np.float64), 1e-6, 1 - 1e-6)
    shell = p[p > 0.05]  # the entropy of these only: most of the grid is sure empty space
    entropy = -(shell * np.log2(shell) + (1 - shell) * np.log2(1 - shell))
    occupied = p > threshold
    mirrored = occupied[::-1]  # about x = 0: the canonical frame's symmetry plane (docs/design.md)
    either = int((occupied | mirrored).sum())
    return {
        "silhouette_area": area / solid.size,  # the crop's share the net calls object
        "silhouette_certainty": float(np.abs(2 * silhouette - 1).mean()),  # 1: every pixel sure either way
        "edge_contact": float(edge.mean()),  # silhouette running off the crop: clutter, or a cut object
        "largest_part": float(parts.max() / area) if area else 0.0,  # 1: one connected piece
        "parts": float(np.log1p(count)),
        "box_fill": area / box_area if box_area else 0.0,  # the silhouette's share of its own box
        "solidity": _solidity(labels == (np.argmax(parts) + 1)) if count else 0.0,  # 1: convex (a ball, a box)
        "fill_error": abs(longer - fill),  # the framing should make the longer side `fill` of the crop
        "framing_iou": pixel_iou,
        "framing_box_iou": box_iou,
        "framing_area": np.count_nonzero(framing_mask) / framing_mask.size,  # its share of the whole picture
        "voxel_entropy": float(entropy.mean()) if shell.size else 1.0,  # bits: 0 sure, 1 a coin toss
        "voxel_occupancy": float(occupied.mean()),
        "voxel_solidity": float(p[occupied].mean()) if occupied.any() else 0.0,
        # IoU of the grid with its left-right mirror (x): chairs, cars and airplanes are mirror-symmetric,
        # and the voxel net keeps them so; what it makes of other shapes often is not.
        "voxel_symmetry": float((occupied & mirrored).sum() / either) if either else 0.0,
        # How well the mesh, seen from the best training camera, explains the sketch's silhouette and depth.
        "view_overlap": float(fit.overlap) if fit is not None else 0.0,
        "view_depth_error": float(fit.depth_error) if fit is not None else NO_VIEW_DEPTH_ERROR,
    }


def judge(result, calibration: Calibration) -> None:
    """Set an ok result's confidence and status from its evidence, and its `appearance` from its features
    where the calibration has the head (a failed result stays as it is)."""
    if result.status != "ok":
        return
    if calibration.appearance is not None:
        result.evidence[APPEARANCE] = float(calibration.appearance.score(result.features))
    result.confidence = round(calibration.confidence(result.evidence), 4)
    result.status = calibration.status(result.confidence)
