"""Building blocks of the procedural shapes (recon.train.shapes): closed primitives and the parameter draw.

Every primitive is a closed trimesh (boxes, frusta, hulls, wings...); `Draw` draws a family's
parameters from an rng and records them, and `Parts` is what a family builder returns.
Torch-free, like the rest of the shape code.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import trimesh


# Round things (wheels, legs, fuselages) use this many sides: smooth enough at 128-256 px renders,
# and it keeps objects at a few thousand faces for the ray caster.
SECTIONS = 20


# ---------------------------------------------------------------------------------- parameters


class Parts(list):
    """The parts list a category builder returns, plus the family and parameters it drew."""

    def __init__(self, parts: Sequence[trimesh.Trimesh], family: str, params: dict):
        super().__init__(parts)
        self.family = family
        self.params = params


class Draw:
    """Draws parameters from an rng and records them, so a Shape carries what made it."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.params: dict = {}

    def _keep(self, name: str, value):
        if name in self.params:
            raise KeyError(f"parameter {name!r} drawn twice")
        self.params[name] = value
        return value

    def uniform(self, name: str, lo: float, hi: float) -> float:
        # Geometry uses the rounded value too, so the recorded params reproduce the object.
        return self._keep(name, round(float(self.rng.uniform(lo, hi)), 4))

    def integer(self, name: str, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi], both ends included."""
        return self._keep(name, int(self.rng.integers(lo, hi + 1)))

    def choice(self, name: str, options: Sequence[str], p: Sequence[float] | None = None) -> str:
        if p is not None:
            p = np.asarray(p, float) / np.sum(p)
        return self._keep(name, str(options[int(self.rng.choice(len(options), p=p))]))

    def flag(self, name: str, probability: float) -> bool:
        return self._keep(name, bool(self.rng.random() < probability))


# ---------------------------------------------------------------------------------- primitives


def box(center, size) -> trimesh.Trimesh:
    return trimesh.creation.box(extents=size, transform=trimesh.transformations.translation_matrix(center))


def hull(points) -> trimesh.Trimesh:
    """Convex hull: the workhorse for tapered, swept and lofted parts (always closed)."""
    return trimesh.convex.convex_hull(np.asarray(points, float))


def _perpendicular_basis(axis):
    axis = np.asarray(axis, float)
    axis = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(axis, u)


def circle_points(center, axis, radius, sections=SECTIONS):
    u, v = _perpendicular_basis(axis)
    angles = np.linspace(0.0, 2.0 * np.pi, sections, endpoint=False)
    return np.asarray(center, float) + radius * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v)


def frustum(p0, p1, r0, r1=None, sections=SECTIONS) -> trimesh.Trimesh:
    """Cylinder from p0 to p1 whose radius goes from r0 to r1 (legs, columns, nacelles)."""
    r1 = r0 if r1 is None else r1
    axis = np.asarray(p1, float) - np.asarray(p0, float)
    return hull(np.vstack([circle_points(p0, axis, r0, sections), circle_points(p1, axis, r1, sections)]))


def cylinder(p0, p1, r, sections=SECTIONS) -> trimesh.Trimesh:
    return trimesh.creation.cylinder(radius=r, segment=[p0, p1], sections=sections)


def capsule(p0, p1, r) -> trimesh.Trimesh:
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    length = float(np.linalg.norm(p1 - p0))
    transform = trimesh.geometry.align_vectors([0.0, 0.0, 1.0], (p1 - p0) / length)
    transform[:3, 3] = (p0 + p1) / 2.0
    return trimesh.creation.capsule(height=length, radius=r, count=[12, 12], transform=transform)


def ellipsoid(center, radii, subdivisions=2) -> trimesh.Trimesh:
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    return trimesh.Trimesh(sphere.vertices * np.asarray(radii, float) + np.asarray(center, float),
                           sphere.faces.copy())


def torus(center, major, minor) -> trimesh.Trimesh:
    """Horizontal ring (a stool's foot ring)."""
    # trimesh's torus lies in the xy plane: turn it to lie flat in xz.
    transform = trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0])
    transform[:3, 3] = center
    return trimesh.creation.torus(major, minor, major_sections=24, minor_sections=8, transform=transform)


def rod(p0, p1, t0, t1=None) -> trimesh.Trimesh:
    """Square-section rod with horizontal end faces (square legs that may splay and taper)."""
    t1 = t0 if t1 is None else t1
    corners = np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]], float) / 2.0
    points = [np.asarray(p, float) + [c[0] * t, 0.0, c[1] * t] for p, t in ((p0, t0), (p1, t1)) for c in corners]
    return hull(points)


def prism(outline, axis: str, lo: float, hi: float) -> trimesh.Trimesh:
    """Extrude a convex 2D outline along an axis between lo and hi.

    The outline's two coordinates are the remaining axes in x, y, z order (axis "y": (x, z)).
    """
    outline = np.asarray(outline, float)
    keep = [i for i in range(3) if "xyz"[i] != axis]
    points = []
    for value in (lo, hi):
        p = np.zeros((len(outline), 3))
        p[:, keep] = outline
        p[:, "xyz".index(axis)] = value
        points.append(p)
    return hull(np.vstack(points))


def superellipse(half_a, half_b, exponent=2.0, n=24):
    """Closed outline between a rectangle (large exponent) and an ellipse (exponent 2)."""
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return np.stack([half_a * np.sign(c) * np.abs(c) ** (2.0 / exponent),
                     half_b * np.sign(s) * np.abs(s) ** (2.0 / exponent)], axis=1)


def body_section(z, half_width, y0, y1, bevel_low=0.0, bevel_high=0.0):
    """Octagonal cross-section at z: a box section with chamfered corners (car bodies)."""
    return [[sx * half_width, y0 + bevel_low, z] for sx in (-1, 1)] + \
           [[sx * (half_width - bevel_low), y0, z] for sx in (-1, 1)] + \
           [[sx * half_width, y1 - bevel_high, z] for sx in (-1, 1)] + \
           [[sx * (half_width - bevel_high), y1, z] for sx in (-1, 1)]


def ellipse_section(z, cy, rx, ry, n=16):
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([rx * np.cos(t), cy + ry * np.sin(t), np.full(n, z)], axis=1)


def _airfoil(chord, thickness):
    """(chordwise, thickness-wise) points of a symmetric section, leading edge at 0."""
    c = np.array([0.0, 0.06, 0.3, 0.65, 1.0]) * chord
    h = np.array([0.0, 0.75, 1.0, 0.65, 0.08]) * thickness / 2.0
    return [(c[0], 0.0)] + [(ci, hi) for ci, hi in zip(c[1:], h[1:])] + [(ci, -hi) for ci, hi in zip(c[1:], h[1:])]


def wing(root, span_dir, thick_dir, span, root_chord, tip_chord, sweep, thickness=0.1) -> trimesh.Trimesh:
    """A straight-tapered lifting surface: hull of the root and tip sections.

    root is the root leading edge; the chord runs along +z (towards the tail); sweep is how far the
    tip's leading edge sits behind the root's; thickness is a fraction of the chord. Fins are wings
    whose span_dir points up.
    """
    root = np.asarray(root, float)
    s = np.asarray(span_dir, float) / np.linalg.norm(span_dir)
    t = np.asarray(thick_dir, float) / np.linalg.norm(thick_dir)
    chord_dir = np.array([0.0, 0.0, 1.0])
    points = []
    for offset, chord, back in ((0.0, root_chord, 0.0), (span, tip_chord, sweep)):
        for c, h in _airfoil(chord, max(thickness * chord, 1e-3)):
            points.append(root + s * offset + chord_dir * (back + c) + t * h)
    return hull(points)


def rotate_x(meshes, angle_deg, pivot):
    """Rotate parts about an x-parallel axis; positive angles tip +y towards +z (a reclining back)."""
    matrix = trimesh.transformations.rotation_matrix(np.radians(angle_deg), [1, 0, 0], pivot)
    return [m.apply_transform(matrix) for m in meshes]
