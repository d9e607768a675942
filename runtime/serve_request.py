"""What recon.runtime.serve's HTTP app does per request, apart from the network: check the options,
decode the uploads (refusing decompression bombs from the header), and turn a Result into the answer's
JSON body; plus the bounded store of recent meshes served by URL. These run in the app's thread pool,
never on the event loop nor on the network's worker thread, so one request's decoding and encoding
overlap the others' network runs.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import secrets
import threading
import warnings
from collections import OrderedDict

import numpy as np

from recon.runtime.errors import InputError
from recon.runtime.serve_batch import ServeLimits

__all__ = ["MESH_MODES", "OPTIONS", "FILES", "HTTPProblem", "MeshStore", "decode_uploads", "parse_options",
           "display_name", "answer_body", "json_body"]

MESH_MODES = ("url", "inline", "none")
OPTIONS = ("threshold", "color", "height_m", "width_m", "mesh", "format", "box")
FILES = ("image", "mask")


class HTTPProblem(Exception):
    def __init__(self, code: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.headers = code, message, headers or {}


class MeshStore:
    """The last few answers' meshes, by a random id the server made (LRU, bounded)."""

    ID = re.compile(r"^[0-9a-f]{32}$")

    def __init__(self, size: int):
        self.size, self._lock, self._meshes = size, threading.Lock(), OrderedDict()

    def put(self, mesh) -> str:
        key = secrets.token_hex(16)
        with self._lock:
            self._meshes[key] = mesh
            while len(self._meshes) > self.size:
                self._meshes.popitem(last=False)
        return key

    def get(self, key: str):
        with self._lock:
            return self._meshes.get(key) if self.ID.match(key) else None


def _decode(data: bytes, what: str, limits: ServeLimits, gray: bool = False) -> np.ndarray:
    """Upload bytes -> (H, W, 3/4) uint8 (gray: (H, W)), refusing too many pixels from the header alone."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from recon.runtime.images import MIN_SIDE

    if not data:
        raise HTTPProblem(400, f"{what}: the upload is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise HTTPProblem(413, f"{what}: over the {limits.max_pixels / 1e6:.0f} megapixel limit") from None
    except (UnidentifiedImageError, OSError):
        raise HTTPProblem(415, f"{what}: not a picture (expected PNG, JPEG, BMP, GIF, TIFF or WebP)") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise HTTPProblem(413, f"{what}: {width}x{height} pixels is over the {limits.max_pixels / 1e6:.0f} "
                               "megapixel limit")
    if min(width, height) < MIN_SIDE:
        raise HTTPProblem(400, f"{what}: {width}x{height} pixels is too small (at least {MIN_SIDE} per side)")
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except Exception as error:  # truncated or corrupt data: Pillow raises many types
        raise HTTPProblem(400, f"{what}: cannot decode the picture ({type(error).__name__})") from None
    if gray:
        return np.asarray(image.convert("L"))
    transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return np.asarray(image.convert("RGBA" if transparent else "RGB"))


def decode_uploads(files: dict, options: dict, limits: ServeLimits) -> tuple[np.ndarray, np.ndarray | None]:
    """{field: (bytes, filename)} -> (image, boolean mask or None), each refusal an HTTPProblem."""
    if "image" not in files:
        raise HTTPProblem(400, "image: missing (send the picture as the multipart file field `image`)")
    image = _decode(files["image"][0], "image", limits)
    if "mask" not in files:
        return image, None
    mask = _decode(files["mask"][0], "mask", limits, gray=True)
    if options["box"] is not None:
        raise HTTPProblem(400, "mask and box: give one of them")
    if mask.shape != image.shape[:2]:
        raise HTTPProblem(400, f"mask: {mask.shape[1]}x{mask.shape[0]} pixels, the image has "
                               f"{image.shape[1]}x{image.shape[0]}")
    return image, mask >= 128


def _flag(value: str, name: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise HTTPProblem(400, f"{name}: expected true or false, got {value[:40]!r}")


def _number(value: str, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not low < number < high:
        raise HTTPProblem(400, f"{name}: expected a number between {low:g} and {high:g} (exclusive), got {value[:40]!r}")
    return number


def parse_options(fields: dict) -> dict:
    """Form fields / query parameters -> checked options (HTTPProblem 400 naming the bad one)."""
    from recon.runtime.meshio import MESH_ENCODERS

    unknown = sorted(set(fields) - set(OPTIONS) - set(FILES))
    if unknown:
        raise HTTPProblem(400, f"unknown option {unknown[0][:40]!r}; valid: {', '.join(OPTIONS + FILES)}")
    options = {"threshold": None, "color": None, "height_m": None, "width_m": None, "mesh": "url", "format": "glb",
               "box": None}
    if "threshold" in fields:
        options["threshold"] = _number(fields["threshold"], "threshold", 0.0, 1.0)
    if "color" in fields:
        options["color"] = _flag(fields["color"], "color")
    for name in ("height_m", "width_m"):
        if name in fields:
            options[name] = _number(fields[name], name, 0.0, math.inf)
    if options["height_m"] is not None and options["width_m"] is not None:
        raise HTTPProblem(400, "height_m and width_m: give one of them, not both")
    for name, choices in (("mesh", MESH_MODES), ("format", tuple(MESH_ENCODERS))):
        if name in fields:
            if fields[name] not in choices:
                raise HTTPProblem(400, f"{name}: {fields[name][:40]!r} not supported; valid: {', '.join(choices)}")
            options[name] = fields[name]
    if "box" in fields:
        from recon.runtime.framing import parse_box

        try:
            parse_box(fields["box"], "box")
        except InputError as error:
            raise HTTPProblem(400, str(error)) from None
        options["box"] = fields["box"]
    return options


def display_name(filename: str | None) -> str:
    """The client's file name for display only: its last part, plain characters, short."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", (filename or "upload").replace("\\", "/").rsplit("/", 1)[-1])[:80]
    return name or "upload"


def json_body(content) -> bytes:
    """JSON as Starlette's JSONResponse renders it, but callable off the event loop (an inline mesh
    makes the body ~200 kB: rendering it on the loop would stall every other connection)."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")


def answer_body(result, batch_size: int, queued_ms: float, total_ms: float, options: dict, store: MeshStore) -> bytes:
    """The JSON body of one reconstruction: Result.summary() plus the camera, batching, timings, the mesh."""
    from recon.runtime.meshio import MESH_ENCODERS

    answer = result.summary()
    answer["confidence"] = getattr(result, "confidence", None)
    view = getattr(result, "view", None)
    answer["view"] = None if view is None else {"azimuth": view.camera.azimuth, "elevation": view.camera.elevation}
    answer["batch_size"] = batch_size
    answer["timings_ms"].update(queue=round(queued_ms, 2), total=round(total_ms, 2))
    has_mesh = result.mesh is not None and len(result.mesh.faces) > 0
    if not has_mesh or options["mesh"] == "none":
        answer["mesh"] = None
    elif options["mesh"] == "inline":
        data = MESH_ENCODERS[options["format"]](result.mesh)
        answer["mesh"] = {"format": options["format"], "base64": base64.b64encode(data).decode("ascii")}
    if has_mesh and options["mesh"] in ("url", "inline"):
        key = store.put(result.mesh)
        urls = {fmt: f"meshes/{key}.{fmt}" for fmt in ("glb", "obj", "ply")}
        answer["mesh"] = {**(answer.get("mesh") or {"format": "glb"}), "url": urls["glb"], "urls": urls}
    return json_body(answer)
