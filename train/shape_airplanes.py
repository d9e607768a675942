"""Procedural airplanes (recon.train.shapes): airliners, business jets, fighters, gliders, light planes."""

from __future__ import annotations

from typing import Callable

import numpy as np

from recon.train.shape_primitives import Draw, box, cylinder, ellipse_section, ellipsoid, frustum, hull, wing


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


def _tail(d: Draw, top_y, tail_cy, scale, t_tail_p, twin_p=0.0, fin_sweep=(30, 50)):
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


def _airliner(d: Draw, family: str):
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


def _fighter(d: Draw, family: str):
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


def _glider(d: Draw, family: str):
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


def _light_plane(d: Draw, family: str):
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


AIRPLANE_FAMILIES: dict[str, Callable[[Draw, str], list]] = {
    "airliner": _airliner,
    "business_jet": _airliner,
    "fighter": _fighter,
    "glider": _glider,
    "light_plane": _light_plane,
}
