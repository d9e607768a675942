"""Canonicalise real CAD meshes of inconsistent orientation (torch-free).

References are procedural objects of the category in the canonical frame (docs/design.md: y up,
facing -z, centred, largest extent 1): `category_exemplars`, their solid grids. A mesh is voxelised once in its own normalised
placement; each of the 24 proper axis-aligned rotations is applied to that grid (a signed axis
permutation maps the centred voxel grid onto itself exactly, so this equals rotating the mesh,
normalising and voxelising again, at 1/24 of the cost) and scored by its mean IoU with its
TOP_K nearest exemplars. The best rotation wins; its confidence comes from the margin over the
best rotation that places the object differently.

Why exemplars rather than the mean template: categories are multimodal (seat heights, stools vs
chairs), and correlation with the mean template picked an upside-down pose for 7 of 40 held-out
procedural chairs; nearest exemplars (200 per category) recovered all of them.
"""

from __future__ import annotations

import functools
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from recon.runtime.errors import InputError
from recon.runtime.meshio import normalize_to_unit_cube
from recon.runtime.voxels import voxelize_solid

EXEMPLARS = 200  # procedural objects per category (seeds 0..199), voxelised once and cached
TOP_K = 3  # a rotation's score: mean IoU with its TOP_K most similar exemplars
# Score margin at which confidence reaches 1 (best vs best differently-placed rotation).
CONFIDENT_MARGIN = 0.15
# Two rotations whose rotated grids overlap by at least this IoU place the object the same way.
SAME_PLACEMENT_IOU = 0.9


def _signed_permutations() -> tuple[list[np.ndarray], list[tuple[tuple[int, ...], tuple[int, ...]]]]:
    matrices, codes = [], []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            m[np.arange(3), perm] = signs  # (R p)_a = signs[a] * p[perm[a]]
            if np.linalg.det(m) > 0:
                m.setflags(write=False)
                matrices.append(m)
                codes.append((perm, signs))
    return matrices, codes


ROTATIONS, _CODES = _signed_permutations()  # 24, identity first, fixed order


def rotate_grid(grid: np.ndarray, index: int) -> np.ndarray:
    """The (R,R,R) grid [x, y, z] of the object after rotation ROTATIONS[index] about the cube centre."""
    perm, signs = _CODES[index]
    out = np.transpose(grid, perm)
    flips = tuple(a for a in range(3) if signs[a] < 0)
    return np.flip(out, flips) if flips else out


def _rotation_index(orientation_or_rotation) -> int:
    if isinstance(orientation_or_rotation, Orientation):
        return orientation_or_rotation.rotation_index
    if isinstance(orientation_or_rotation, (int, np.integer)) and not isinstance(orientation_or_rotation, bool):
        index = int(orientation_or_rotation)
        if not 0 <= index < len(ROTATIONS):
            raise InputError(f"rotation index must be in 0..{len(ROTATIONS) - 1}, got {index}")
        return index
    matrix = np.asarray(orientation_or_rotation, float)
    if matrix.shape != (3, 3):
        raise InputError(f"rotation: expected an Orientation, an index 0..23 or a 3x3 matrix, got shape {matrix.shape}")
    for index, candidate in enumerate(ROTATIONS):
        if np.allclose(matrix, candidate, atol=1e-6):
            return index
    raise InputError("rotation: not one of the 24 axis-aligned proper rotations (orient.ROTATIONS)")


@functools.lru_cache(maxsize=None)
def _exemplars(category: str, res: int, samples: int, seed: int) -> np.ndarray:
    from recon.train.shapes import make_shape

    out = np.stack([voxelize_solid(make_shape(category, seed + k).mesh, res) for k in range(samples)])
    out = out.reshape(samples, -1).astype(np.float32)
    out.setflags(write=False)
    return out


def category_exemplars(category: str, res: int = 24, samples: int = EXEMPLARS, seed: int = 0) -> np.ndarray:
    """(samples, res^3) float32 0/1 solid grids (read-only, cached) of procedural objects seed..seed+samples-1."""
    if samples < 1:
        raise InputError(f"samples must be at least 1, got {samples}")
    return _exemplars(category, int(res), int(samples), int(seed))


@dataclass
class Orientation:
    rotation_index: int     # index into ROTATIONS
    rotation: np.ndarray    # 3x3: apply to the input mesh's vertices (p -> R p) to reach the canonical frame
    score: float            # mean IoU of the rotated occupancy with its TOP_K nearest exemplars
    margin: float           # best score minus the best score of a rotation placing the object differently
    confidence: float       # margin / CONFIDENT_MARGIN clipped to [0, 1]
    # The best rotation for each of the 6 mesh directions that could be up, best first: the usual
    # mistake is the up axis, so these are the choices a person is shown to fix one.
    up_choices: tuple[int, ...] = ()


def rotated_grids(mesh, res: int = 24) -> np.ndarray:
    """(24, res, res, res) bool: the normalised mesh's solid grid under every rotation of ROTATIONS."""
    grid = voxelize_solid(normalize_to_unit_cube(mesh), res)
    return np.stack([rotate_grid(grid, i) for i in range(len(ROTATIONS))])


def _exemplar_scores(grids: np.ndarray, category: str, res: int, top_k: int) -> np.ndarray:
    flat = grids.reshape(len(grids), -1).astype(np.float32)
    exemplars = category_exemplars(category, res)
    inter = flat @ exemplars.T
    union = flat.sum(axis=1)[:, None] + exemplars.sum(axis=1)[None, :] - inter
    similarity = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    top_k = max(1, min(int(top_k), similarity.shape[1]))
    return np.sort(similarity, axis=1)[:, -top_k:].mean(axis=1).astype(np.float64)


def score_rotations(mesh, category: str, res: int = 24, top_k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """(scores (24,), rotated grids (24, res, res, res) bool) of the mesh under every rotation."""
    grids = rotated_grids(mesh, res)
    return _exemplar_scores(grids, category, res, top_k), grids


def orient(mesh, category: str, res: int = 24, top_k: int = TOP_K) -> Orientation:
    """The axis-aligned rotation that best maps `mesh` onto the category's canonical frame."""
    from recon.train.shapes import CATEGORIES

    if category not in CATEGORIES:
        raise InputError(f"unknown shape category {category!r}; choose from {', '.join(CATEGORIES)}")
    scores, grids = score_rotations(mesh, category, res, top_k)
    best = int(np.argmax(scores))
    flat = grids.reshape(len(grids), -1)
    inter = (flat & flat[best]).sum(axis=1)
    union = (flat | flat[best]).sum(axis=1)
    overlap = np.divide(inter, union, out=np.ones(len(flat)), where=union > 0)
    distinct = overlap < SAME_PLACEMENT_IOU
    margin = float(scores[best] - scores[distinct].max()) if distinct.any() else 0.0
    return Orientation(rotation_index=best, rotation=ROTATIONS[best], score=float(scores[best]),
                       margin=margin, confidence=float(np.clip(margin / CONFIDENT_MARGIN, 0.0, 1.0)),
                       up_choices=best_per_up(scores))


def best_per_up(scores: np.ndarray) -> tuple[int, ...]:
    """For each mesh axis direction that a rotation turns to +y, its best-scoring rotation; best first."""
    best: dict[tuple, int] = {}
    for index in np.argsort(-scores, kind="stable"):
        best.setdefault(tuple(ROTATIONS[index][1]), int(index))  # row 1: the mesh direction sent to +y
    return tuple(best.values())


def apply_orientation(mesh, orientation_or_rotation) -> trimesh.Trimesh:
    """A rotated (Orientation, index 0..23 or one of ROTATIONS) and unit-cube normalised copy of the mesh."""
    index = _rotation_index(orientation_or_rotation)
    transform = np.eye(4)
    transform[:3, :3] = ROTATIONS[index]
    mesh = mesh.copy()
    mesh.apply_transform(transform)
    return normalize_to_unit_cube(mesh)


EXCLUDE = "exclude"  # an override's value for a mesh no axis-aligned rotation can fix (tilted, broken)


def _check_index(path: Path, where: str, name, value) -> tuple[str, int | None]:
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{path}: {where}: mesh name must be a non-empty string, got {name!r}")
    if isinstance(value, str) and value.strip() == EXCLUDE:
        return name.strip(), None
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InputError(f"{path}: {where}: rotation index must be an integer 0..23 or "
                             f"'{EXCLUDE}', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(ROTATIONS):
        raise InputError(f"{path}: {where}: rotation index must be an integer 0..23 or '{EXCLUDE}', got {value!r}")
    return name.strip(), value


def load_overrides(path) -> dict[str, int | None]:
    """Manual orientations: mesh name -> rotation index (0..23), or None where the file says
    'exclude' (the mesh is left out of the dataset).

    A .json file holds one object {"name": index, ...}. Anything else is read as TSV: one
    `name<TAB>index` per line, blank lines and lines starting with # skipped, names unique.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read overrides file: {error}") from None
    out: dict[str, int | None] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: line {error.lineno}: invalid JSON: {error.msg}") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a JSON object of mesh name -> rotation index")
        lines = text.splitlines()
        for name, value in data.items():
            quoted = json.dumps(name)
            lineno = next((i for i, line in enumerate(lines, 1) if quoted in line), None)
            where = f"line {lineno} ({quoted})" if lineno else f"entry {quoted}"
            key, index = _check_index(path, where, name, value)
            out[key] = index
        return out
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 2:
            raise InputError(f"{path}: line {lineno}: expected 'name<TAB>index', got {stripped!r}")
        key, index = _check_index(path, f"line {lineno}", fields[0], fields[1])
        if key in out:
            raise InputError(f"{path}: line {lineno}: duplicate mesh name {key!r}")
        out[key] = index
    return out
