"""Procedural chairs (recon.train.shapes): legged, office and pedestal chairs, stools; one builder per family."""

from __future__ import annotations

from typing import Callable

import numpy as np

from recon.train.shape_primitives import (Draw, box, capsule, circle_points, cylinder, frustum, hull, prism, rod,
                                          rotate_x, superellipse, torus)


# Units are metres. Seat front at -z, back at +z.


def _seat(d: Draw, shape: str, width: float, depth: float, y0: float, y1: float):
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


def _stretchers(d: Draw, tops, bottoms, y_top, style: str, radius):
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


def _back(d: Draw, width, y0, z_back, height, style: str):
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


def _arms(d: Draw, half_span, y_seat, depth, z_back, panel: bool, padded: bool = False):
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


def _legged_chair(d: Draw, family: str):
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


def _office_chair(d: Draw, family: str):
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


def _pedestal_chair(d: Draw, family: str):
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


def _stool(d: Draw, family: str):
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


CHAIR_FAMILIES: dict[str, Callable[[Draw, str], list]] = {
    "dining_chair": _legged_chair,
    "armchair": _legged_chair,
    "sled_chair": _legged_chair,
    "office_chair": _office_chair,
    "pedestal_chair": _pedestal_chair,
    "stool": _stool,
    "bar_stool": _stool,
}
