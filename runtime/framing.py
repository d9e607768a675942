"""Masks and boxes from other tools (a segmenter, a detector such as ultralytics YOLO) as framing.

A mask is the object's silhouette in the picture's pixels and acts exactly as a transparent picture's
alpha: the picture outside it is painted the model's background colour, it frames the picture and it
gives the voxel net's silhouette channel. A box (x0, y0, x1, y1 in
pixels, x to the right, y down, x1/y1 exclusive: ultralytics' `xyxy`) frames the picture as a mask
filling that rectangle would; the silhouette channel then comes from the sketch net.

Masks: picture files (PNG, JPEG, ...; a transparent one counts its alpha, others their gray level:
>= 128 is the object, or > 0 when the file holds only 0 and 1) or .npy arrays; arrays: bool, uint8
(>= 128) or float (>= 0.5), the picture's height x width.

Boxes files (`read_boxes`), one picture per line or record, the picture named by its file name or stem:
- CSV with a header: an image column (image, file, filename, path, source) and either the corners
  (x1,y1,x2,y2 or x0,y0,x1,y1 or xmin,ymin,xmax,ymax) or a `box` column holding ultralytics'
  `{'x1': ..., 'y1': ..., 'x2': ..., 'y2': ...}` (what `Results.to_csv()` writes, plus the image column);
  optional `confidence`.
- JSON: {"chair.jpg": [x0, y0, x1, y1], ...}, or {"chair.jpg": <ultralytics Results.summary() list>}, or
  a list of records {"image": "chair.jpg", "box": {...} | [...], "confidence": ...} (or the corner keys);
  JSON Lines (one such record per line) too.
- a folder of YOLO label files (`save_txt=True`: <stem>.txt, lines `class xc yc w h [conf]`, normalised
  to the picture's size).
Several boxes for one picture: the most confident one is used (the first when none has a confidence).
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from recon.runtime.errors import InputError, first_line
from recon.runtime.images import IMAGE_SUFFIXES, Picture, parse_color

__all__ = ["ObjectBox", "parse_box", "read_boxes", "load_mask", "box_mask", "apply_framing", "per_picture"]

MASK_SUFFIXES = IMAGE_SUFFIXES + (".npy",)
_IMAGE_COLUMNS = ("image", "file", "filename", "path", "source", "im_file")
_CORNERS = (("x1", "y1", "x2", "y2"), ("x0", "y0", "x1", "y1"), ("xmin", "ymin", "xmax", "ymax"))


class ObjectBox(NamedTuple):
    """The object's box: pixels (x right, y down, x1/y1 exclusive), or fractions of the picture's width
    and height when `normalized` (YOLO label files)."""

    x0: float
    y0: float
    x1: float
    y1: float
    confidence: float | None = None
    normalized: bool = False

    def in_pixels(self, height: int, width: int) -> "ObjectBox":
        if not self.normalized:
            return self
        return self._replace(x0=self.x0 * width, x1=self.x1 * width, y0=self.y0 * height, y1=self.y1 * height,
                             normalized=False)


def _box(values, where: str, confidence=None) -> ObjectBox:
    try:
        x0, y0, x1, y1 = (float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"{where}: expected a box x0,y0,x1,y1 (4 numbers), got {values!r}") from None
    if not all(np.isfinite([x0, y0, x1, y1])) or x1 <= x0 or y1 <= y0:
        raise InputError(f"{where}: box {x0:g},{y0:g},{x1:g},{y1:g} is empty (needs x0 < x1 and y0 < y1)")
    try:
        confidence = None if confidence in (None, "") else float(confidence)
    except (TypeError, ValueError):
        raise InputError(f"{where}: confidence {confidence!r} is not a number") from None
    return ObjectBox(x0, y0, x1, y1, confidence)


def parse_box(text, where: str = "--box") -> ObjectBox:
    """'x0,y0,x1,y1' (or 4 numbers) -> ObjectBox, InputError naming `where` otherwise."""
    if isinstance(text, ObjectBox):
        return text
    if isinstance(text, str):
        values = [v for v in text.replace(" ", ",").split(",") if v]
        if len(values) != 4:
            raise InputError(f"{where}: expected x0,y0,x1,y1 (4 numbers, pixels), got {text!r}")
        return _box(values, where)
    return _box(text, where)


def _best(boxes: list[ObjectBox]) -> ObjectBox:
    return max(boxes, key=lambda b: -np.inf if b.confidence is None else b.confidence) if boxes else None


def _record_box(record: dict, where: str) -> ObjectBox:
    """A box from an ultralytics summary entry or one of our records: `box` dict/list, or corner keys."""
    box = record.get("box", record.get("xyxy", record.get("bbox")))
    if isinstance(box, str):
        box = _literal(box, where)
    corners = box if isinstance(box, dict) else record
    if box is None or isinstance(box, dict):
        for names in _CORNERS:
            if all(name in corners for name in names):
                box = [corners[name] for name in names]
                break
        else:
            raise InputError(f"{where}: no box (expected 'box', or corner keys {', '.join('/'.join(c) for c in _CORNERS)})")
    return _box(box, where, record.get("confidence"))


def _literal(text: str, where: str):
    """A box written as a JSON list or a Python dict repr (pandas/polars CSV of ultralytics results)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise InputError(f"{where}: cannot read the box {text!r}") from None


def _image_key(record: dict, where: str) -> str:
    for column in _IMAGE_COLUMNS:
        if record.get(column) not in (None, ""):
            return str(record[column])
    raise InputError(f"{where}: no picture named (expected a column/key {', '.join(_IMAGE_COLUMNS)})")


def _from_json(value, path: Path) -> dict[str, list[ObjectBox]]:
    found: dict[str, list[ObjectBox]] = {}
    if isinstance(value, dict):
        for image, entry in value.items():
            where = f"{path}: {image!r}"
            if isinstance(entry, list) and entry and all(isinstance(e, dict) for e in entry):
                found[image] = [_record_box(e, where) for e in entry]  # ultralytics summary() list
            elif isinstance(entry, dict):
                found[image] = [_record_box(entry, where)]
            else:
                found[image] = [_box(entry, where)]
        return found
    if not isinstance(value, list):
        raise InputError(f"{path}: expected a JSON object or list of records")
    for number, record in enumerate(value, 1):
        where = f"{path}: record {number}"
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected an object with an image and a box")
        found.setdefault(_image_key(record, where), []).append(_record_box(record, where))
    return found


def _from_csv(text: str, path: Path) -> dict[str, list[ObjectBox]]:
    rows = csv.DictReader(io.StringIO(text))
    header = [name.strip().lower() for name in (rows.fieldnames or [])]
    if not any(name in header for name in _IMAGE_COLUMNS):
        raise InputError(f"{path}: CSV header {','.join(header)!r} names no picture column "
                         f"({', '.join(_IMAGE_COLUMNS)})")
    found: dict[str, list[ObjectBox]] = {}
    for number, row in enumerate(rows, 2):
        record = {str(k).strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        where = f"{path}: line {number}"
        found.setdefault(_image_key(record, where), []).append(_record_box(record, where))
    return found


def _from_yolo_labels(folder: Path) -> dict[str, list[ObjectBox]]:
    found = {}
    for label in sorted(folder.glob("*.txt")):
        boxes = []
        for number, line in enumerate(label.read_text().splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) not in (5, 6):
                raise InputError(f"{label}: line {number}: expected 'class xc yc w h [conf]', got {line!r}")
            try:
                xc, yc, w, h = (float(v) for v in fields[1:5])
            except ValueError:
                raise InputError(f"{label}: line {number}: not numbers: {line!r}") from None
            box = _box((xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2), f"{label}: line {number}",
                       fields[5] if len(fields) == 6 else None)
            boxes.append(box._replace(normalized=True))
        found[label.stem] = boxes
    if not found:
        raise InputError(f"{folder}: no YOLO label files (*.txt) in this folder")
    return found


def read_boxes(path) -> dict[str, ObjectBox]:
    """{picture name or stem: its most confident box} from a boxes file or label folder (module docstring)."""
    path = Path(path)
    if path.is_dir():
        found = _from_yolo_labels(path)
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise InputError(f"{path}: no such boxes file") from None
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"{path}: cannot read the boxes file ({first_line(error)})") from None
        stripped = text.strip()
        if not stripped:
            raise InputError(f"{path}: the boxes file is empty")
        if stripped[0] in "[{":
            try:
                value = json.loads(stripped)
            except ValueError:
                try:  # JSON Lines: one record per line
                    value = [json.loads(line) for line in stripped.splitlines() if line.strip()]
                except ValueError as error:
                    raise InputError(f"{path}: not JSON or JSON Lines ({first_line(error)})") from None
            found = _from_json(value, path)
        else:
            found = _from_csv(text, path)
    best = {image: _best(boxes) for image, boxes in found.items() if boxes}
    if not best:
        raise InputError(f"{path}: no boxes in this file")
    return best


def load_mask(source, where: str) -> np.ndarray:
    """(H, W) bool mask from a file (picture or .npy) or an array (module docstring)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{where}: mask {path}: no such file")
        if path.suffix.lower() == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as error:
                raise InputError(f"{where}: mask {path}: not a numpy array file ({first_line(error)})") from None
        else:
            array = _mask_picture(path, where)
        where = f"{where}: mask {path}"
    else:
        array = np.asarray(source)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise InputError(f"{where}: expected an (H, W) mask, got shape {array.shape}")
    if array.dtype == bool:
        return array
    if np.issubdtype(array.dtype, np.floating):
        return np.nan_to_num(array) >= 0.5
    if np.issubdtype(array.dtype, np.integer):
        return array >= 128 if array.max(initial=0) > 1 else array > 0
    raise InputError(f"{where}: mask of dtype {array.dtype} (expected bool, integers or floats)")


def _mask_picture(path: Path, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            if transparent:
                alpha = np.asarray(image.convert("RGBA"))[..., 3]
                if alpha.min() < 255:
                    return alpha
            return np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InputError(f"{where}: mask {path}: not a picture Pillow can read ({first_line(error)})") from None


def box_mask(box: ObjectBox, height: int, width: int, where: str) -> np.ndarray:
    """The (height, width) mask filling `box` (rounded to whole pixels, clipped to the picture)."""
    box = box.in_pixels(height, width)
    x0, x1 = (int(np.clip(round(v), 0, width)) for v in (box.x0, box.x1))
    y0, y1 = (int(np.clip(round(v), 0, height)) for v in (box.y0, box.y1))
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"{where}: box {box.x0:g},{box.y0:g},{box.x1:g},{box.y1:g} lies outside the "
                         f"{width}x{height} picture")
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def apply_framing(picture: Picture, mask=None, box: ObjectBox | None = None,
                  background="white") -> tuple[Picture, np.ndarray | None, str]:
    """(picture, framing mask, kind). A given mask acts as the picture's alpha: it replaces any alpha,
    the background outside it becomes `background` (the colour transparent pictures are composited on)
    and it is the silhouette. A box gives only the framing mask. kind: mask, box, alpha or auto (the
    sketch net will look)."""
    for missing in (mask, box):
        if isinstance(missing, InputError):  # per_picture found none for this picture
            raise missing
    height, width = picture.rgb.shape[:2]
    if mask is not None:
        mask = load_mask(mask, picture.name)
        if mask.shape != (height, width):
            raise InputError(f"{picture.name}: the mask is {mask.shape[1]}x{mask.shape[0]} pixels, the picture "
                             f"{width}x{height}")
        if not mask.any():
            raise InputError(f"{picture.name}: the mask is empty (no object pixel)")
        rgb = np.where(mask[..., None], picture.rgb, np.asarray(parse_color(background), np.uint8))
        return picture._replace(rgb=rgb, mask=mask), mask, "mask"
    if box is not None:
        return picture, box_mask(box, height, width, picture.name), "box"
    return picture, picture.mask, "auto" if picture.mask is None else "alpha"


# ---------------------------------------------------------------- which mask/box goes with which picture


def _lookup(table: dict, name: str, what: str, source: str):
    path = Path(name)
    for key in (name, path.name, path.stem):
        if key in table:
            return table[key]
    return InputError(f"{name}: no {what} for this picture in {source} (looked for {path.name!r} or {path.stem!r})")


def _mask_folder(folder: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in MASK_SUFFIXES:
            found.setdefault(path.stem, path)  # chair.png before chair.npy: sorted order
            found.setdefault(path.stem.removesuffix("_mask").removesuffix(".mask"), path)
    return found


def per_picture(names: list[str], mask=None, box=None) -> list[tuple]:
    """One (mask, box) per picture; an entry is an InputError when that picture's mask/box is missing.

    mask: None, one mask for every picture (a file or an (H, W) array), a folder (a mask per picture,
    matched by stem; `<stem>_mask.png` also matches), a dict {name or stem: mask}, or a list with one
    entry (or None) per picture. box: None, one box (4 numbers or 'x0,y0,x1,y1'), a boxes file or YOLO
    label folder (`read_boxes`), a dict {name or stem: box}, or a list with one entry per picture.
    InputError for the whole call: both given, a list of the wrong length, an unreadable boxes file.
    """
    if mask is not None and box is not None:
        raise InputError("mask and box: give one of them (a mask frames the picture by itself)")
    masks = _spread(names, mask, "mask", _masks_table)
    boxes = _spread(names, box, "box", _boxes_table)
    return list(zip(masks, boxes))


def _spread(names: list[str], value, what: str, table_of) -> list:
    if value is None:
        return [None] * len(names)
    if isinstance(value, list) and not (what == "box" and _is_one_box(value)):
        if len(value) != len(names):
            raise InputError(f"{what}: {len(value)} entries for {len(names)} pictures")
        if what == "box":
            return [None if v is None else parse_box(v, f"{name}: box") for name, v in zip(names, value)]
        return list(value)
    table, source = table_of(value)
    if table is None:
        return [source] * len(names)
    return [_lookup(table, name, what, source) for name in names]


def _is_one_box(value) -> bool:
    return len(value) == 4 and all(isinstance(v, (int, float, np.number)) for v in value)


def _masks_table(value):
    """(table, where) for a folder or dict of masks; (None, the one mask) otherwise."""
    if isinstance(value, dict):
        return value, "the mask table"
    if isinstance(value, (str, os.PathLike)) and Path(value).is_dir():
        return _mask_folder(Path(value)), str(value)
    if isinstance(value, (str, os.PathLike)) and not Path(value).exists():
        raise InputError(f"mask {value}: no such file or folder")
    return None, value


def _boxes_table(value):
    if isinstance(value, dict):
        return {key: parse_box(box, f"box for {key}") for key, box in value.items()}, "the box table"
    if isinstance(value, (str, os.PathLike)) and (Path(value).is_dir() or Path(value).is_file()):
        return read_boxes(value), str(value)
    if isinstance(value, os.PathLike) or (isinstance(value, str) and any(c.isalpha() for c in value)):
        raise InputError(f"box {str(value)!r}: no such boxes file (or give x0,y0,x1,y1)")
    return None, parse_box(value, "box")
