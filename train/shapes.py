"""Procedural ShapeNet-like meshes: chairs, cars and airplanes.

Each category is a set of parametric families (office chair, pickup, fighter, ...) with continuous
variation in every proportion, built as a union of small closed primitives (boxes, frusta, convex
lofts, wings). The parts may overlap: the voxelizer fills their union, and the renderer only needs
each part to be closed. `make_shape` puts the result in the canonical frame of docs/design.md
(y up, facing -z, centred, largest extent 1). The families live one category per file
(shape_chairs.py, shape_cars.py, shape_airplanes.py) on the primitives of shape_primitives.py.

Torch-free on purpose: data generation runs in worker processes that should not pay for torch.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import trimesh

from recon.runtime.errors import InputError
from recon.train.shape_airplanes import AIRPLANE_FAMILIES
from recon.train.shape_cars import CAR_BUILDERS
from recon.train.shape_chairs import CHAIR_FAMILIES
from recon.train.shape_primitives import Draw, Parts


def _category_builder(families: dict, weights: dict | None = None) -> Callable[[np.random.Generator], Parts]:
    names = list(families)
    p = np.array([(weights or {}).get(name, 1.0) for name in names], float)
    p /= p.sum()

    def build(rng: np.random.Generator) -> Parts:
        d = Draw(rng)
        family = names[int(rng.choice(len(names), p=p))]
        builder = families[family]
        parts = builder(d, family)
        return Parts(parts, family, d.params)

    return build


CATEGORIES: dict[str, Callable[[np.random.Generator], list[trimesh.Trimesh]]] = {
    # Most ShapeNet chairs have backs: stools are a minority here too.
    "chair": _category_builder(CHAIR_FAMILIES, {"dining_chair": 3, "armchair": 2, "office_chair": 2}),
    "car": _category_builder(CAR_BUILDERS),
    "airplane": _category_builder(AIRPLANE_FAMILIES),
}


@dataclasses.dataclass
class Shape:
    mesh: trimesh.Trimesh        # all parts concatenated, in the canonical frame (docs/design.md)
    part_ids: np.ndarray         # (n_faces,) int32: index of the part each face came from
    category: str
    family: str                  # e.g. "office_chair", "pickup", "fighter"
    params: dict                 # JSON-serialisable parameters used (floats rounded to 4 digits)


def make_shape(category: str, seed: int) -> Shape:
    """The object for (category, seed), centred and scaled to largest extent 1, facing -z."""
    if category not in CATEGORIES:
        raise InputError(f"unknown shape category {category!r}; choose from {', '.join(CATEGORIES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"shape seed must be an integer, got {seed!r}")
    seed = int(seed)
    # SeedSequence takes non-negative entropy only: the sign goes in as its own word.
    rng = np.random.default_rng([abs(seed), int(seed < 0), list(CATEGORIES).index(category)])
    parts = CATEGORIES[category](rng)
    vertices, faces, part_ids, offset = [], [], [], 0
    for index, part in enumerate(parts):
        vertices.append(np.asarray(part.vertices, float))
        faces.append(np.asarray(part.faces, np.int64) + offset)
        part_ids.append(np.full(len(part.faces), index, np.int32))
        offset += len(part.vertices)
    vertices = np.vstack(vertices)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    vertices = (vertices - (low + high) / 2) / float((high - low).max())
    mesh = trimesh.Trimesh(vertices, np.vstack(faces), process=False)
    return Shape(mesh=mesh, part_ids=np.concatenate(part_ids), category=category,
                 family=getattr(parts, "family", category), params=dict(getattr(parts, "params", {})))
