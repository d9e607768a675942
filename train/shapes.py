"""Procedural ShapeNet-like meshes: chairs, cars and airplanes.

Each category is a set of parametric families (office chair, pickup, fighter, ...) with continuous
variation in every proportion, built as a union of small closed primitives (boxes, frusta, convex
lofts, wings). The parts may overlap: the voxelizer fills their union, and the renderer only needs
each part to be closed. `make_shape` puts the result in the canonical frame of docs/design.md
(y up, facing -z, centred, largest extent 1).

Torch-free on purpose: data generation runs in worker processes that should not pay for torch.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np
import trimesh

from recon.runtime.errors import InputError

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


class _Draw:
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


# ---------------------------------------------------------------------------------- chairs
# Units are metres. Seat front at -z, back at +z.


def _seat(d: _Draw, shape: str, width: float, depth: float, y0: float, y1: float):
    """Seat slab and the (x, z) outline points where legs go (inset from the edge)."""
    if shape == "round":
        outline = superellipse(width / 2, depth / 2, 2.0, n=24)
    elif shape == "rounded":
        outline = superellipse(width / 2, depth / 2, d.uniform("seat_roundness", 3.0, 6.0), n=28)
    elif shape == "trapezoid":
        back = width / 2 * d.uniform("seat_back_taper", 0.75, 0.92)
        outline = [[-width / 2, -depth / 2], [width / 2, -depth / 2], [back, depth / 2], [-back, depth / 2]]
    else:  # square
        outline = [[-width / 2, -depth / 2], [width / 2, -depth / 2], [width / 2, depth / 2], [-width / 2, depth / 2]]
    return prism(outline, "y", y0, y1), np.asarray(outline, float)


def _leg_tops(outline, shape: str, count: int, width, depth, inset):
    """Where legs meet the seat, inset so the legs sit under it."""
    if shape in ("round", "rounded") or count != 4:
        # Legs spread evenly on the ellipse; with 3 legs one goes to the back, two to the front.
        start = np.pi / 4 if count == 4 else np.pi / 2
        angles = start + 2 * np.pi * np.arange(count) / count
        return np.stack([(width / 2 - inset) * np.cos(angles), (depth / 2 - inset) * np.sin(angles)], axis=1)
    sign = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    corners = outline - sign * inset
    return corners


def _legs(tops_xz, y_top, splay, thickness, round_legs, taper):
    parts, bottoms = [], []
    for x, z in tops_xz:
        out = np.array([x, z]) / max(np.hypot(x, z), 1e-9)
        bottom = np.array([x + out[0] * splay, 0.0, z + out[1] * splay])
        top = np.array([x, y_top, z])
        if round_legs:
            parts.append(frustum(bottom, top, thickness / 2 * taper, thickness / 2))
        else:
            parts.append(rod(bottom, top, thickness * taper, thickness))
        bottoms.append(bottom)
    return parts, np.array(bottoms)


def _stretchers(d: _Draw, tops, bottoms, y_top, style: str, radius):
    """Rungs between legs: a box frame, an H (sides + cross bar) or a ring for stools."""
    if style == "none":
        return []
    height = d.uniform("stretcher_height", 0.12, 0.3) * y_top
    f = height / y_top
    pts = bottoms + (np.column_stack([tops[:, 0], np.full(len(tops), y_top), tops[:, 1]]) - bottoms) * f
    n = len(pts)
    if style == "ring":
        centre = pts.mean(axis=0)
        major = float(np.mean(np.hypot(pts[:, 0] - centre[0], pts[:, 2] - centre[2])))
        return [torus(centre, major, radius)]
    if style == "H" and n == 4:
        left_mid = (pts[0] + pts[3]) / 2
        right_mid = (pts[1] + pts[2]) / 2
        return [cylinder(pts[0], pts[3], radius), cylinder(pts[1], pts[2], radius),
                cylinder(left_mid, right_mid, radius)]
    return [cylinder(pts[i], pts[(i + 1) % n], radius) for i in range(n)]


def _back(d: _Draw, width, y0, z_back, height, style: str):
    """Back rest in the plane z = z_back rising from y0, upright (the caller tilts it)."""
    thickness = d.uniform("back_thickness", 0.02, 0.06)
    post = d.uniform("back_post", 0.025, 0.05)
    z = z_back - thickness / 2
    parts = []
    if style == "solid":
        gap = d.uniform("back_gap", 0.0, 0.12) if d.flag("back_on_posts", 0.4) else 0.0
        arch = d.uniform("back_arch", 0.0, 0.12)
        half = width / 2
        # Flat sides, rounded (or flat, when arch ~ 0) top: a convex outline.
        xs = np.linspace(-half, half, 13)
        top = y0 + height - arch + arch * np.sqrt(np.clip(1 - (xs / half) ** 2, 0, 1))
        outline = np.vstack([[[-half, y0 + gap], [half, y0 + gap]], np.stack([xs, top], axis=1)[::-1]])
        parts.append(prism(outline, "z", z - thickness / 2, z + thickness / 2))
        if gap > 0:
            for sx in (-1, 1):
                parts.append(rod([sx * half * 0.7, y0 - 0.01, z], [sx * half * 0.7, y0 + gap + 0.05, z], post))
        return parts
    # Framed backs: two posts and a top rail, filled with slats, rails or spindles.
    rail = d.uniform("back_rail", 0.04, 0.1)
    top = y0 + height
    for sx in (-1, 1):
        parts.append(rod([sx * (width / 2 - post / 2), y0 - 0.01, z], [sx * (width / 2 - post / 2), top, z], post))
    parts.append(box([0, top - rail / 2, z], [width, rail, max(thickness, post)]))
    count = d.integer("back_members", 2, 6)
    inner = width - 2 * post
    if style == "slats":
        slat = min(d.uniform("slat_width", 0.025, 0.09), inner / (count + 1))
        bottom_rail = y0 + d.uniform("slat_bottom", 0.04, 0.12)
        parts.append(box([0, bottom_rail, z], [width, 0.03, thickness]))
        for x in np.linspace(-inner / 2 + slat, inner / 2 - slat, count):
            parts.append(box([x, (bottom_rail + top) / 2, z], [slat, top - bottom_rail, thickness * 0.8]))
    elif style == "ladder":
        for y in np.linspace(y0 + height * 0.35, top - rail * 1.5, count):
            parts.append(box([0, y, z], [width, 0.035, thickness]))
    else:  # spindles
        bottom_rail = y0 + 0.05
        parts.append(box([0, bottom_rail, z], [width, 0.03, thickness]))
        for x in np.linspace(-inner / 2 + 0.03, inner / 2 - 0.03, count + 1):
            parts.append(cylinder([x, bottom_rail, z], [x, top - rail / 2, z], 0.009, sections=10))
    return parts


def _arms(d: _Draw, half_span, y_seat, depth, z_back, panel: bool, padded: bool = False):
    """Armrests (with front posts or solid side panels) at the seat's sides; padded ones are rounded."""
    height = d.uniform("arm_height", 0.17, 0.27)
    pad_w = d.uniform("arm_width", 0.04, 0.1)
    front = -depth / 2 + d.uniform("arm_front_inset", 0.0, 0.06)
    y = y_seat + height
    parts = []
    for sx in (-1, 1):
        x = sx * (half_span + pad_w / 2 - 0.01)
        if panel:
            parts.append(box([x, y / 2, (front + z_back) / 2], [pad_w, y, z_back - front]))
        else:
            if padded:
                parts.append(capsule([x, y, front + pad_w / 2], [x, y, z_back - pad_w / 2], pad_w / 2))
            else:
                parts.append(box([x, y, (front + z_back) / 2], [pad_w, 0.035, z_back - front]))
            parts.append(rod([x, y_seat - 0.02, front + 0.03], [x, y, front + 0.03], 0.03))
    return parts, y


def _legged_chair(d: _Draw, family: str):
    """Dining, arm and sled chairs: a seat on legs (or runners) with a back."""
    width = d.uniform("seat_width", 0.38, 0.58)
    depth = d.uniform("seat_depth", 0.36, 0.55) if family != "armchair" else d.uniform("seat_depth", 0.45, 0.6)
    seat_h = d.uniform("seat_height", 0.38, 0.5)
    seat_t = d.uniform("seat_thickness", 0.025, 0.08) if family != "armchair" else d.uniform("seat_thickness", 0.08, 0.16)
    shapes = ["square", "rounded", "trapezoid", "round"] if family == "dining_chair" else ["square", "rounded", "trapezoid"]
    shape = d.choice("seat_shape", shapes, p=[3, 2, 2, 1][:len(shapes)])
    if shape == "round":
        depth = width
    seat, outline = _seat(d, shape, width, depth, seat_h - seat_t, seat_h)
    parts = [seat]
    leg_t = d.uniform("leg_thickness", 0.022, 0.06)
    if family == "sled_chair":
        # Two side frames: a runner on the floor and two uprights, like a cantilever chair.
        tube = leg_t / 2
        for sx in (-1, 1):
            x = sx * (width / 2 - tube)
            zf, zb = -depth / 2 + 0.02, depth / 2 - 0.02
            parts += [cylinder([x, tube, zf - 0.04], [x, tube, zb + 0.04], tube),
                      cylinder([x, tube, zf], [x, seat_h - seat_t, zf + 0.02], tube),
                      cylinder([x, tube, zb], [x, seat_h - seat_t, zb - 0.02], tube)]
    else:
        round_legs = d.flag("round_legs", 0.5)
        splay = d.uniform("leg_splay", 0.0, 0.07)
        taper = d.uniform("leg_taper", 0.55, 1.0)
        tops = _leg_tops(outline, shape, 4, width, depth, leg_t * 0.8 + 0.01)
        legs, bottoms = _legs(tops, seat_h - seat_t + 0.005, splay, leg_t, round_legs, taper)
        parts += legs
        parts += _stretchers(d, tops, bottoms, seat_h - seat_t,
                             d.choice("stretchers", ["none", "box", "H"], p=[3, 1, 1]), leg_t * 0.3)
    # Armrests first: the back must rise clearly above them so the chair's top is its back.
    arm_top = seat_h
    if family == "armchair":
        arms, arm_top = _arms(d, width / 2, seat_h, depth, depth / 2, panel=d.flag("arm_panels", 0.4))
        parts += arms
    style = d.choice("back_style", ["solid", "slats", "ladder", "spindles"], p=[3, 2, 2, 1])
    height = d.uniform("back_height", 0.25, 0.7)
    height = max(height, arm_top - seat_h + 0.15)
    if shape == "round":
        # A bistro back: narrower, standing where its posts meet the rim.
        back_w = width * d.uniform("back_width", 0.55, 0.75)
        z_back = np.sqrt((width / 2) ** 2 - (back_w / 2) ** 2) + 0.01
    else:
        back_w = width * (d.uniform("back_width", 0.8, 1.0) if shape != "trapezoid" else 0.85)
        z_back = depth / 2
    back = _back(d, back_w, seat_h, z_back, height, style)
    parts += rotate_x(back, d.uniform("back_tilt", 0.0, 16.0), [0.0, seat_h, z_back])
    return parts


def _office_chair(d: _Draw, family: str):
    """Swivel chair: star base (optionally on casters), gas column, cushion, back on a spine."""
    feet = d.integer("star_feet", 4, 5)
    base_r = d.uniform("base_radius", 0.24, 0.35)
    foot_t = d.uniform("foot_thickness", 0.03, 0.06)
    casters = d.flag("casters", 0.75)
    lift = 0.06 if casters else 0.0
    seat_h = d.uniform("seat_height", 0.42, 0.55)
    seat_t = d.uniform("seat_thickness", 0.05, 0.11)
    width = d.uniform("seat_width", 0.42, 0.56)
    depth = d.uniform("seat_depth", 0.4, 0.52)
    parts = []
    # One foot points straight back (5 feet) or the feet sit diagonally (4): symmetric about x = 0.
    start = np.pi / 2 if feet == 5 else np.pi / 4
    for angle in start + 2 * np.pi * np.arange(feet) / feet:
        tip = np.array([base_r * np.cos(angle), lift + foot_t / 2, base_r * np.sin(angle)])
        parts.append(hull(np.vstack([circle_points([0, lift + foot_t, 0], [0, 1, 0], foot_t, 8),
                                     circle_points([0, lift, 0], [0, 1, 0], foot_t, 8),
                                     circle_points(tip, [0, 1, 0], foot_t * 0.45, 8),
                                     circle_points(tip + [0, foot_t / 2, 0], [0, 1, 0], foot_t * 0.45, 8)])))
        if casters:
            parts.append(cylinder(tip + [-0.02, -foot_t / 2 - 0.03, 0], tip + [0.02, -foot_t / 2 - 0.03, 0], 0.03, 12))
    column_r = d.uniform("column_radius", 0.02, 0.04)
    parts.append(frustum([0, lift + foot_t / 2, 0], [0, seat_h - seat_t, 0], column_r * 1.5, column_r))
    parts.append(box([0, seat_h - seat_t - 0.03, 0.02], [width * 0.5, 0.06, depth * 0.5]))
    seat, _ = _seat(d, "rounded", width, depth, seat_h - seat_t, seat_h)
    parts.append(seat)
    arm_top = seat_h
    if d.flag("armrests", 0.6):
        arms, arm_top = _arms(d, width / 2, seat_h - seat_t, depth * 0.8, depth / 2 - 0.05, panel=False, padded=True)
        parts += arms
    gap = d.uniform("back_gap", 0.04, 0.14)
    height = max(d.uniform("back_height", 0.35, 0.8), arm_top - seat_h + 0.2 - gap)
    back_w = width * d.uniform("back_width", 0.75, 1.0)
    thick = d.uniform("back_thickness", 0.04, 0.09)
    z = depth / 2 + thick / 2
    outline = superellipse(back_w / 2, height / 2, d.uniform("back_roundness", 2.5, 6.0), n=28)
    outline[:, 1] += seat_h + gap + height / 2
    back = [prism(outline, "z", z - thick / 2, z + thick / 2),
            box([0, seat_h + gap / 2 - 0.02, z - 0.01], [0.06, gap + 0.12, 0.03]),
            box([0, seat_h - seat_t - 0.02, depth / 2 - 0.05], [0.06, 0.03, 0.16])]
    if height > 0.6 and d.flag("headrest", 0.5):
        top = seat_h + gap + height
        back.append(prism(superellipse(back_w * 0.33, 0.07, 3.0), "z", z - thick / 2, z + thick / 2))
        back[-1].apply_translation([0, top + 0.1, 0])
        back.append(box([0, top + 0.02, z], [0.04, 0.1, 0.02]))
    parts += rotate_x(back, d.uniform("back_tilt", 2.0, 15.0), [0.0, seat_h, depth / 2])
    return parts


def _pedestal_chair(d: _Draw, family: str):
    """Tulip chair: round base plate, single column, round seat, shell back."""
    seat_h = d.uniform("seat_height", 0.42, 0.5)
    radius = d.uniform("seat_radius", 0.22, 0.3)
    seat_t = d.uniform("seat_thickness", 0.03, 0.08)
    base_r = d.uniform("base_radius", 0.2, 0.3)
    parts = [frustum([0, 0, 0], [0, d.uniform("base_height", 0.02, 0.06), 0], base_r, base_r * 0.8, 24),
             frustum([0, 0.02, 0], [0, seat_h - seat_t, 0], d.uniform("column_radius", 0.025, 0.05),
                     d.uniform("column_top_radius", 0.03, 0.08)),
             frustum([0, seat_h - seat_t, 0], [0, seat_h, 0], radius * 0.95, radius, 24)]
    height = d.uniform("back_height", 0.3, 0.55)
    thick = d.uniform("back_thickness", 0.025, 0.05)
    # The shell wraps around the back half of the seat: a few panels following the rim.
    wrap = d.uniform("back_wrap_deg", 40.0, 80.0)
    angles = np.radians(np.linspace(90 - wrap, 90 + wrap, 5))
    rim = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    back = []
    for (x0, z0), (x1, z1) in zip(rim[:-1], rim[1:]):
        points = []
        for x, z in ((x0, z0), (x1, z1)):
            inward = np.array([x, z]) / radius * thick
            for y in (seat_h - 0.02, seat_h + height):
                points += [[x, y, z], [x - inward[0], y, z - inward[1]]]
        back.append(hull(points))
    parts += rotate_x(back, d.uniform("back_tilt", 3.0, 14.0), [0.0, seat_h, radius])
    return parts


def _stool(d: _Draw, family: str):
    """Backless seats: low stools and bar stools on 3-4 legs or a pedestal, often with a foot ring."""
    bar = family == "bar_stool"
    seat_h = d.uniform("seat_height", 0.62, 0.8) if bar else d.uniform("seat_height", 0.42, 0.55)
    shape = d.choice("seat_shape", ["round", "square", "rounded"], p=[3, 1, 1])
    width = d.uniform("seat_width", 0.28, 0.4)
    depth = width if shape == "round" else width * d.uniform("seat_aspect", 0.8, 1.0)
    seat_t = d.uniform("seat_thickness", 0.025, 0.06)
    seat, outline = _seat(d, shape, width, depth, seat_h - seat_t, seat_h)
    parts = [seat]
    if bar and d.flag("pedestal", 0.35):
        base_r = d.uniform("base_radius", 0.18, 0.25)
        parts += [frustum([0, 0, 0], [0, 0.03, 0], base_r, base_r * 0.9, 24),
                  cylinder([0, 0.02, 0], [0, seat_h - seat_t, 0], d.uniform("column_radius", 0.025, 0.045)),
                  torus([0, seat_h * 0.35, 0], base_r * 0.9, 0.012)]
        if d.flag("low_back", 0.3):
            parts += rotate_x([box([0, seat_h + 0.1, depth / 2 - 0.02], [width * 0.8, 0.14, 0.03])],
                              8.0, [0, seat_h, depth / 2])
        return parts
    legs_n = d.integer("legs", 3, 4) if shape == "round" else 4
    leg_t = d.uniform("leg_thickness", 0.025, 0.05)
    splay = d.uniform("leg_splay", 0.02, 0.12 if bar else 0.09)
    tops = _leg_tops(outline, shape if legs_n == 4 else "round", legs_n, width, depth, leg_t + 0.01)
    legs, bottoms = _legs(tops, seat_h - seat_t + 0.005, splay, leg_t,
                          d.flag("round_legs", 0.6), d.uniform("leg_taper", 0.6, 1.0))
    parts += legs
    rings = ["ring", "box"] if bar else ["none", "box", "ring"]
    parts += _stretchers(d, tops, bottoms, seat_h - seat_t, d.choice("stretchers", rings), leg_t * 0.35)
    return parts


CHAIR_FAMILIES: dict[str, Callable[[_Draw, str], list]] = {
    "dining_chair": _legged_chair,
    "armchair": _legged_chair,
    "sled_chair": _legged_chair,
    "office_chair": _office_chair,
    "pedestal_chair": _pedestal_chair,
    "stool": _stool,
    "bar_stool": _stool,
}


# ---------------------------------------------------------------------------------- cars
# Units are metres. Front bumper at -z. Per family: (lo, hi) ranges of the proportions that
# tell the body styles apart; the builder below is shared.

CAR_FAMILIES: dict[str, dict] = {
    #                length       width          wheel r       clearance     belt line    roof          hood frac     deck frac     windshield deg rear deg
    "sedan":     dict(length=(4.3, 5.1), width=(1.72, 1.9), wheel=(0.3, 0.34), ground=(0.14, 0.2), belt=(0.78, 0.92), roof=(1.36, 1.5), hood=(0.25, 0.32), deck=(0.16, 0.24), ws=(24, 34), rear=(20, 32)),
    "hatchback": dict(length=(3.6, 4.3), width=(1.66, 1.82), wheel=(0.29, 0.33), ground=(0.14, 0.2), belt=(0.8, 0.95), roof=(1.4, 1.55), hood=(0.2, 0.27), deck=(0.0, 0.04), ws=(26, 36), rear=(50, 75)),
    "suv":       dict(length=(4.3, 5.0), width=(1.82, 2.0), wheel=(0.35, 0.42), ground=(0.24, 0.32), belt=(1.0, 1.15), roof=(1.65, 1.9), hood=(0.2, 0.27), deck=(0.0, 0.03), ws=(30, 42), rear=(65, 85)),
    "pickup":    dict(length=(5.0, 5.9), width=(1.85, 2.0), wheel=(0.36, 0.42), ground=(0.26, 0.34), belt=(1.02, 1.18), roof=(1.75, 1.95), hood=(0.24, 0.3), deck=(0.3, 0.42), ws=(30, 40), rear=(80, 88)),
    "sports_car": dict(length=(4.1, 4.7), width=(1.85, 2.0), wheel=(0.31, 0.35), ground=(0.08, 0.13), belt=(0.66, 0.78), roof=(1.1, 1.28), hood=(0.3, 0.38), deck=(0.04, 0.15), ws=(17, 26), rear=(12, 22)),
    "minivan":   dict(length=(4.5, 5.2), width=(1.8, 1.98), wheel=(0.31, 0.36), ground=(0.15, 0.2), belt=(0.95, 1.05), roof=(1.68, 1.85), hood=(0.12, 0.18), deck=(0.0, 0.02), ws=(28, 38), rear=(72, 85)),
}


def _car(d: _Draw, family: str):
    spec = {k: d.uniform(k, *v) for k, v in CAR_FAMILIES[family].items()}
    length, width, wheel_r, ground = spec["length"], spec["width"], spec["wheel"], spec["ground"]
    belt, roof = spec["belt"], spec["roof"]
    half_l, half_w = length / 2, width / 2
    front_drop = d.uniform("nose_drop", 0.05, 0.25) * (belt - ground)
    rear_drop = d.uniform("tail_drop", 0.0, 0.15) * (belt - ground)
    bevel = d.uniform("body_bevel", 0.03, 0.14)
    nose = d.uniform("nose_length", 0.05, 0.16) * length
    z_ws = -half_l + spec["hood"] * length           # windshield base
    z_cabin_end = half_l - spec["deck"] * length     # rear glass base (cab back for pickups)
    cabin_h = roof - belt
    z_roof0 = z_ws + cabin_h / np.tan(np.radians(spec["ws"]))
    z_roof1 = z_cabin_end - cabin_h / np.tan(np.radians(spec["rear"]))
    if z_roof1 < z_roof0 + 0.35:  # a fastback can't run past the roof: keep a minimum roof length
        z_roof1 = z_roof0 + 0.35
        z_cabin_end = max(z_cabin_end, z_roof1 + 0.05)
    pickup = family == "pickup"
    body_end = z_cabin_end + 0.02 if pickup else half_l
    # Axles first: below the wheel-arch line the body is cut back around the wheels, so they show.
    tyre_w = d.uniform("tyre_width", 0.18, 0.3)
    front_axle = max(-half_l + d.uniform("front_overhang", 0.16, 0.22) * length, -half_l + wheel_r + 0.2)
    rear_axle = min(half_l - d.uniform("rear_overhang", 0.17, 0.25) * length, half_l - wheel_r - 0.2)
    arch = max(wheel_r * d.uniform("arch_height", 1.1, 1.4), ground + 0.12)
    sections = [body_section(-half_l, half_w - bevel, arch, belt - front_drop, 0.04, bevel),
                body_section(-half_l + nose, half_w, arch, belt - front_drop * 0.4, 0.04, bevel),
                body_section(z_ws, half_w, arch, belt, 0.04, bevel)]
    if pickup:
        sections.append(body_section(body_end, half_w, arch, belt, 0.04, bevel))
    else:
        sections += [body_section(half_l - nose * 0.6, half_w, arch, belt - rear_drop * 0.3, 0.04, bevel),
                     body_section(half_l, half_w - bevel * 0.7, arch, belt - rear_drop, 0.04, bevel)]
    parts = [hull(np.vstack(sections))]
    clear = wheel_r + 0.06
    low = arch + 0.02
    parts += [hull(body_section(-half_l, half_w - bevel, ground + 0.1, low) +
                   body_section(front_axle - clear, half_w, ground + 0.05, low)),
              box([0, (ground + low) / 2, (front_axle + rear_axle) / 2],
                  [width - 0.04, low - ground, rear_axle - front_axle - 2 * clear]),
              hull(body_section(rear_axle + clear, half_w, ground + 0.05, low) +
                   body_section(half_l, half_w - bevel * 0.7, ground + 0.1, low))]
    # Greenhouse: trapezoid in profile, narrower at the roof (tumblehome).
    top_w = half_w * d.uniform("tumblehome", 0.72, 0.9)
    cabin_w = half_w - 0.04
    roof_bevel = min(0.08, cabin_h * 0.25)
    parts.append(hull([[sx * cabin_w, belt - 0.03, z] for sx in (-1, 1) for z in (z_ws, z_cabin_end)] +
                      [[sx * top_w, roof - roof_bevel, z] for sx in (-1, 1) for z in (z_roof0, z_roof1)] +
                      [[sx * (top_w - roof_bevel), roof, z] for sx in (-1, 1)
                       for z in (z_roof0 + roof_bevel, z_roof1 - roof_bevel)]))
    if pickup:
        # Open bed: floor, two side walls, tailgate; the cab's back is its front wall.
        bed_floor = belt - d.uniform("bed_depth", 0.4, 0.55)
        wall = 0.06
        bed_len = half_l - body_end + 0.02
        bed_mid = (half_l + body_end) / 2
        parts.append(box([0, (min(arch, bed_floor - 0.08) + bed_floor) / 2, bed_mid],
                         [width, bed_floor - min(arch, bed_floor - 0.08), bed_len]))
        for sx in (-1, 1):
            parts.append(box([sx * (half_w - wall / 2), (bed_floor + belt) / 2, bed_mid],
                             [wall, belt - bed_floor, bed_len]))
        parts.append(box([0, (bed_floor + belt) / 2 - 0.02, half_l - wall / 2], [width, belt - bed_floor - 0.04, wall]))
    # Wheels: axis along x, a little proud of the body side.
    for z in (front_axle, rear_axle):
        for sx in (-1, 1):
            outer = sx * (half_w + 0.03)
            inner = outer - sx * tyre_w
            parts.append(cylinder([inner, wheel_r, z], [outer, wheel_r, z], wheel_r))
            parts.append(cylinder([outer, wheel_r, z], [outer + sx * 0.015, wheel_r, z], wheel_r * 0.6, 12))
    # Bumpers: slightly proud of the body, low down.
    bump_h = d.uniform("bumper_height", 0.1, 0.22)
    bump_y = ground + d.uniform("bumper_lift", 0.05, 0.2)
    for z_end, sz in ((-half_l, -1), (half_l, 1)):
        parts.append(box([0, bump_y + bump_h / 2, z_end + sz * 0.02], [width - 0.1, bump_h, 0.12]))
    # Side mirrors at the windshield base.
    for sx in (-1, 1):
        parts.append(box([sx * (half_w + 0.06), belt + 0.08, z_ws + 0.2], [0.14, 0.1, 0.06]))
    # Headlights: small boxes set into the nose corners, they make the front readable.
    for sx in (-1, 1):
        parts.append(box([sx * (half_w - 0.3), belt - front_drop - 0.08, -half_l + 0.06], [0.36, 0.09, 0.1]))
    if family in ("sports_car", "sedan", "hatchback") and d.flag("spoiler", 0.5 if family == "sports_car" else 0.15):
        deck_y = belt - rear_drop * 0.5
        wing_h = d.uniform("spoiler_height", 0.05, 0.25)
        z = half_l - 0.2
        for sx in (-1, 1):
            parts.append(box([sx * half_w * 0.55, deck_y + wing_h / 2, z], [0.04, wing_h + 0.08, 0.08]))
        parts.append(box([0, deck_y + wing_h + 0.02, z + 0.02], [width * 0.85, 0.03, d.uniform("spoiler_chord", 0.15, 0.3)]))
    if family in ("suv", "minivan") and d.flag("roof_rails", 0.5):
        for sx in (-1, 1):
            parts.append(box([sx * top_w * 0.85, roof + 0.04, (z_roof0 + z_roof1) / 2], [0.05, 0.05, (z_roof1 - z_roof0) * 0.9]))
    if family == "suv" and d.flag("spare_wheel", 0.4):
        parts.append(cylinder([0, belt - 0.15, half_l], [0, belt - 0.15, half_l + 0.22], wheel_r))
    return parts


# ---------------------------------------------------------------------------------- airplanes
# Units: fuselage length 1. Nose at -z, tail at +z.


def fuselage(length, radius, nose_frac, tail_frac, tail_radius, squash=1.0, bluntness=0.5, pod=1.0, droop=0.0):
    """Loft of elliptical sections: rounded/pointed nose, straight middle, tail cone swept up.

    The body's axis is y = 0. bluntness 0.5 gives an elliptic nose (airliner), 1.0 a parabolic point
    (fighter); droop lowers the nose tip. pod < 1 thins the rear so the body becomes a glider's pod
    and boom. The top line stays level (y = radius * squash) over the tail so fins sit on it.
    """
    z0, z1 = -length / 2, length / 2
    nose, tail = nose_frac * length, tail_frac * length
    sections = []
    for t in (0.0, 0.04, 0.12, 0.25, 0.45, 0.7, 1.0):
        r = radius * max((t * (2 - t)) ** bluntness, 0.03)
        sections.append(ellipse_section(z0 + t * nose, -(radius - r) * squash * droop, r, r * squash))
    mid_r = radius * pod
    sections.append(ellipse_section(z1 - tail, radius * squash - mid_r * squash, mid_r, mid_r * squash))
    for t in (0.5, 1.0):
        r = mid_r + (tail_radius - mid_r) * t
        sections.append(ellipse_section(z1 - tail + t * tail, radius * squash - r * squash, r, r * squash))
    return hull(np.vstack(sections))


def _wing_pair(root, span, root_chord, tip_chord, sweep, dihedral_deg, thickness=0.1):
    a = np.radians(dihedral_deg)
    return [wing(root, [sx * np.cos(a), np.sin(a), 0], [-sx * np.sin(a), np.cos(a), 0],
                 span, root_chord, tip_chord, sweep, thickness) for sx in (-1, 1)]


def _wing_point(root, span_frac, span, sweep, dihedral_deg, side):
    """Leading-edge point at a fraction of a wing's span (for engines and struts)."""
    a = np.radians(dihedral_deg)
    return np.asarray(root, float) + [side * span_frac * span * np.cos(a), span_frac * span * np.sin(a), span_frac * sweep]


def _nacelle(front, length, radius):
    return frustum(front, np.asarray(front) + [0, 0, length], radius, radius * 0.78)


def _tail(d: _Draw, top_y, tail_cy, scale, t_tail_p, twin_p=0.0, fin_sweep=(30, 50)):
    """Vertical fin(s) and horizontal stabiliser at the rear of a unit-length fuselage."""
    parts = []
    fin_h = d.uniform("fin_height", 0.1, 0.2) * scale
    fin_root = d.uniform("fin_root_chord", 0.1, 0.2)
    fin_tip = fin_root * d.uniform("fin_taper", 0.3, 0.8)
    fin_sweep_z = fin_h * np.tan(np.radians(d.uniform("fin_sweep_deg", *fin_sweep)))
    fin_z = 0.5 - fin_root - 0.01
    twin = d.flag("twin_fins", twin_p)
    t_tail = (not twin) and d.flag("t_tail", t_tail_p)
    if twin:
        cant = np.radians(d.uniform("fin_cant_deg", 8.0, 25.0))
        offset = d.uniform("fin_offset", 0.02, 0.05)
        for sx in (-1, 1):
            parts.append(wing([sx * offset, top_y - 0.01, fin_z], [sx * np.sin(cant), np.cos(cant), 0],
                              [np.cos(cant), -sx * np.sin(cant), 0], fin_h, fin_root, fin_tip, fin_sweep_z, 0.08))
    else:
        parts.append(wing([0, top_y - 0.01, fin_z], [0, 1, 0], [1, 0, 0], fin_h, fin_root, fin_tip, fin_sweep_z, 0.1))
    ht_span = d.uniform("htail_span", 0.13, 0.22) * scale
    ht_root = d.uniform("htail_root_chord", 0.07, 0.13)
    ht_tip = ht_root * d.uniform("htail_taper", 0.35, 0.8)
    ht_sweep = ht_span * np.tan(np.radians(d.uniform("htail_sweep_deg", 0.0, 38.0)))
    if t_tail:
        root = [0, top_y + fin_h - 0.005, fin_z + fin_sweep_z + max(fin_tip - ht_root, 0) * 0.5]
    else:
        root = [0, tail_cy, 0.5 - ht_root - 0.015]
    parts += _wing_pair(root, ht_span, ht_root, ht_tip, ht_sweep, d.uniform("htail_dihedral_deg", 0.0, 7.0), 0.09)
    return parts


def _airliner(d: _Draw, family: str):
    """Airliners and business jets: low swept wing, engines under the wings or on the rear body."""
    bizjet = family == "business_jet"
    radius = d.uniform("fuselage_radius", 0.045, 0.065) if not bizjet else d.uniform("fuselage_radius", 0.05, 0.075)
    tail_frac = d.uniform("tail_cone", 0.2, 0.3)
    parts = [fuselage(1.0, radius, d.uniform("nose_length", 0.07, 0.14), tail_frac,
                      radius * d.uniform("tail_end", 0.1, 0.3), bluntness=d.uniform("nose_bluntness", 0.4, 0.6),
                      droop=d.uniform("nose_droop", 0.0, 0.35))]
    span = d.uniform("semispan", 0.4, 0.58) if not bizjet else d.uniform("semispan", 0.36, 0.5)
    root_chord = d.uniform("wing_root_chord", 0.13, 0.21)
    tip_chord = root_chord * d.uniform("wing_taper", 0.2, 0.4)
    sweep_deg = d.uniform("wing_sweep_deg", 18.0, 36.0)
    sweep = span * np.tan(np.radians(sweep_deg))
    dihedral = d.uniform("wing_dihedral_deg", 2.0, 7.0)
    root = [0, -radius * d.uniform("wing_drop", 0.3, 0.75), -0.5 + d.uniform("wing_position", 0.33, 0.45)]
    parts += _wing_pair(root, span, root_chord, tip_chord, sweep, dihedral, 0.11)
    if d.flag("winglets", 0.5):
        for side in (-1, 1):
            tip = _wing_point(root, 1.0, span, sweep, dihedral, side)
            parts.append(wing(tip - [0, 0.003, 0], [side * 0.25, 1, 0], [1, 0, 0], 0.035, tip_chord,
                              tip_chord * 0.4, 0.03, 0.08))
    nacelle_r = d.uniform("nacelle_radius", 0.022, 0.038) * (0.7 if bizjet else 1.0)
    nacelle_l = nacelle_r * d.uniform("nacelle_fineness", 3.0, 4.6)
    if bizjet:
        # Two engines on pylons either side of the rear fuselage.
        z = 0.5 - tail_frac - nacelle_l * 0.6
        for sx in (-1, 1):
            x = sx * (radius + nacelle_r * 1.3)
            parts.append(_nacelle([x, radius * 0.4, z], nacelle_l, nacelle_r))
            parts.append(box([sx * (radius + nacelle_r * 0.3) / 1.0 * 0.9, radius * 0.4, z + nacelle_l * 0.5],
                             [nacelle_r * 2.2, nacelle_r * 0.35, nacelle_l * 0.5]))
    else:
        per_side = 2 if d.flag("four_engines", 0.3) else 1
        stations = [d.uniform("engine_station", 0.28, 0.4)] if per_side == 1 else [0.3, 0.62]
        for frac in stations:
            for side in (-1, 1):
                le = _wing_point(root, frac, span, sweep, dihedral, side)
                front = le + [0, -nacelle_r * 1.25, -nacelle_l * 0.65]
                parts.append(_nacelle(front, nacelle_l, nacelle_r))
                parts.append(box(le + [0, -nacelle_r * 0.6, 0.0], [nacelle_r * 0.3, nacelle_r * 1.3, nacelle_l * 0.7]))
    parts += _tail(d, radius, radius * 0.5, 1.0, 0.85 if bizjet else 0.15)
    return parts


def _fighter(d: _Draw, family: str):
    """Jet fighters: pointed nose, delta or swept wing at the back, canopy, single or twin fins."""
    radius = d.uniform("fuselage_radius", 0.05, 0.075)
    squash = d.uniform("fuselage_squash", 0.65, 0.95)
    parts = [fuselage(1.0, radius, d.uniform("nose_length", 0.22, 0.35), d.uniform("tail_cone", 0.06, 0.14),
                      radius * d.uniform("tail_end", 0.5, 0.8), squash, bluntness=d.uniform("nose_bluntness", 0.75, 1.0),
                      droop=d.uniform("nose_droop", 0.0, 0.2))]
    planform = d.choice("planform", ["delta", "swept", "cropped_delta"])
    if planform == "delta":
        root_chord, taper, sweep_deg = d.uniform("wing_root_chord", 0.42, 0.55), d.uniform("wing_taper", 0.03, 0.1), d.uniform("wing_sweep_deg", 50.0, 62.0)
    elif planform == "cropped_delta":
        root_chord, taper, sweep_deg = d.uniform("wing_root_chord", 0.35, 0.48), d.uniform("wing_taper", 0.15, 0.3), d.uniform("wing_sweep_deg", 40.0, 55.0)
    else:
        root_chord, taper, sweep_deg = d.uniform("wing_root_chord", 0.25, 0.35), d.uniform("wing_taper", 0.25, 0.45), d.uniform("wing_sweep_deg", 30.0, 45.0)
    span = d.uniform("semispan", 0.25, 0.38)
    sweep = span * np.tan(np.radians(sweep_deg))
    z_root = min(0.5 - root_chord - d.uniform("wing_aft_gap", 0.02, 0.12), 0.5 - root_chord)
    parts += _wing_pair([0, -radius * squash * d.uniform("wing_drop", 0.0, 0.5), z_root], span,
                        root_chord, root_chord * taper, sweep, d.uniform("wing_anhedral_deg", -6.0, 2.0), 0.05)
    # Canopy: a bubble just behind the nose.
    parts.append(ellipsoid([0, radius * squash * 0.85, -0.5 + d.uniform("canopy_position", 0.22, 0.32)],
                           [radius * 0.55, radius * d.uniform("canopy_height", 0.5, 0.8), d.uniform("canopy_length", 0.08, 0.14)]))
    # Intakes either side of the cockpit, nozzles at the back.
    intake = d.uniform("intake_size", 0.025, 0.045)
    z_in = -0.5 + d.uniform("intake_position", 0.3, 0.42)
    for sx in (-1, 1):
        parts.append(hull([[sx * radius * 0.6, y, z] for y in (-intake * 0.8, intake * 0.5) for z in (z_in, 0.2)] +
                          [[sx * (radius * 0.6 + intake * 1.2), y, z] for y in (-intake * 0.8, intake * 0.5) for z in (z_in + 0.02, 0.15)]))
    engines = d.integer("engines", 1, 2)
    noz_r = radius * (0.6 if engines == 1 else 0.42)
    nozzle = d.uniform("nozzle_length", 0.01, 0.05)
    for x in ([0.0] if engines == 1 else [-noz_r * 1.05, noz_r * 1.05]):
        parts.append(frustum([x, radius * squash * 0.25, 0.45], [x, radius * squash * 0.25, 0.5 + nozzle], noz_r, noz_r * 0.85))
    if planform == "delta":
        if d.flag("canards", 0.5):
            parts += _wing_pair([0, radius * 0.2, z_in], 0.1, 0.07, 0.03, 0.06, 0.0, 0.05)
        fin_h = d.uniform("fin_height", 0.14, 0.22)
        fin_root = d.uniform("fin_root_chord", 0.16, 0.26)
        parts.append(wing([0, radius * squash * 0.8, 0.5 - fin_root - 0.02], [0, 1, 0], [1, 0, 0], fin_h,
                          fin_root, fin_root * 0.3, fin_h * np.tan(np.radians(50)), 0.07))
    else:
        parts += _tail(d, radius * squash, radius * squash * 0.3, 0.9, 0.0, twin_p=0.6, fin_sweep=(35, 55))
    return parts


def _glider(d: _Draw, family: str):
    """Sailplanes: pod-and-boom body, long thin straight wings, usually a T-tail."""
    radius = d.uniform("fuselage_radius", 0.035, 0.05)
    parts = [fuselage(1.0, radius, d.uniform("nose_length", 0.1, 0.16), d.uniform("boom_length", 0.5, 0.62),
                      radius * 0.25, bluntness=0.5, pod=d.uniform("boom_radius", 0.45, 0.7))]
    span = d.uniform("semispan", 0.7, 1.05)
    root_chord = d.uniform("wing_root_chord", 0.07, 0.1)
    root = [0, radius * d.uniform("wing_height", -0.3, 0.7), -0.5 + d.uniform("wing_position", 0.3, 0.38)]
    parts += _wing_pair(root, span, root_chord, root_chord * d.uniform("wing_taper", 0.3, 0.6),
                        span * np.tan(np.radians(d.uniform("wing_sweep_deg", -1.0, 3.0))),
                        d.uniform("wing_dihedral_deg", 1.0, 5.0), 0.12)
    parts.append(ellipsoid([0, radius * 0.75, -0.5 + d.uniform("canopy_position", 0.15, 0.22)],
                           [radius * 0.6, radius * 0.55, d.uniform("canopy_length", 0.07, 0.11)]))
    parts += _tail(d, radius, radius * 0.75, 0.9, 0.7, fin_sweep=(15, 35))
    return parts


def _light_plane(d: _Draw, family: str):
    """Single-engine propeller planes: straight wing high or low, propeller, fixed gear."""
    # Stubbier than a jet: a wide cabin and a long slim tail cone.
    radius = d.uniform("fuselage_radius", 0.07, 0.1)
    squash = d.uniform("fuselage_squash", 1.05, 1.3)
    tail_r = radius * d.uniform("tail_end", 0.12, 0.25)
    parts = [fuselage(1.0, radius, d.uniform("nose_length", 0.1, 0.16), d.uniform("tail_cone", 0.45, 0.58),
                      tail_r, squash=squash, bluntness=0.35)]
    top = radius * squash
    high = d.flag("high_wing", 0.5)
    span = d.uniform("semispan", 0.55, 0.72)
    root_chord = d.uniform("wing_root_chord", 0.14, 0.2)
    tip_chord = root_chord * d.uniform("wing_taper", 0.6, 1.0)
    y_wing = top - 0.01 if high else -top * 0.7
    z_wing = -0.5 + d.uniform("wing_position", 0.22, 0.3)
    dihedral = d.uniform("wing_dihedral_deg", 0.0, 2.0) if high else d.uniform("wing_dihedral_deg", 3.0, 7.0)
    # Tapered planforms keep a straight trailing edge, as most light planes do.
    parts += _wing_pair([0, y_wing, z_wing], span, root_chord, tip_chord, root_chord - tip_chord, dihedral, 0.13)
    if high and d.flag("struts", 0.7):
        for sx in (-1, 1):
            parts.append(cylinder([sx * radius * 0.8, -top * 0.6, z_wing + root_chord * 0.4],
                                  [sx * span * 0.55, y_wing, z_wing + root_chord * 0.35], 0.006, 8))
    # Propeller: spinner and two or three blades in a plane just ahead of the nose.
    hub = np.array([0.0, 0.0, -0.5 - radius * 0.2])
    parts.append(ellipsoid(hub + [0, 0, radius * 0.2], [radius * 0.35, radius * 0.35, radius * 0.5]))
    blades = d.integer("blades", 2, 3)
    blade_len = d.uniform("prop_radius", 0.09, 0.14)
    phase = np.radians(d.uniform("prop_phase_deg", 0.0, 360.0))
    for k in range(blades):
        a = phase + 2 * np.pi * k / blades
        along = np.array([np.cos(a), np.sin(a), 0.0])
        side = np.cross(along, [0.0, 0.0, 1.0])
        parts.append(hull([hub + along * r + side * sx * w + [0, 0, dz]
                           for r, w in ((0.0, 0.012), (blade_len, 0.008)) for sx in (-1, 1) for dz in (0.0, 0.005)]))
    if d.flag("fixed_gear", 0.8):
        wheel_r = d.uniform("gear_wheel_radius", 0.02, 0.03)
        gear_y = -top - d.uniform("gear_height", 0.03, 0.06)
        main_z = z_wing + root_chord * 0.5
        for sx in (-1, 1):
            x = sx * radius * 1.4
            parts.append(cylinder([x * 0.5, -top * 0.5, main_z - 0.02], [x, gear_y, main_z], 0.005, 8))
            parts.append(cylinder([x - 0.008, gear_y, main_z], [x + 0.008, gear_y, main_z], wheel_r, 16))
        parts.append(cylinder([0, -top * 0.5, -0.42], [0, gear_y, -0.42], 0.005, 8))
        parts.append(cylinder([-0.006, gear_y, -0.42], [0.006, gear_y, -0.42], wheel_r * 0.8, 16))
    parts += _tail(d, top, top - tail_r * squash, 0.9, 0.1, fin_sweep=(20, 45))
    return parts


AIRPLANE_FAMILIES: dict[str, Callable[[_Draw, str], list]] = {
    "airliner": _airliner,
    "business_jet": _airliner,
    "fighter": _fighter,
    "glider": _glider,
    "light_plane": _light_plane,
}


# ---------------------------------------------------------------------------------- categories


def _category_builder(families: dict, weights: dict | None = None) -> Callable[[np.random.Generator], Parts]:
    names = list(families)
    p = np.array([(weights or {}).get(name, 1.0) for name in names], float)
    p /= p.sum()

    def build(rng: np.random.Generator) -> Parts:
        d = _Draw(rng)
        family = names[int(rng.choice(len(names), p=p))]
        builder = families[family]
        parts = builder(d, family)
        return Parts(parts, family, d.params)

    return build


CATEGORIES: dict[str, Callable[[np.random.Generator], list[trimesh.Trimesh]]] = {
    # Most ShapeNet chairs have backs: stools are a minority here too.
    "chair": _category_builder(CHAIR_FAMILIES, {"dining_chair": 3, "armchair": 2, "office_chair": 2}),
    "car": _category_builder({name: _car for name in CAR_FAMILIES}),
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
