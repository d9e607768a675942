"""Fitting the runtime's confidence (recon.runtime.confidence) for a model folder, torch-free.

Every calibration picture (recon.train.calibration_pictures: objects and non-objects, each framed the
ways a user could) goes through the real Reconstructor (ONNX Runtime), its `Result.evidence` is
collected and a logistic regression (numpy, Newton steps, classes weighted equally) is fitted; the
thresholds follow from the training objects' confidences (runtime/confidence.py). The held-out check
uses the dataset's test split and non-objects drawn with another seed, reported per kind and framing.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from recon.runtime.confidence import FEATURES, Calibration, expand
from recon.runtime.preprocess import box_iou, frame_box
from recon.train.calibration_pictures import Sample

ACCEPT_QUANTILE = 0.02  # the share of training objects allowed below `accept`
REFUSE_QUANTILE = 0.005  # below `refuse` (no_object) fall almost no training objects: between is low_confidence
L2 = 1e-3  # ridge on the standardised weights: keeps the fit finite when the classes separate


# ---------------------------------------------------------------- evidence and the fit


class Evidence(NamedTuple):
    """What `collect` gathered: every evidence value (not only FEATURES: fits may try subsets)."""

    names: list[str]  # the columns of x (the keys of recon.runtime.confidence.evidence)
    x: np.ndarray  # (N, len(names)); NaN for a failed picture: it needs no confidence to be refused
    statuses: list[str]
    framing: np.ndarray  # (N,) crop-box IoU with the crop the object's true mask gives; NaN without one

    def columns(self, features=FEATURES) -> np.ndarray:
        return self.x[:, [self.names.index(name) for name in features]]


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
    return Evidence(names, x, [r.status for r in results], framing)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2,
                 steps: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, std, weights, bias) of an L2-regularised logistic regression on the expanded standardised x
    (recon.runtime.confidence.expand), each class weighted by the inverse of its size (equal priors)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = np.hstack([expand((x - mean) / std), np.ones((len(x), 1))])
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


def fit_calibration(positives: np.ndarray, negatives_x: np.ndarray, l2: float = L2,
                    features=FEATURES) -> Calibration:
    """The Calibration from evidence rows (columns: `features`) of objects and non-objects (rows with NaN
    are left out); l2: the ridge (L2 suits a few hundred pictures of each; fewer need more). A subset of
    FEATURES measures what a feature adds; the runtime loads only calibrations over FEATURES."""
    pos = positives[~np.isnan(positives).any(1)]
    neg = negatives_x[~np.isnan(negatives_x).any(1)]
    x = np.vstack([pos, neg])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    mean, std, weights, bias = fit_logistic(x, y, l2)
    scores = Calibration(mean, std, weights, bias, 0.0, 0.0, tuple(features)).confidences(pos)
    accept, refuse = (float(np.quantile(scores, q)) for q in (ACCEPT_QUANTILE, REFUSE_QUANTILE))
    return Calibration(mean, std, weights, bias, accept=round(accept, 4), refuse=round(min(refuse, accept), 4),
                       features=tuple(features))


def flagged(calibration: Calibration, evidence: Evidence) -> np.ndarray:
    """Per picture: True when it would not be reported ok (failed, no_object or low_confidence)."""
    x = evidence.columns(calibration.features)
    failed = np.array([status == "failed" for status in evidence.statuses], bool) | np.isnan(x).any(1)
    scores = calibration.confidences(np.nan_to_num(x))
    return failed | (np.round(scores, 4) < calibration.accept)
