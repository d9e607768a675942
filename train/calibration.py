"""Fitting the runtime's confidence (recon.runtime.confidence) for a model folder, torch-free.

Every calibration picture (recon.train.calibration_pictures: objects and non-objects, each framed the
ways a user could) goes through the real Reconstructor (ONNX Runtime), its `Result.evidence` and
`Result.features` are collected and logistic regressions (numpy, Newton steps, classes weighted equally)
are fitted: the appearance head on the features, then the calibration on the evidence and the head's
logit (out of fold: each fit picture scored by a head fitted without its fold, as the runtime's head
scores pictures it never saw); the thresholds follow from the training objects' confidences
(runtime/confidence.py). The held-out check
uses the dataset's test split and non-objects drawn with another seed, reported per kind and framing.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from recon.runtime.confidence import APPEARANCE, FEATURES, Appearance, Calibration, expand
from recon.runtime.preprocess import box_iou, frame_box
from recon.train.calibration_pictures import Sample

ACCEPT_QUANTILE = 0.02  # the share of training objects allowed below `accept`
REFUSE_QUANTILE = 0.005  # below `refuse` (no_object) fall almost no training objects: between is low_confidence
L2 = 1e-3  # ridge on the standardised weights: keeps the fit finite when the classes separate
# The appearance head's ridge (432 features from ~1,600 pictures), chosen by 5-fold cross-validation on
# the fit pictures alone: non-objects below the objects' 2% quantile 99.6% at 1e-3 and 3e-3, 99.2% at
# 1e-2, 96.8% at 1e-1; the larger of the tied ridges.
APPEARANCE_L2 = 3e-3
FOLDS = 5  # out-of-fold appearance logits for the calibration's own fit


# ---------------------------------------------------------------- evidence and the fit


class Evidence(NamedTuple):
    """What `collect` gathered: every evidence value (not only FEATURES: fits may try subsets)."""

    names: list[str]  # the columns of x (the keys of recon.runtime.confidence.evidence)
    x: np.ndarray  # (N, len(names)); NaN for a failed picture: it needs no confidence to be refused
    statuses: list[str]
    framing: np.ndarray  # (N,) crop-box IoU with the crop the object's true mask gives; NaN without one
    embedding: np.ndarray | None = None  # (N, F) Result.features; NaN rows for failed pictures; None: no features

    def columns(self, features=FEATURES, appearance: Appearance | None = None) -> np.ndarray:
        """The evidence columns of `features`; APPEARANCE among them is the head's logit of the embedding."""
        columns = [self.x[:, self.names.index(name)] if name != APPEARANCE else appearance.score(self.embedding)
                   for name in features]
        return np.stack(columns, axis=1)


def _given(sample: Sample) -> str:
    return "mask" if sample.mask is not None else "box" if sample.box is not None else "none"


def collect(reconstructor, samples: list[Sample], progress=None) -> Evidence:
    """Run every Sample, framed as it says, through the Reconstructor; batches hold one kind of framing
    (Reconstructor.batch takes a mask list or a box list, not both)."""
    results, fill = [None] * len(samples), reconstructor.model.fill
    for given in ("none", "mask", "box"):
        chosen = [i for i, sample in enumerate(samples) if _given(sample) == given]
        for start in range(0, len(chosen), reconstructor.batch_size):
            part = chosen[start:start + reconstructor.batch_size]
            options = {given: [getattr(samples[i], given) for i in part]} if given != "none" else {}
            for i, result in zip(part, reconstructor.batch([samples[i].picture for i in part], **options)):
                results[i] = result
            if progress:
                progress(len(part))
    found = [r.evidence for r in results if r.evidence and r.status != "failed"]
    names = list(found[0]) if found else list(FEATURES)
    x = np.array([[r.evidence[n] for n in names] if r.evidence and r.status != "failed" else [np.nan] * len(names)
                  for r in results], np.float64).reshape(-1, len(names))
    framing = np.array([np.nan if s.truth is None else box_iou(r.box, frame_box(s.truth, fill))
                        for s, r in zip(samples, results)])
    width = next((r.features.size for r in results if r.features is not None), 0)
    embedding = np.array([r.features if r.features is not None and r.status != "failed" else np.full(width, np.nan)
                          for r in results], np.float64).reshape(-1, width) if width else None
    return Evidence(names, x, [r.status for r in results], framing, embedding)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2, steps: int = 50,
                 squares: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, std, weights, bias) of an L2-regularised logistic regression on the standardised x, expanded
    by their squares (recon.runtime.confidence.expand) unless `squares` is False, each class weighted by
    the inverse of its size (equal priors)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    z = np.hstack([expand(z) if squares else z, np.ones((len(x), 1))])
    sample = np.where(y == 1, 0.5 / max(1, y.sum()), 0.5 / max(1, (1 - y).sum()))
    w = np.zeros(z.shape[1])
    ridge = l2 * np.eye(z.shape[1])  # the weighted loss sums to 1: l2 is the ridge's weight beside it
    ridge[-1, -1] = 1e-6  # the bias: barely held, but never free (one class alone would send it to infinity)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-z @ w))
        gradient = z.T @ (sample * (p - y)) + ridge @ w
        hessian = (z * (sample * p * (1 - p))[:, None]).T @ z + ridge
        delta = np.linalg.solve(hessian, gradient)
        w -= delta
        if np.abs(delta).max() < 1e-8:
            break
    return mean, std, w[:-1], float(w[-1])


def fit_appearance(positives: np.ndarray, negatives: np.ndarray, l2: float = APPEARANCE_L2) -> Appearance:
    """The appearance head from the features of objects and non-objects (rows without NaN)."""
    x = np.vstack([positives, negatives])
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    return Appearance(*fit_logistic(x, y, l2, squares=False))


def out_of_fold(positives: np.ndarray, negatives: np.ndarray, folds: int = FOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Each row's appearance logit from a head fitted on the other folds (rows with NaN stay NaN)."""
    rng = np.random.default_rng(0)
    sets = [positives, negatives]
    valid = [~np.isnan(rows).any(1) for rows in sets]
    fold = [rng.permutation(len(rows)) % folds for rows in sets]
    scores = [np.full(len(rows), np.nan) for rows in sets]
    for k in range(folds):
        head = fit_appearance(*(rows[ok & (f != k)] for rows, ok, f in zip(sets, valid, fold)))
        for rows, ok, f, out in zip(sets, valid, fold, scores):
            out[ok & (f == k)] = head.score(rows[ok & (f == k)])
    return scores[0], scores[1]


def fit_calibration(positives: np.ndarray, negatives_x: np.ndarray, l2: float = L2, features=FEATURES,
                    embeddings: tuple[np.ndarray, np.ndarray] | None = None) -> Calibration:
    """The Calibration from evidence rows (columns: `features`, less APPEARANCE) of objects and non-objects
    (rows with NaN are left out); l2: the ridge (L2 suits a few hundred pictures of each; fewer need more).
    With APPEARANCE in `features`, `embeddings` (the objects' and non-objects' features) fit the head and
    its out-of-fold logits are the last column. A subset of FEATURES measures what a feature adds; the
    runtime loads calibrations over FEATURES, with or without APPEARANCE."""
    appearance = None
    if APPEARANCE in features:
        if list(features).index(APPEARANCE) != len(features) - 1 or embeddings is None:
            raise ValueError(f"{APPEARANCE}: the last feature, and it needs the pictures' embeddings")
        appearance = fit_appearance(*(rows[~np.isnan(rows).any(1)] for rows in embeddings))
        scores = out_of_fold(*embeddings)
        positives, negatives_x = (np.hstack([rows, s[:, None]]) for rows, s in zip((positives, negatives_x), scores))
    pos = positives[~np.isnan(positives).any(1)]
    neg = negatives_x[~np.isnan(negatives_x).any(1)]
    x = np.vstack([pos, neg])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    mean, std, weights, bias = fit_logistic(x, y, l2)
    scores = Calibration(mean, std, weights, bias, 0.0, 0.0, tuple(features)).confidences(pos)
    accept, refuse = (float(np.quantile(scores, q)) for q in (ACCEPT_QUANTILE, REFUSE_QUANTILE))
    return Calibration(mean, std, weights, bias, accept=round(accept, 4), refuse=round(min(refuse, accept), 4),
                       features=tuple(features), appearance=appearance)


def flagged(calibration: Calibration, evidence: Evidence) -> np.ndarray:
    """Per picture: True when it would not be reported ok (failed, no_object or low_confidence)."""
    x = evidence.columns(calibration.features, calibration.appearance)
    failed = np.array([status == "failed" for status in evidence.statuses], bool) | np.isnan(x).any(1)
    scores = calibration.confidences(np.nan_to_num(x))
    return failed | (np.round(scores, 4) < calibration.accept)
