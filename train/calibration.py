"""Fitting the runtime's confidence (recon.runtime.confidence) for a model folder, torch-free.

Objects: plain renders of a dataset's training split. Non-objects (NEGATIVE_KINDS), generated here:
noise, flat textures, empty cluttered rooms (recon.train.clutter without an object) and rendered shapes of
other kinds (spheres, tori, boxes, cylinders, cones, tables and shelves made of boxes). Every picture goes
through the real Reconstructor (ONNX Runtime), its `Result.evidence` is collected and a logistic
regression (numpy, Newton steps, classes weighted equally) is fitted; the thresholds follow from the
training objects' confidences (runtime/confidence.py). The held-out check uses the dataset's test split
and non-objects drawn with another seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.runtime.camera import Camera
from recon.runtime.confidence import FEATURES, Calibration, expand
from recon.train import clutter
from recon.train.data import load_manifest, load_view, part_colors, random_background, random_light

ACCEPT_QUANTILE = 0.02  # the share of training objects allowed below `accept`
REFUSE_QUANTILE = 0.005  # below `refuse` (no_object) fall almost no training objects: between is low_confidence
L2 = 1e-3  # ridge on the standardised weights: keeps the fit finite when the classes separate


# ---------------------------------------------------------------- non-objects


def _noise(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:  # white noise
        return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    if kind == 1:  # grain around one colour
        colour = rng.uniform(30, 225, 3)
        return np.clip(colour + rng.normal(0, rng.uniform(5, 60), (size, size, 3)), 0, 255).astype(np.uint8)
    cells = int(rng.integers(3, 24))  # blocky noise
    coarse = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, -(-size // cells), 0), -(-size // cells), 1)[:size, :size]


def _flat(rng: np.random.Generator, size: int) -> np.ndarray:
    if rng.uniform() < 0.5:
        return random_background(rng, size)
    return (clutter.texture(rng, size, size) * 255).astype(np.uint8)


def _room(rng: np.random.Generator, size: int) -> np.ndarray:
    image = clutter.room(rng, size)
    clutter.add_blobs(rng, image, int(rng.integers(0, 6)))
    return clutter.photo_faults(rng, (image * 255).astype(np.uint8))


def _boxes(parts) -> "object":
    """A mesh of boxes, each (centre, extents)."""
    import trimesh

    return trimesh.util.concatenate([trimesh.creation.box(extents=e, transform=trimesh.transformations
                                                          .translation_matrix(c)) for c, e in parts])


def _table(rng: np.random.Generator):
    width, depth, height, leg = rng.uniform(0.6, 1.2), rng.uniform(0.4, 1.0), rng.uniform(0.4, 0.9), rng.uniform(0.03, 0.1)
    top = rng.uniform(0.03, 0.1)
    parts = [((0, height, 0), (width, top, depth))]
    parts += [((sx * (width - leg) / 2, height / 2, sz * (depth - leg) / 2), (leg, height, leg))
              for sx in (-1, 1) for sz in (-1, 1)]
    return _boxes(parts)


def _shelf(rng: np.random.Generator):
    width, depth, height = rng.uniform(0.4, 1.0), rng.uniform(0.2, 0.5), rng.uniform(0.6, 1.4)
    board = rng.uniform(0.02, 0.06)
    shelves = int(rng.integers(2, 6))
    parts = [((sx * width / 2, height / 2, 0), (board, height, depth)) for sx in (-1, 1)]
    parts += [((0, height * i / (shelves - 1), 0), (width, board, depth)) for i in range(shelves)]
    return _boxes(parts)


def _primitive(rng: np.random.Generator):
    import trimesh

    kind = rng.integers(7)
    if kind == 0:
        return trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    if kind == 1:
        return trimesh.creation.torus(major_radius=0.5, minor_radius=rng.uniform(0.08, 0.3))
    if kind == 2:
        return trimesh.creation.box(extents=rng.uniform(0.2, 1.0, 3))
    if kind == 3:
        return trimesh.creation.cylinder(radius=rng.uniform(0.1, 0.5), height=rng.uniform(0.2, 1.0))
    if kind == 4:
        return trimesh.creation.cone(radius=rng.uniform(0.2, 0.5), height=rng.uniform(0.3, 1.0))
    return _table(rng) if kind == 5 else _shelf(rng)


def _other_object(rng: np.random.Generator, size: int) -> np.ndarray:
    from recon.runtime.meshio import normalize_to_unit_cube
    from recon.runtime.render import render_view

    mesh = normalize_to_unit_cube(_primitive(rng))
    colours = part_colors(rng, 1)[np.zeros(len(mesh.faces), int)]
    camera = Camera(azimuth=float(rng.uniform(0, 360)), elevation=float(rng.uniform(-10, 40)))
    return render_view(mesh, camera, size, face_colors=colours, light_dir=random_light(rng),
                       ambient=float(rng.uniform(0.25, 0.45)), background=random_background(rng, size))["rgb"]


NEGATIVE_KINDS = {"noise": _noise, "flat": _flat, "room": _room, "other_object": _other_object}


def negatives(count: int, seed: int, size: int = 128) -> list[tuple[str, np.ndarray]]:
    """`count` (kind, picture) non-objects, the kinds taking turns."""
    rng = np.random.default_rng([seed, 77])
    kinds = list(NEGATIVE_KINDS)
    return [(kinds[i % len(kinds)], NEGATIVE_KINDS[kinds[i % len(kinds)]](rng, size)) for i in range(count)]


def renders(datasets, split: str, count: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """`count` (category, plain render) of the datasets' `split`, one random view per object."""
    rng = np.random.default_rng([seed, 78])
    pool = [(Path(root), entry) for root in datasets for entry in load_manifest(Path(root))["objects"]
            if entry["split"] == split]
    chosen = rng.permutation(len(pool))[:count]
    return [(pool[i][1]["category"], load_view(pool[i][0], pool[i][1]["id"], int(rng.integers(pool[i][1]["views"])))["rgb"])
            for i in chosen]


# ---------------------------------------------------------------- evidence and the fit


def collect(reconstructor, pictures: list[np.ndarray], progress=None) -> tuple[np.ndarray, list[str]]:
    """(N, len(FEATURES)) evidence of each picture and its status; a failed picture (e.g. no object
    found at all) gets NaN features: it needs no confidence to be refused."""
    rows, statuses = [], []
    step = reconstructor.batch_size
    for start in range(0, len(pictures), step):
        for result in reconstructor.batch(pictures[start:start + step]):
            statuses.append(result.status)
            evidence = result.evidence or {}
            rows.append([evidence.get(name, np.nan) for name in FEATURES] if result.status != "failed"
                        else [np.nan] * len(FEATURES))
        if progress:
            progress(min(step, len(pictures) - start))
    return np.asarray(rows, np.float64).reshape(-1, len(FEATURES)), statuses


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


def fit_calibration(positives: np.ndarray, negatives_x: np.ndarray, l2: float = L2) -> Calibration:
    """The Calibration from evidence rows of objects and non-objects (rows with NaN are left out); l2: the
    ridge (L2 suits a few hundred pictures of each; fewer need more)."""
    pos = positives[~np.isnan(positives).any(1)]
    neg = negatives_x[~np.isnan(negatives_x).any(1)]
    x = np.vstack([pos, neg])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    mean, std, weights, bias = fit_logistic(x, y, l2)
    fitted = Calibration(mean, std, weights, bias, accept=0.0, refuse=0.0)
    scores = np.array([fitted.confidence(dict(zip(FEATURES, row))) for row in pos])
    accept, refuse = (float(np.quantile(scores, q)) for q in (ACCEPT_QUANTILE, REFUSE_QUANTILE))
    return Calibration(mean, std, weights, bias, accept=round(accept, 4), refuse=round(min(refuse, accept), 4))


def flagged(calibration: Calibration, x: np.ndarray, statuses: list[str]) -> np.ndarray:
    """Per picture: True when it would not be reported ok (failed, no_object or low_confidence)."""
    out = []
    for row, status in zip(x, statuses):
        if status == "failed" or np.isnan(row).any():
            out.append(True)
        else:
            out.append(calibration.status(calibration.confidence(dict(zip(FEATURES, row)))) != "ok")
    return np.asarray(out, bool)
