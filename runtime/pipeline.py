"""One photo -> 2.5D sketch -> voxels -> mesh, with the exported networks and no torch.

    from recon import Reconstructor
    reconstruct = Reconstructor("MODEL")            # or None: the packaged default model
    result = reconstruct("chair.jpg", height_m=0.9)
    result.save("out", formats=("obj", "glb"))       # out/chair.obj, out/chair.glb, out/chair.preview.png

Framing is exactly what training did (recon.runtime.preprocess): the object's silhouette, from the
picture's alpha channel, a mask or box from another tool, or else from a cheap sketch-net pass over
the centred whole picture (at `recon.framing_size`; its largest region), decides a square crop where the object fills `recon.framing_fill`; the sketch net then sees
that crop, once. Only where the main pass's own silhouette asks for a rather different crop (thin
parts the coarse pass missed) is the picture cropped and run again. A picture with an alpha channel
or a mask also gives the silhouette channel of the voxel net's input.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from recon.runtime.color import mesh_view, paint
from recon.runtime.confidence import evidence, judge, load_calibration
from recon.runtime.errors import InputError, ModelError, ReconError
from recon.runtime.framing import apply_framing, per_picture
from recon.runtime.images import Picture, load_image
from recon.runtime.meshing import marching_cubes, mesh_stats
from recon.runtime.model import default_model_dir, load_model_dir
from recon.runtime.preprocess import (Box, box_iou, crop_image, crop_map, frame_box, normalize_image, picture_component,
                                      to_picture, whole_image_box)
from recon.runtime.result import OUTPUT_FORMATS, STAGES, Result, check_formats
from recon.runtime.runner_choice import activate_runner, make_runner
from recon.runtime.system import check_batch_memory

__all__ = ["Reconstructor", "Result", "OUTPUT_FORMATS", "STAGES", "check_formats", "make_runner"]


@dataclass
class _Item:
    """One picture on its way through the pipeline."""

    index: int
    picture: Picture
    timings: dict
    mask: Optional[np.ndarray] = None  # object mask in the picture's pixels
    framing: str = "auto"  # where that mask came from (Result.framing)
    net_silhouette: Optional[np.ndarray] = None  # the sketch net's own (S, S) silhouette, for confidence
    box: Optional[Box] = None
    crop: Optional[np.ndarray] = None
    sketch: Optional[dict] = None
    features: Optional[np.ndarray] = None  # the main pass's pooled encoder features (sketch nets that have them)
    voxels: Optional[np.ndarray] = None


class Reconstructor:
    """Loads a model folder once; call it on pictures (paths or arrays) to get Results.

    model_dir: a `recon-cli export` folder (None: the packaged default model). device: auto, cpu,
    cuda, tensorrt or openvino (backends.DEVICES). threads: CPU threads per network, and pictures
    prepared and meshed at once in `batch()` (None: the backend's default, all cores). batch: pictures per network run in `batch()`. threshold: iso level
    (None: the model's recon.threshold). smooth / largest_only: see meshing.marching_cubes.
    precision: fp32, or the model's fp16/int8 twins (model.PRECISIONS). calibrated: False ignores the
    folder's confidence.json (confidence None). `providers` says what runs
    each net (e.g. "OpenVINO CPU BF16"). Not thread-safe: use one Reconstructor per thread.
    """

    def __init__(self, model_dir=None, device: str = "auto", threads: int | None = None, batch: int = 8,
                 threshold: float | None = None, smooth: int = 0, largest_only: bool = False,
                 precision: str = "fp32", color: bool = True, calibrated: bool = True):
        if not isinstance(batch, int) or batch < 1:
            raise InputError(f"batch: must be an integer >= 1, got {batch!r}")
        if threshold is not None and not 0 < threshold < 1:
            raise InputError(f"threshold: must be between 0 and 1 (exclusive), got {threshold}")
        if model_dir is not None and not isinstance(model_dir, (str, os.PathLike)):
            raise InputError(f"model_dir: expected the path of a model folder (str or Path) or None for the "
                             f"installed model, got {type(model_dir).__name__} {model_dir!r}")
        self.runners = {}  # (first: close() works whatever fails below)
        self.model = load_model_dir(default_model_dir() if model_dir is None else model_dir)
        check_batch_memory(self.model, batch)
        # None: the folder has no confidence.json, or calibrated=False (fitting a new one: the old may be stale)
        self.calibration = load_calibration(self.model) if calibrated else None
        if self.calibration is not None and self.calibration.appearance is not None \
                and "features" not in self.model.outputs.get("sketch", ()):
            raise ModelError(f"{self.model.path}: its confidence.json weighs the sketch net's features, which its "
                             "sketch.onnx does not output; re-run scripts/calibrate_confidence.py on the folder")
        self.batch_size = batch
        self.threshold = self.model.threshold if threshold is None else float(threshold)
        self.smooth, self.largest_only = int(smooth), bool(largest_only)
        self.color = bool(color)  # vertex colours from the picture (recon.runtime.color)
        self.device = device
        # Threads for the per-picture work around the networks (framing, crops, meshes, evidence, colours).
        self.workers = max(1, min(batch, threads or os.cpu_count() or 1))
        self._pool = None  # made on the first batch that has work for it
        self.runners = {}
        try:
            for net in ("sketch", "voxel"):
                runner = make_runner(self.model, net, device, threads, precision)
                self.runners[net] = activate_runner(runner, self.model, net, device, threads, precision)
        except BaseException:
            self.close()
            raise

    @property
    def providers(self) -> dict:
        """What runs each network, e.g. {"sketch": "CPUExecutionProvider", "voxel": ...}."""
        return {net: runner.provider for net, runner in self.runners.items()}

    @property
    def notes(self) -> dict:
        """Why a network does not run on the first choice of its device, per network (empty when it does)."""
        return {net: runner.note for net, runner in self.runners.items() if runner.note}

    def close(self) -> None:
        for runner in self.runners.values():
            runner.deactivate()
        self.runners = {}
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _check_open(self) -> None:
        if not self.runners:
            raise ReconError("this Reconstructor is closed (close() was called or its `with` block ended); "
                             "make a new one")

    def _each(self, function, items) -> list:
        """[function(item) for item in items], in input order, on `workers` threads when there are several
        items: numpy, scipy.ndimage, the kd-tree and PIL release the GIL for most of the per-picture work.
        An exception raises here as in a plain loop; a picture's expected failures are its Result."""
        items = list(items)
        if self.workers < 2 or len(items) < 2:
            return [function(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="recon-picture")
        return list(self._pool.map(function, items))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def stream(self, source, every: int = 1, max_latency_ms: float | None = None, live: bool | None = None,
               **options):
        """Results of a camera index, video file, stream URL or iterable of frames, the stages running
        concurrently: a recon.runtime.stream.Stream (iterate it; see that module for the options).
        mask= / box= (as in `batch`) given once apply to every frame: a fixed camera's region."""
        from recon.runtime.stream import Stream

        self._check_open()
        return Stream(self, source, every=every, max_latency_ms=max_latency_ms, live=live, **options)

    def __call__(self, image, **options) -> Result:
        """Reconstruct one picture (path or array); options as in `batch`."""
        return self.batch([image], **options)[0]

    def batch(self, images: Sequence, *, bgr: bool = False, names: Sequence[str] | None = None,
              threshold: float | None = None, height_m: float | None = None, width_m: float | None = None,
              smooth: int | None = None, largest_only: bool | None = None, mask=None, box=None,
              color: bool | None = None, follow: "Result | None" = None) -> list[Result]:
        """Results in input order; the networks run on `batch` pictures at a time.

        A picture that cannot be read, or where no object is found, gives a failed Result (its error
        names the picture); the others go on. bgr: arrays are OpenCV BGR(A). height_m / width_m: the
        object's real height (y extent) or width (x extent) in metres, to report metric sizes.
        mask / box: the object's mask or box from another tool, instead of the sketch net's framing pass:
        one for every picture, a folder or table matched by picture stem, or a list with one entry per
        picture (recon.runtime.framing.per_picture); a picture whose mask or box is missing or does not
        fit it fails alone. A mask also gives the voxel net's silhouette channel, as alpha does.
        color: vertex colours from the picture (recon.runtime.color; None: as the Reconstructor was made).
        follow: a good Result of the previous frame of the same camera: pictures the sketch net frames
        start from its silhouette instead of a framing pass (one pass per frame while the object stays
        in view; the main pass's own check crops again when it has moved). Streams pass it.
        """
        self._check_open()
        threshold = self.threshold if threshold is None else float(threshold)
        if not 0 < threshold < 1:
            raise InputError(f"threshold: must be between 0 and 1 (exclusive), got {threshold}")
        for label, value in (("height_m", height_m), ("width_m", width_m)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise InputError(f"{label}: must be a positive, finite length in metres, got {value}")
        if height_m is not None and width_m is not None:
            raise InputError("height_m and width_m: give one of them, not both")
        names = list(names) if names is not None else [_name_of(image, i) for i, image in enumerate(images)]
        if len(names) != len(images):
            raise InputError(f"names: {len(names)} names for {len(images)} images")
        given = per_picture(names, mask, box)

        def load(index: int) -> _Item | Result:
            start = time.perf_counter()
            try:
                picture = load_image(images[index], background=self.model.background, bgr=bgr, name=names[index])
                picture, framing_mask, framing = apply_framing(picture, *given[index], self.model.background)
            except InputError as error:
                return Result(names[index], status="failed", error=str(error))
            return _Item(index, picture, {"preprocess": _ms(start), "sketch": 0.0, "voxel": 0.0, "mesh": 0.0},
                         mask=framing_mask, framing=framing)

        loaded = self._each(load, range(len(images)))
        results: list[Result | None] = [entry if isinstance(entry, Result) else None for entry in loaded]
        items = [entry for entry in loaded if isinstance(entry, _Item)]

        if follow is not None and follow.ok:
            for item in items:
                if item.mask is None and item.framing == "auto":
                    height, width = item.picture.rgb.shape[:2]
                    item.mask = to_picture(follow.sketch["silhouette"] > FRAMING_LEVEL, follow.box, height, width)
                    item.framing = "follow"
        items = self._find_objects(items, results)
        self._frame(items)
        items = self._reframe(self._sketch(items, results), results)
        self._voxels(items)
        options = (threshold, height_m, width_m, self.smooth if smooth is None else smooth,
                   self.largest_only if largest_only is None else largest_only, self.color if color is None else color)
        for item, result in zip(items, self._each(lambda item: self._finish(item, *options), items)):
            results[item.index] = result
        for result in results:
            result.threshold = threshold
        return results

    # ---------------------------------------------------------------- stages

    def _run(self, net: str, name: str, arrays: list[np.ndarray], items: list[_Item]) -> list[dict]:
        """Run a network over stacked inputs in chunks; charge each item its share of the time."""
        runner = self.runners[net]
        size = min(self.batch_size, runner.max_batch or self.batch_size)
        dtype = runner.inputs[name].dtype
        outputs = []
        for start in range(0, len(arrays), size):
            begin = time.perf_counter()
            chunk = np.stack(arrays[start:start + size]).astype(dtype, copy=False)
            out = runner.infer({name: chunk})
            share = _ms(begin) / len(chunk)
            for offset in range(len(chunk)):
                items[start + offset].timings[net] += share
                outputs.append({key: value[offset] for key, value in out.items()})
        return outputs

    def _normalized(self, crop: np.ndarray) -> np.ndarray:
        return normalize_image(crop, self.model.mean, self.model.std)[0]  # (3, S, S)

    def _find_objects(self, items: list[_Item], results: list) -> list[_Item]:
        """Pictures without alpha: a sketch pass over the centred whole picture finds the silhouette."""
        todo = [item for item in items if item.mask is None]
        inputs = dict(zip(map(id, todo), self._each(self._framing_input, todo)))
        for item in todo:
            if inputs[id(item)] is None:
                results[item.index] = _failed(item, "no object found (the picture is one flat colour)")
        items = [item for item in items if inputs.get(id(item), True) is not None]
        todo = [item for item in todo if inputs[id(item)] is not None]
        outputs = self._run("sketch", "image", [inputs[id(item)] for item in todo], todo) if todo else []

        def component(pair) -> np.ndarray:
            item, out = pair
            height, width = item.picture.rgb.shape[:2]
            return picture_component(out["silhouette"][0] > FRAMING_LEVEL, whole_image_box(height, width),
                                     height, width)

        for item, mask in zip(todo, self._each(component, zip(todo, outputs))):
            item.mask = mask
        kept = []
        for item in items:
            if np.count_nonzero(item.mask) < _min_pixels(item.mask.shape):
                results[item.index] = _failed(item, "no object found")
            else:
                kept.append(item)
        return kept

    def _framing_input(self, item: _Item) -> np.ndarray | None:
        """The framing pass's input for a picture, None when it is one flat colour: that cannot show an
        object, whatever the network would guess. At the model's framing size (a quarter of the pixels
        for edge2): finding the object needs its silhouette only, not the detail of the main pass."""
        rgb = item.picture.rgb
        if int(rgb.max()) - int(rgb.min()) <= _FLAT:
            return None
        start = time.perf_counter()
        box = whole_image_box(*rgb.shape[:2])
        framed = self._normalized(crop_image(rgb, box, self.model.framing_size))
        item.timings["preprocess"] += _ms(start)
        return framed

    def _frame(self, items: list[_Item]) -> None:
        def frame(item: _Item) -> None:
            start = time.perf_counter()
            item.box = frame_box(item.mask, self.model.fill)
            item.crop = crop_image(item.picture.rgb, item.box, self.model.image_size)
            item.timings["preprocess"] += _ms(start)

        self._each(frame, items)

    def _sketch(self, items: list[_Item], results: list) -> list[_Item]:
        size = self.model.image_size
        inputs = [self._normalized(item.crop) for item in items]
        kept = []
        for item, out in zip(items, self._run("sketch", "image", inputs, items) if items else []):
            silhouette = item.net_silhouette = out["silhouette"][0].astype(np.float32, copy=False)
            if item.picture.mask is not None:  # the alpha channel is a better silhouette than a guess
                silhouette = crop_map(item.picture.mask, item.box, size).astype(np.float32)
            item.sketch = {"normals": np.ascontiguousarray(out["normals"].transpose(1, 2, 0), dtype=np.float32),
                           "depth": out["depth"][0].astype(np.float32, copy=False), "silhouette": silhouette}
            item.features = out.get("features")
            if (silhouette > 0.5).sum() < _min_pixels(silhouette.shape):
                results[item.index] = _failed(item, "no object found")
            else:
                kept.append(item)
        return kept

    def _reframe(self, items: list[_Item], results: list) -> list[_Item]:
        """The main pass sees the object larger than the framing pass did: where its silhouette asks
        for another crop (thin parts the coarse pass missed, a box pulled off by clutter), crop again
        and run the sketch net once more. Most pictures keep their first crop: one full pass."""
        def crop_again(item: _Item) -> bool:
            start = time.perf_counter()
            height, width = item.picture.rgb.shape[:2]
            seen = picture_component(item.net_silhouette > FRAMING_LEVEL, item.box, height, width)
            if item.framing == "follow":  # the confidence's framing mask must come from this frame, not the last
                item.mask = seen
            box = frame_box(seen, self.model.fill)
            again = box is not None and box_iou(box, item.box) < REFRAME_IOU
            if again:
                item.box = box  # item.mask stays the framing pass's: the confidence compares the two passes
                item.crop = crop_image(item.picture.rgb, box, self.model.image_size)
            item.timings["preprocess"] += _ms(start)
            return again

        framed = [item for item in items if item.framing in ("auto", "follow")]
        again = [item for item, redo in zip(framed, self._each(crop_again, framed)) if redo]
        if not again:
            return items
        kept = {id(item) for item in self._sketch(again, results)}
        dropped = {id(item) for item in again} - kept
        return [item for item in items if id(item) not in dropped]

    def _voxels(self, items: list[_Item]) -> None:
        inputs = [np.concatenate([item.sketch["normals"].transpose(2, 0, 1), item.sketch["depth"][None],
                                  item.sketch["silhouette"][None]]) for item in items]  # (5, S, S)
        for item, out in zip(items, self._run("voxel", "sketch", inputs, items) if items else []):
            item.voxels = out["occupancy"].astype(np.float32, copy=False)

    def _finish(self, item: _Item, threshold: float, height_m, width_m, smooth: int, largest_only: bool,
                color: bool) -> Result:
        """The mesh, its view fit (found once: the confidence's evidence, then the colours' camera),
        evidence, status and colours of one picture."""
        result = self._mesh(item, threshold, height_m, width_m, smooth, largest_only)
        start = time.perf_counter()
        fit = mesh_view(result)
        item.timings["mesh"] += _ms(start)
        result.evidence = evidence(item.net_silhouette, item.mask, item.box, item.framing, item.voxels,
                                   threshold, self.model.fill, fit=fit)
        if self.calibration is not None:
            judge(result, self.calibration)
        if color:
            paint(result, fit=fit)
        return result

    def _mesh(self, item: _Item, threshold: float, height_m, width_m, smooth: int, largest_only: bool) -> Result:
        start = time.perf_counter()
        result = Result(item.picture.name, image=item.crop, box=item.box, sketch=item.sketch, voxels=item.voxels,
                        features=item.features, threshold=threshold, timings=item.timings, framing=item.framing)
        if not (item.voxels > threshold).any():
            result.status = "failed"
            result.error = f"{item.picture.name}: no voxel above threshold {threshold} (try a lower threshold)"
            return result
        result.mesh = marching_cubes(item.voxels, threshold, smooth=smooth, largest_only=largest_only)
        stats = mesh_stats(result.mesh, closed=True)  # marching cubes on a zero-padded grid: closed by construction
        result.volume, result.bbox, result.watertight = stats["volume"], stats["bbox"], stats["watertight"]
        result.vertices, result.faces = stats["vertices"], stats["faces"]
        extent = np.subtract(result.bbox[1], result.bbox[0])
        known = (height_m, extent[1]) if height_m is not None else (width_m, extent[0]) if width_m is not None else None
        if known is not None and known[1] > 0:
            result.scale_m = float(known[0] / known[1])
            result.volume_m3 = result.volume * result.scale_m ** 3
            result.bbox_m = (np.asarray(result.bbox) * result.scale_m).tolist()
        item.timings["mesh"] += _ms(start)
        return result


# Crop-box IoU between the framing pass's crop and the one the main pass's silhouette implies below
# which the picture is cropped again (measured: scripts/framing_accuracy.py).
REFRAME_IOU = 0.8
# The silhouette probability above which a pixel counts as object when choosing the crop (both passes).
# Below the meshes' 0.5: thin parts the sketch net sees faintly (chair legs, wing tips) then widen the
# crop instead of falling outside it. Chosen on the validation split's clutter benchmark (training
# objects past the fine-tunes' 80 per category, `data clutter --split train`): plain pictures framed
# >= 0.85 went 56 -> 76 % (real shapes) and 82 -> 87 % (synthetic), their voxel IoU +0.020 / +0.013;
# cluttered +0.016 / -0.010; 0.25 and 0.35 scored within 0.002 of 0.3.
FRAMING_LEVEL = 0.3
_FLAT = 2  # pixel value spread (0..255) at or below which a picture counts as one flat colour


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _name_of(image, index: int) -> str:
    return str(image) if isinstance(image, (str, Path)) else f"image{index}"


def _min_pixels(shape) -> int:
    """Fewer silhouette pixels than this (0.1% of the picture, at least 4) is no object."""
    return max(4, int(np.prod(shape)) // 1000)


def _failed(item: _Item, reason: str) -> Result:
    return Result(item.picture.name, status="failed", error=f"{item.picture.name}: {reason}", timings=item.timings)
