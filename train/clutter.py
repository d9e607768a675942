"""Cluttered scenes for renders: what a photo around an object looks like, made procedurally.

A render's object (its rgb and mask) is pasted into a room: a wall and a floor meeting at a horizon,
each a procedural texture (value noise, planks, tiles, gradients), with furniture-like blobs and
other objects' renders beside and behind it, a soft shadow under it, and the photo's faults on top
(colour cast, exposure, blur, sensor noise, JPEG). Everything is generated here: no photographs are
shipped or downloaded (the registries hold none whose licence we could check), so the sketch net
learns to separate the object from structure it has never seen as a photo; real photos remain a limit
the README states.

Torch-free (numpy + Pillow). `scene_box` picks a framing, `compose` builds one picture from the
framed maps; `compose_scene` is both in one call for whole renders (the clutter benchmark).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from recon.runtime.preprocess import Box, crop_image, crop_map, frame_box

FILL_RANGE = (0.25, 0.85)  # how much of the picture the object's longer side covers in a scene


# ---------------------------------------------------------------- textures


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) smooth noise in [0, 1]: a coarse random grid upsampled bicubically."""
    coarse = (rng.uniform(0, 1, (cells, cells)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), np.float32) / 255


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width, 3) float texture in [0, 1]: one of noise, planks, tiles, gradient."""
    base, other = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
    side = max(height, width)
    kind = rng.integers(4)
    if kind == 0:  # plaster, carpet: noise at two scales
        t = 0.7 * _value_noise(rng, side, int(rng.integers(3, 12))) + 0.3 * _value_noise(rng, side, 48)
    elif kind == 1:  # planks or stripes along one axis, each with its own shade
        count = int(rng.integers(4, 16))
        shades = rng.uniform(0, 1, count)
        t = np.repeat(shades, -(-side // count))[:side][None].repeat(side, 0)
        t = 0.8 * t + 0.2 * _value_noise(rng, side, 64)
        if rng.integers(2):
            t = t.T
    elif kind == 2:  # tiles with grout lines
        period = int(rng.integers(max(4, side // 16), max(5, side // 4)))
        yy, xx = np.mgrid[:side, :side]
        checker = ((yy // period + xx // period) % 2).astype(np.float32)
        grout = ((yy % period) < 2) | ((xx % period) < 2)
        t = np.where(grout, 1.0, 0.3 + 0.4 * checker * rng.uniform(0, 1))
    else:  # a smooth gradient (a lit wall, the sky)
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[:side, :side] / side
        t = (np.cos(angle) * xx + np.sin(angle) * yy) / 1.5
    t = t[:height, :width, None]
    return np.clip(base * (1 - t) + other * t, 0, 1)


def room(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float background: a wall above a floor (or one surface), lit unevenly."""
    if rng.uniform() < 0.25:
        image = texture(rng, size, size)
    else:
        horizon = int(rng.uniform(0.2, 0.8) * size)
        image = np.concatenate([texture(rng, horizon, size), texture(rng, size - horizon, size)], axis=0)
    light = 0.75 + 0.5 * _value_noise(rng, size, 3)[..., None]  # uneven lighting
    return np.clip(image * light, 0, 1)


def add_blobs(rng: np.random.Generator, image: np.ndarray, count: int) -> None:
    """Paint furniture-like shapes (shaded boxes and ellipses) into `image` in place."""
    size = image.shape[0]
    yy, xx = np.mgrid[:size, :size] / size
    for _ in range(count):
        cy, cx = rng.uniform(0, 1, 2)
        hy, hx = rng.uniform(0.03, 0.3, 2)
        if rng.integers(2):
            inside = (np.abs(yy - cy) < hy) & (np.abs(xx - cx) < hx)
        else:
            inside = ((yy - cy) / hy) ** 2 + ((xx - cx) / hx) ** 2 < 1
        shade = 0.7 + 0.3 * (yy - cy + hy) / (2 * hy)  # darker at the top: light from above
        colour = rng.uniform(0.05, 0.95, 3)
        image[inside] = np.clip(colour * shade[inside, None], 0, 1)


def add_shadow(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> None:
    """Darken a blurred ellipse under the object's silhouette (a contact shadow), in place."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return
    size = image.shape[0]
    bottom, left, right = rows[-1], cols[0], cols[-1]
    yy, xx = np.mgrid[:size, :size]
    cy, cx = bottom - 0.02 * size, (left + right) / 2 + rng.normal(0, 0.05) * (right - left)
    ry, rx = max(2.0, 0.06 * (right - left + 1)), max(2.0, 0.6 * (right - left + 1))
    shadow = np.exp(-(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2))
    image *= 1 - rng.uniform(0.2, 0.6) * shadow[..., None]


def photo_faults(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    """uint8 picture -> the same through a cheap camera: colour cast, exposure, blur, noise, JPEG."""
    image = rgb.astype(np.float32) / 255
    image = image * rng.uniform(0.8, 1.2, 3)  # white balance
    image = np.clip((image - 0.5) * rng.uniform(0.7, 1.2) + 0.5 + rng.normal(0, 0.06), 0, 1)
    image = image ** rng.uniform(0.7, 1.4)  # exposure curve
    if rng.uniform() < 0.4:
        image = image + rng.normal(0, rng.uniform(0.005, 0.04), image.shape)
    out = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    if rng.uniform() < 0.3:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.uniform() < 0.5:
        buffer = io.BytesIO()
        out.save(buffer, "JPEG", quality=int(rng.integers(30, 95)))
        out = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return np.array(out)  # writable: training hands it to torch.from_numpy


# ---------------------------------------------------------------- scenes


def scene_box(mask: np.ndarray, rng: np.random.Generator, fill_range=FILL_RANGE, edge_cut: float = 0.1) -> Box | None:
    """A square crop around a render's object at a random fill and position (the object may leave
    the frame across one edge with probability `edge_cut`); None for an empty mask."""
    tight = frame_box(mask, 1.0)  # side = the object's longer side
    if tight is None:
        return None
    side = tight.side / rng.uniform(*fill_range)
    slack = (side - tight.side) / 2  # how far the object can move and stay inside
    reach = slack + (0.3 * tight.side if rng.uniform() < edge_cut else 0.0)
    dy, dx = rng.uniform(-reach, reach, 2)
    return Box(tight.top - slack + dy, tight.left - slack + dx, side)


def compose(rgb: np.ndarray, alpha: np.ndarray, rng: np.random.Generator, others=(), faults: bool = True) -> np.ndarray:
    """A framed object (S, S, 3) uint8 and its soft alpha (S, S) in [0, 1] over a cluttered room.
    `others`: (rgb, alpha) pairs of other objects, already at size S, pasted behind it."""
    size = rgb.shape[0]
    background = room(rng, size)
    add_blobs(rng, background, int(rng.integers(0, 5)))
    for other_rgb, other_alpha in others:
        background = background * (1 - other_alpha[..., None]) + other_rgb / 255 * other_alpha[..., None]
    add_shadow(rng, background, alpha > 0.5)
    a = alpha[..., None]
    out = (np.clip(background * (1 - a) + rgb.astype(np.float32) / 255 * a, 0, 1) * 255).astype(np.uint8)
    return photo_faults(rng, out) if faults else out


def soft_alpha(mask: np.ndarray, box: Box, size: int) -> np.ndarray:
    """(size, size) anti-aliased coverage of a full-resolution mask under a crop, in [0, 1]."""
    layers = np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=2)
    return crop_image(layers, box, size)[..., 0].astype(np.float32) / 255


def distractor(view: dict, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Another render's object, small and somewhere in a size x size picture: (rgb, alpha)."""
    box = scene_box(view["mask"], rng, fill_range=(0.15, 0.5), edge_cut=0.5)
    return crop_image(view["rgb"], box, size), soft_alpha(view["mask"], box, size)


def compose_scene(rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator, size: int = 256,
                  fill_range=FILL_RANGE, others=(), faults: bool = True) -> dict:
    """A whole render (H, W, 3) uint8 + mask (H, W) -> a cluttered picture of `size` with the object
    at a random fill and place. `others`: other renders' views (dicts with rgb, mask) to put behind.
    Returns rgb, mask (the object's, at size) and box (top, left, bottom, right) of that mask."""
    box = scene_box(mask, rng, fill_range)
    if box is None:
        raise ValueError("compose_scene: the mask is empty")
    pasted = [distractor(view, rng, size) for view in others]
    alpha = soft_alpha(mask, box, size)
    picture = compose(crop_image(rgb, box, size), alpha, rng, pasted, faults)
    object_mask = crop_map(mask, box, size)
    rows, cols = np.flatnonzero(object_mask.any(1)), np.flatnonzero(object_mask.any(0))
    bounds = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1) if rows.size else None
    return {"rgb": picture, "mask": object_mask, "box": bounds}
