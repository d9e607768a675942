"""INT8 twins of the exported nets: static QDQ quantisation calibrated on training views, the accuracy
gate they must pass (recon.export.fp16's gate, label "int8"), and TensorRT INT8 calibration caches.

    figures = make_int8_twins(MODEL_TMP, data=DATA, image_size=..., voxel_res=..., mean=..., std=..., threshold=...)

Calibration reads the TRAIN split of the dataset only (the gate measures on its test split): up to
CALIBRATION_SAMPLES views, framed and normalised as the runtime does. The voxel net is calibrated on
the FP32 sketch net's outputs for those views: what it sees at run time.

Quantisation: onnxruntime.quantization.quantize_static in QDQ format, per-channel symmetric INT8
weights, symmetric INT8 activations (the form TensorRT's explicit quantisation and OpenVINO's
low-precision transforms take as they are), MinMax ranges. ONNX Runtime and OpenVINO run
MODEL/<net>.int8.onnx (`Reconstructor(precision="int8")`, `--int8`).

The gate runs on every engine the runtime may run the twins on (`int8_engines`: ONNX Runtime, and
OpenVINO where installed), each against FP32 on the dataset's test views; all must pass.

Fallback per layer: when the gate fails, the FALLBACKS steps keep more layers in FP32 (excluded from
quantisation): first the stem and the heads (the layers nearest the pixels and the outputs), then
every ConvTranspose too. When the last step still fails the twins are refused (ModelError with the
figures), unless `force`.

TensorRT: MODEL/<net>.int8.cache, TensorRT's calibration cache format (a "TRT-<version>-
EntropyCalibration2" line, then `tensor: <hex bits of the float32 scale>` per tensor, scale =
max(|min|, |max|) / 127) from the same calibration over every tensor; recon.export.tensorrt's
entropy calibrator hands it to the builder (`engine_calibration`), which recalibrates on the same
views where it refuses it.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import tempfile
from pathlib import Path
from typing import Callable, Dict, Sequence

import numpy as np

from recon.export.fp16 import MAX_IOU_DROP, _dataset_batch, describe, fp16_gate
from recon.runtime.errors import InputError, ModelError, first_line
from recon.runtime.fileio import write_bytes_atomic
from recon.runtime.model import PRECISIONS

CALIBRATION_SAMPLES = 64  # training views calibrated on
CALIBRATION_BATCH = 8
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
EDGE_LAYERS = (1, 3)  # FP32 fallback: the first layer (stem) and the last three (heads) of each net
# TensorRT 8.6.1 as TensorRT writes its version into the cache header (8601); a builder of another
# version that refuses the header recalibrates.
DEFAULT_TRT_VERSION = "8601"
CACHE_ALGORITHM = "EntropyCalibration2"
NETS = {"sketch": "image", "voxel": "sketch"}  # net -> its input


def _edge_layers(nodes: list) -> list:
    first, last = EDGE_LAYERS
    return [n.name for n in nodes[:first] + nodes[-last:]]


# Step name -> the nodes (of one net, in graph order) kept in FP32.
FALLBACKS: Dict[str, Callable[[list], list]] = {
    "all layers INT8": lambda nodes: [],
    "stem and heads FP32": _edge_layers,
    "stem, heads and ConvTranspose FP32": lambda nodes: sorted(
        set(_edge_layers(nodes)) | {n.name for n in nodes if n.op_type == "ConvTranspose"}),
}


def twin_path(folder: Path, net: str) -> Path:
    return Path(folder) / PRECISIONS["int8"].format(net=net)


def cache_path(folder: Path, net: str) -> Path:
    return Path(folder) / f"{net}.int8.cache"


def quantizable_nodes(model) -> list:
    """The nodes quantize_static would quantise, in graph order (names filled in where missing)."""
    nodes = [node for node in model.graph.node if node.op_type in QUANTIZED_OPS]
    for index, node in enumerate(nodes):
        if not node.name:
            raise ModelError(f"graph {model.graph.name}: {node.op_type} node {index} has no name")
    return nodes


def calibration_feeds(data, sketch_fp32: Path, *, image_size: int, voxel_res: int, mean, std,
                      samples: int = CALIBRATION_SAMPLES, batch: int = CALIBRATION_BATCH) -> dict:
    """{"sketch": [{"image": (b,3,S,S)}...], "voxel": [{"sketch": (b,5,S,S)}...]} from TRAINING views only."""
    from recon.export.parity import ort_session, run_session

    # splits=("train",): calibration never sees the views the gate measures on.
    images = _dataset_batch(data, image_size, voxel_res, mean, std, samples, splits=("train",))[0]
    session = ort_session(sketch_fp32)
    feeds = {"sketch": [], "voxel": []}
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        out = run_session(session, {"image": chunk})
        feeds["sketch"].append({"image": chunk})
        feeds["voxel"].append({"sketch": np.concatenate([out["normals"], out["depth"], out["silhouette"]], axis=1)})
    return feeds


@contextlib.contextmanager
def _quiet():
    """onnxruntime.quantization gives the same advice through the root logger on every call."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _reader(feeds: Sequence[dict]):
    from onnxruntime.quantization import CalibrationDataReader

    class FeedReader(CalibrationDataReader):
        """The calibration batches, once each (quantize_static reads until None)."""

        def __init__(self):
            self.batches = iter(feeds)

        def get_next(self):
            return next(self.batches, None)

    return FeedReader()


def quantize_net(fp32_path: Path, out_path: Path, feeds: Sequence[dict], exclude: Sequence[str] = ()) -> None:
    """Write the QDQ INT8 twin of `fp32_path`, calibrated on `feeds`, the `exclude` nodes left in FP32;
    the FP32 file's metadata_props are copied so the twin describes itself."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory(prefix="recon-int8-") as work, _quiet():
        raw = Path(work) / "int8.onnx"
        try:
            quantize_static(str(fp32_path), str(raw), _reader(feeds), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=list(exclude), calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        except Exception as error:
            raise ModelError(f"{fp32_path.name}: INT8 quantisation failed ({first_line(error)})") from None
        source, model = onnx.load(str(fp32_path), load_external_data=False), onnx.load(str(raw))
    del model.metadata_props[:]
    model.metadata_props.extend(source.metadata_props)
    model.producer_name, model.producer_version = source.producer_name, source.producer_version
    model.graph.name = source.graph.name
    write_bytes_atomic(out_path, model.SerializeToString())


def calibration_ranges(fp32_path: Path, feeds: Sequence[dict]) -> Dict[str, tuple]:
    """{tensor name: (min, max)} over the calibration batches, for every float tensor of the graph."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    with tempfile.TemporaryDirectory(prefix="recon-calib-") as work, _quiet():
        calibrator = create_calibrator(str(fp32_path), [], augmented_model_path=str(Path(work) / "augmented.onnx"),
                                       calibrate_method=CalibrationMethod.MinMax)
        calibrator.collect_data(_reader(feeds))
        data = calibrator.compute_data()
    return {name: tuple(float(np.asarray(v).reshape(-1)[0]) for v in value.range_value)
            for name, value in data.data.items()}


def trt_cache_text(ranges: Dict[str, tuple], trt_version: str = DEFAULT_TRT_VERSION) -> str:
    """TensorRT's calibration cache for `ranges`: symmetric INT8 scales, max(|min|, |max|) / 127."""
    lines = [f"TRT-{trt_version}-{CACHE_ALGORITHM}"]
    for name in sorted(ranges):
        low, high = ranges[name]
        scale = max(abs(low), abs(high), 1e-8) / 127.0  # an all-zero tensor still gets a usable scale
        lines.append(f"{name}: {struct.unpack('>I', struct.pack('>f', scale))[0]:08x}")
    return "\n".join(lines) + "\n"


def read_trt_cache(text: str) -> Dict[str, float]:
    """{tensor: scale} of a TensorRT calibration cache (the inverse of trt_cache_text, header skipped)."""
    scales = {}
    for line in text.splitlines()[1:]:
        name, _, bits = line.rpartition(": ")
        scales[name] = struct.unpack(">f", bytes.fromhex(bits.strip()))[0]
    return scales


def trt_header_version(version: str | None) -> str:
    """TensorRT's version as its cache header writes it: 8.6.1 -> 8601 (major x 1000 before 10),
    10.14.1 -> 101401 (major x 10000 from 10 on); None (not installed) -> DEFAULT_TRT_VERSION."""
    if not version:
        return DEFAULT_TRT_VERSION
    major, minor, patch = (int(part) for part in (version.split(".") + ["0", "0"])[:3])
    return str(major * (1000 if major < 10 else 10000) + minor * 100 + patch)


def engine_calibration(folder, *, data, image_size: int, voxel_res: int, mean, std, **_) -> dict:
    """{net: build_engine keyword arguments}: the net's TensorRT calibration cache and the training
    batches the builder calibrates on where it refuses the cache (recon.export.tensorrt)."""
    feeds = calibration_feeds(data, Path(folder) / "sketch.onnx", image_size=image_size, voxel_res=voxel_res,
                              mean=mean, std=std)
    return {net: {"int8_cache": cache_path(folder, net), "calibration": [feed[NETS[net]] for feed in feeds[net]]}
            for net in NETS}


def int8_engines() -> dict:
    """engine -> open_candidate(path) for every engine the runtime may run the twins on: ONNX Runtime,
    and OpenVINO where installed (its INT8 kernels round differently: each is gated on its own)."""
    import importlib.util

    from recon.export.parity import ort_session

    engines = {"onnxruntime": ort_session}
    if importlib.util.find_spec("openvino") is not None:
        from recon.runtime.openvino_backend import CompiledFromOnnx, OpenVINORunner

        engines["openvino"] = lambda path: OpenVINORunner(CompiledFromOnnx(path, "fp32", label="int8")).activate()
    return engines


def make_int8_twins(folder: str | Path, *, data, image_size: int, voxel_res: int, mean, std, threshold: float,
                    max_drop: float = MAX_IOU_DROP, force: bool = False, samples: int = CALIBRATION_SAMPLES,
                    log: Callable[[str], None] | None = print) -> dict:
    """Calibrate, quantise and gate folder/<net>.int8.onnx beside folder/<net>.onnx; write the TensorRT
    caches; return the figures ({"step", "excluded", "gate", "passed", "kept", ...}).

    Tries the FALLBACKS steps in order until the gate passes. Refused (ModelError with the figures, no
    twins or caches left behind) when none does, unless `force` (the last step's twins are kept).
    """
    import onnx

    if data is None:
        raise InputError("--int8 needs --data DATASET: calibration reads its training views (the gate its "
                         "test views)")
    folder = Path(folder)
    say = log or (lambda message: None)
    fp32 = {net: folder / f"{net}.onnx" for net in NETS}
    feeds = calibration_feeds(data, fp32["sketch"], image_size=image_size, voxel_res=voxel_res, mean=mean, std=std,
                              samples=samples)
    calibrated = sum(len(next(iter(f.values()))) for f in feeds["sketch"])
    say(f"INT8: calibrating on {calibrated} training views of {data}")
    nodes = {net: quantizable_nodes(onnx.load(str(path), load_external_data=False)) for net, path in fp32.items()}
    twins = {net: twin_path(folder, net) for net in NETS}
    tried = []
    for step, excluded_by in FALLBACKS.items():
        excluded = {net: excluded_by(nodes[net]) for net in NETS}
        for net in NETS:
            quantize_net(fp32[net], twins[net], feeds[net], excluded[net])
        gates = {engine: fp16_gate(fp32, twins, image_size=image_size, voxel_res=voxel_res, mean=mean, std=std,
                                   threshold=threshold, data=data, log=None, max_drop=max_drop, label="int8",
                                   open_candidate=opener)
                 for engine, opener in int8_engines().items()}
        passed = all(gate["passed"] for gate in gates.values())
        summary = "; ".join(f"{engine}: {describe(gate)}" for engine, gate in gates.items())
        tried.append({"step": step, "excluded": excluded, "passed": passed, "summary": summary})
        if passed:
            break
        say(f"INT8 ({step}) fails the gate: {summary}")
    figures = {"step": step, "excluded": excluded, "gates": gates, "tried": tried, "passed": passed,
               "calibration": {"split": "train", "views": calibrated, "method": "MinMax", "per_channel": True,
                               "symmetric": True}, "summary": summary}
    if not passed and not force:
        for path in twins.values():
            path.unlink(missing_ok=True)
        raise ModelError(f"INT8 twins fail the accuracy gate after {len(tried)} fallback steps (last: {step}; "
                         f"{summary}); export without --int8, or pass --force to keep them anyway")
    from recon.runtime.system import tensorrt_version

    version = trt_header_version(tensorrt_version())
    for net in NETS:
        write_bytes_atomic(cache_path(folder, net), trt_cache_text(calibration_ranges(fp32[net], feeds[net]),
                                                                   version).encode())
    figures["kept"] = True
    figures["tensorrt_cache"] = {"files": [cache_path(folder, n).name for n in NETS], "header_version": version}
    quantised = {net: len(nodes[net]) - len(excluded[net]) for net in NETS}
    verdict = "PASSED" if passed else "kept despite the failed gate (--force)"
    say(f"INT8 twins ({step}: {quantised['sketch']}/{len(nodes['sketch'])} sketch and {quantised['voxel']}/"
        f"{len(nodes['voxel'])} voxel layers INT8) {verdict}: {summary}")
    return figures
