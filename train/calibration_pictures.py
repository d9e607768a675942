"""The calibration's pictures (recon.train.calibration): the inputs users send, each framed as a user could.

- objects (`objects`): renders of a dataset's split on their plain background or pasted into a cluttered
  room (recon.train.clutter, other objects of the split behind), framed automatically, by alpha, by a
  given mask or by a given box (the true box moved as a detector's is: `detector_box`), taking turns.
- non-objects (`negatives`, NEGATIVE_KINDS): noise, flat textures, empty cluttered rooms, rendered shapes
  of other kinds (spheres, tori, boxes, cylinders, cones, tables and shelves made of boxes) on a plain
  background and in cluttered rooms; framed automatically, or by a mask or box around the shape, or
  around a random region where there is nothing (an empty room with a box around nothing).
Seeded: the same arguments give the same pictures. Torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from recon.runtime.camera import Camera
from recon.train import clutter
from recon.train.data import load_manifest, load_view, part_colors, random_background, random_light

SCENE_SIZE = 256  # side of every generated picture (the datasets' renders are 256 too)
BOX_JITTER = 0.05  # a given box's edges move by about this share of the object's size (a detector's error)
# How objects are shown and framed, taking turns: background + framing (alpha on a cluttered picture:
# the user cut the object out with another tool).
OBJECT_FRAMINGS = tuple(f"{background}+{framing}" for background in ("plain", "cluttered")
                        for framing in ("auto", "alpha", "mask", "box"))


class Sample(NamedTuple):
    """One calibration picture and how it is framed (Reconstructor.batch's mask= / box=)."""

    kind: str  # the object's category, or a NEGATIVE_KINDS name
    framing: str  # objects: OBJECT_FRAMINGS; non-objects: auto, alpha, mask or box
    picture: np.ndarray  # (H, W, 3) uint8, or (H, W, 4) with the object's alpha
    mask: np.ndarray | None = None  # a given mask
    box: tuple | None = None  # a given box (x0, y0, x1, y1)
    truth: np.ndarray | None = None  # an object's true mask in the picture: was it framed right?


def _xyxy(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def detector_box(rng: np.random.Generator, mask: np.ndarray) -> tuple[float, float, float, float]:
    """The mask's box with each edge moved by a detector-like error, kept inside the picture."""
    x0, y0, x1, y1 = _xyxy(mask)
    height, width = mask.shape
    dx0, dx1 = rng.normal(0, BOX_JITTER, 2) * (x1 - x0)
    dy0, dy1 = rng.normal(0, BOX_JITTER, 2) * (y1 - y0)
    x0, x1 = float(np.clip(x0 + dx0, 0, width - 2)), float(np.clip(x1 + dx1, 0, width))
    y0, y1 = float(np.clip(y0 + dy0, 0, height - 2)), float(np.clip(y1 + dy1, 0, height))
    return x0, y0, max(x1, x0 + 2), max(y1, y0 + 2)


def framed(rng: np.random.Generator, kind: str, framing: str, rgb: np.ndarray, mask: np.ndarray,
           truth: np.ndarray | None = None) -> Sample:
    """A Sample of `rgb` framed as `framing` says (its last word) around `mask`."""
    how = framing.rsplit("+", 1)[-1]
    if how == "alpha":
        return Sample(kind, framing, np.dstack([rgb, np.where(mask, 255, 0).astype(np.uint8)]), truth=truth)
    return Sample(kind, framing, rgb, mask=mask if how == "mask" else None,
                  box=detector_box(rng, mask) if how == "box" else None, truth=truth)


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


def _region(rng: np.random.Generator, size: int) -> np.ndarray:
    """A mask or box a user could give where there is nothing: an ellipse or a rectangle, anywhere."""
    yy, xx = np.mgrid[:size, :size] / size
    (cy, cx), (hy, hx) = rng.uniform(0.3, 0.7, 2), rng.uniform(0.1, 0.35, 2)
    if rng.integers(2):
        return (np.abs(yy - cy) < hy) & (np.abs(xx - cx) < hx)
    return ((yy - cy) / hy) ** 2 + ((xx - cx) / hx) ** 2 < 1


def _render_other(rng: np.random.Generator, size: int, background: np.ndarray) -> dict:
    from recon.runtime.meshio import normalize_to_unit_cube
    from recon.runtime.render import render_view

    mesh = normalize_to_unit_cube(_primitive(rng))
    colours = part_colors(rng, 1)[np.zeros(len(mesh.faces), int)]
    camera = Camera(azimuth=float(rng.uniform(0, 360)), elevation=float(rng.uniform(-10, 40)))
    return render_view(mesh, camera, size, face_colors=colours, light_dir=random_light(rng),
                       ambient=float(rng.uniform(0.25, 0.45)), background=background)


def _other_object(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    view = _render_other(rng, size, random_background(rng, size))
    return view["rgb"], view["mask"]


def _other_in_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A shape of another kind in a cluttered room (no objects of ours behind it: then it would be one)."""
    view = _render_other(rng, size, np.full((size, size, 3), 255, np.uint8))
    scene = clutter.compose_scene(view["rgb"], view["mask"], rng, size=size)
    return scene["rgb"], scene["mask"]


def _nothing(make):
    """A picture maker without an object -> (picture, a random region to frame)."""
    return lambda rng, size: (make(rng, size), _region(rng, size))


# name: (picture and the mask a user would frame, the framings taking turns)
NEGATIVE_KINDS = {
    "noise": (_nothing(_noise), ("auto", "mask", "box")),
    "flat": (_nothing(_flat), ("auto", "mask", "box")),
    "room": (_nothing(_room), ("auto", "mask", "box")),
    "other_object": (_other_object, ("auto", "alpha", "mask", "box")),
    "other_in_scene": (_other_in_scene, ("auto", "mask", "box")),
}


def negatives(count: int, seed: int, size: int = SCENE_SIZE) -> list[Sample]:
    """`count` non-object Samples, the kinds taking turns, and each kind's framings."""
    rng = np.random.default_rng([seed, 77])
    kinds = list(NEGATIVE_KINDS)
    out = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        make, framings = NEGATIVE_KINDS[kind]
        out.append(framed(rng, kind, framings[(i // len(kinds)) % len(framings)], *make(rng, size)))
    return out


def objects(datasets, split: str, count: int, seed: int, size: int = SCENE_SIZE) -> list[Sample]:
    """`count` object Samples of the datasets' `split`, a random view of each object in turn (again from
    the start when count is larger than the split), OBJECT_FRAMINGS taking turns; cluttered ones have
    one or two other objects of the split behind them."""
    rng = np.random.default_rng([seed, 78])
    pool = [(Path(root), entry) for root in datasets for entry in load_manifest(Path(root))["objects"]
            if entry["split"] == split]

    def view(index: int) -> dict:
        root, entry = pool[index]
        return load_view(root, entry["id"], int(rng.integers(entry["views"])))

    out = []
    order = rng.permutation(len(pool))
    for number, index in enumerate(order[np.arange(count) % len(pool)]):
        framing = OBJECT_FRAMINGS[number % len(OBJECT_FRAMINGS)]
        shown = view(index)
        rgb, mask = shown["rgb"], shown["mask"]
        if framing.startswith("cluttered"):
            others = [view(int(i)) for i in rng.integers(len(pool), size=int(rng.integers(1, 3))) if i != index]
            scene = clutter.compose_scene(rgb, mask, rng, size=size, others=others)
            rgb, mask = scene["rgb"], scene["mask"]
        out.append(framed(rng, pool[index][1]["category"], framing, rgb, mask, truth=mask))
    return out
