"""Procedural cars (recon.train.shapes): one shared builder, driven by each body style's proportion ranges."""

from __future__ import annotations

from typing import Callable

import numpy as np

from recon.train.shape_primitives import Draw, body_section, box, cylinder, hull


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


def _car(d: Draw, family: str):
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


# Every body style is built by `_car` from its own row of CAR_FAMILIES.
CAR_BUILDERS: dict[str, Callable[[Draw, str], list]] = {name: _car for name in CAR_FAMILIES}
