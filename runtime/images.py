"""Pictures in, (H, W, 3) uint8 RGB out: files of the common formats or arrays, whatever their mode.

Files: PNG, JPEG, BMP, GIF (the first frame), TIFF and WebP (anything Pillow reads). EXIF orientation is applied, so a
portrait phone photo is upright; grayscale, palette, 16-bit and CMYK pictures become 8-bit RGB.
A transparent picture's alpha is the object's mask; it is composited on the model's background
colour (what the training renders were drawn on). Every failure is an InputError naming the file.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from recon.runtime.errors import InputError, first_line

__all__ = ["IMAGE_SUFFIXES", "MAX_PIXELS", "Picture", "load_image", "parse_color"]

# One rule for a picture named on the command line and one found in a folder: these suffixes (GIF: its first frame).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_PIXELS = 50_000_000  # larger pictures are refused: a decompression bomb, or far more than needed
MIN_SIDE = 8

# Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; we refuse above it (see _open).
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_COLORS = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128)}


class Picture(NamedTuple):
    """rgb: (H, W, 3) uint8, composited on the background where transparent; mask: (H, W) bool
    object mask from the alpha channel, None when the picture has no (or a fully opaque) alpha."""

    rgb: np.ndarray
    mask: np.ndarray | None
    name: str


def parse_color(value) -> tuple[int, int, int]:
    """A colour name (white, black, gray), '#rrggbb' or a JSON/sequence of 3 numbers in 0..255."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _COLORS:
            return _COLORS[text]
        if text.startswith("#") and len(text) == 7:
            try:
                return tuple(int(text[i: i + 2], 16) for i in (1, 3, 5))
            except ValueError:
                pass
        try:
            value = json.loads(text)
        except ValueError:
            raise InputError(f"background: unknown colour {value!r}; use white, black, gray, #rrggbb or [r, g, b]") from None
    try:
        rgb = tuple(int(round(float(v))) for v in value)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise InputError(f"background: expected 3 numbers in 0..255, got {value!r}")
    return rgb


def load_image(source, background="white", bgr: bool = False, name: str | None = None) -> Picture:
    """Load a picture from a path or a numpy array.

    Arrays: (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) gray, uint8 (or float in [0, 1]); bgr=True reads
    (H, W, 3/4) as OpenCV's BGR(A) order. Paths: any Pillow-readable picture (see module docstring).
    """
    color = parse_color(background)
    if isinstance(source, np.ndarray):
        name = name or "array"
        array = _from_array(source, bgr, name)
    elif isinstance(source, (str, os.PathLike)):
        name = name or str(source)
        array = _from_file(Path(source))
    else:
        raise InputError(f"image: expected a file path or a numpy array, got {type(source).__name__}")
    height, width = array.shape[:2]
    if height * width > MAX_PIXELS:
        raise InputError(f"{name}: {width}x{height} pixels is over the {MAX_PIXELS // 1_000_000} megapixel limit")
    if min(height, width) < MIN_SIDE:
        raise InputError(f"{name}: {width}x{height} pixels is too small (at least {MIN_SIDE} per side)")
    if array.shape[2] == 3:
        return Picture(np.ascontiguousarray(array), None, name)
    alpha = array[..., 3:4].astype(np.float32) / 255.0
    rgb = array[..., :3] * alpha + np.asarray(color, np.float32) * (1.0 - alpha)
    mask = alpha[..., 0] >= 0.5
    # A fully opaque alpha says nothing about the object: frame it from the sketch net instead.
    return Picture(np.round(rgb).astype(np.uint8), None if mask.all() else mask, name)


def _from_array(array: np.ndarray, bgr: bool, name: str) -> np.ndarray:
    """(H, W, 3 or 4) uint8 from an RGB(A)/BGR(A)/gray array."""
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InputError(f"{name}: expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {array.shape}")
    if array.dtype == np.uint8:
        pass
    elif array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
            raise InputError(f"{name}: float pixels must be finite and within [0, 1]")
        array = np.round(array * 255).astype(np.uint8)
    else:
        raise InputError(f"{name}: expected uint8 (or float in [0, 1]) pixels, got {array.dtype}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif bgr:
        array = array[..., [2, 1, 0, 3][: array.shape[2]]]
    return array


def _open(path: Path) -> Image.Image:
    """Open (header only) with Pillow's bomb checks turned into our one-line errors."""
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS: silenced, the size check below says more.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:  # > 2x the limit
        raise InputError(f"{path}: picture is over the {MAX_PIXELS // 1_000_000} megapixel limit ({error})") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not a picture Pillow can read (expected PNG, JPEG, BMP, GIF, TIFF or WebP)") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise InputError(f"{path}: {width}x{height} pixels is over the {MAX_PIXELS // 1_000_000} megapixel limit")
    return image


def _from_file(path: Path) -> np.ndarray:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a picture")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    with _open(path) as image:
        try:
            image.load()  # decodes now: truncated or corrupt data fails here
            try:
                image = ImageOps.exif_transpose(image)
            except Exception:  # a broken EXIF block: keep the stored orientation rather than fail
                pass
            return _to_rgba_or_rgb(image)
        except InputError:
            raise
        except Exception as error:  # Pillow raises OSError, ValueError, SyntaxError... for bad data
            raise InputError(f"{path}: cannot decode picture ({first_line(error)})") from None


def _to_rgba_or_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) or, when it carries transparency, (H, W, 4) uint8."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16/32-bit gray: scale, do not clip to 255
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":  # float gray: [0, 1] if it fits, else 0..255
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if values.max() <= 1.0 else 1.0
        gray = np.clip(np.round(values * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    transparent = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    return np.asarray(image.convert("RGBA" if transparent else "RGB"))
