"""Model folders (`recon-cli export`): check every file against model.json, then read the metadata.

The preprocessing a model needs (input size, mean/std, framing fill, background colour, threshold)
is read from the ONNX files' own metadata_props, through ONNX Runtime (no `onnx` dependency), and
falls back to model.json's "metadata" copy for keys a file lacks. Layout: docs/design.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from recon.runtime.errors import InputError, ModelError, first_line

__all__ = ["PRECISIONS", "ModelInfo", "load_model_dir", "verify_model_dir", "default_model_dir", "read_onnx_metadata",
           "read_json", "sha256_file"]

FORMAT = "recon-model"
FORMAT_VERSION = 1
MANIFEST = "model.json"
NETS = ("sketch", "voxel")  # each MODEL/<net>.onnx is required
# precision -> the ONNX file of each net: FP32, and the optional twins `recon-cli export --fp16/--int8` write.
PRECISIONS = {"fp32": "{net}.onnx", "fp16": "{net}.fp16.onnx", "int8": "{net}.int8.onnx"}
# Metadata keys that must agree between the two nets: they are the preprocessing contract.
_SHARED_KEYS = ("recon.image_size", "recon.mean", "recon.std", "recon.framing_fill", "recon.background",
                "recon.channel_order", "recon.voxel_res")


@dataclass(frozen=True)
class ModelInfo:
    """A verified model folder and the preprocessing its metadata prescribes."""

    path: Path
    manifest: dict  # model.json as read
    metadata: dict  # the recon.* strings (ONNX metadata_props, model.json's copy for missing keys)
    image_size: int  # network input side S (square)
    voxel_res: int  # output grid side R
    mean: tuple  # per-channel RGB mean of [0, 1] pixels
    std: tuple
    fill: float  # framing: the object's longer side covers this fraction of the crop
    background: str  # colour RGBA inputs are composited on
    threshold: float  # default iso level of the occupancy probabilities
    preset: str = ""
    files: dict = field(default_factory=dict)  # name -> {"sha256", "bytes"}
    # Side of the cheap whole-picture pass that finds the object (recon.framing_size; models whose
    # sketch graph has a fixed input side frame at image_size, i.e. a second full pass).
    framing_size: int = 0
    outputs: dict = field(default_factory=dict)  # net -> its output names (the contract's, and optional ones)

    def onnx(self, net: str, precision: str = "fp32") -> Path:
        """MODEL/<net>.onnx or its twin for `precision` (PRECISIONS); ModelError when the folder lacks it."""
        if precision not in PRECISIONS:
            raise InputError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        name = PRECISIONS[precision].format(net=net)
        if name not in self.files:
            raise ModelError(f"{self.path / name}: not in this model folder (export with --{precision} to make it)")
        return self.path / name

    def engine(self, net: str) -> Path | None:
        """MODEL/<net>.engine when the folder has a TensorRT plan for it, else None."""
        name = f"{net}.engine"
        return self.path / name if name in self.files else None

    def sha256(self, name: str) -> str:
        return self.files[name]["sha256"]


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (what model.json and engine sidecars record)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def default_model_dir() -> Path:
    """The model folder shipped inside the package (recon/models/default), when one is installed."""
    import recon  # the package root: light (version only)

    path = Path(recon.__file__).resolve().parent / "models" / "default"
    if not (path / MANIFEST).is_file():
        raise ModelError("no default model is installed; pass --model MODEL_DIR (make one with recon-cli export)")
    return path


def read_onnx_metadata(path) -> dict:
    """An ONNX file's metadata_props as a dict, read by ONNX Runtime on the CPU without optimising."""
    return dict(_header_session(path).get_modelmeta().custom_metadata_map)


def _header_session(path):
    """An unoptimised CPU session: enough to read the metadata and the input/output signature."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # InvalidProtobuf, Fail, ...: the file is not a loadable ONNX model
        raise ModelError(f"{path}: not a loadable ONNX model ({first_line(error)})") from None
    return session


def read_json(path, what: str = "JSON object", hint: str = "") -> dict:
    """The JSON object in `path`; ModelError (one line naming the file, then `hint`) when the file is
    missing, unreadable or holds something other than an object (described as `what`)."""
    path = Path(path)
    tail = f"; {hint}" if hint else ""
    if not path.is_file():
        raise ModelError(f"{path}: missing{tail}")
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelError(f"{path}: unreadable ({first_line(error)}){tail}") from None
    if not isinstance(value, dict):
        raise ModelError(f"{path}: not a {what}{tail}")
    return value


def verify_model_dir(path) -> dict:
    """Check a model folder against its model.json (every listed file's size and sha256); return model.json.

    Standard library only (no onnxruntime, no torch): `recon-cli export` calls it on what it wrote.
    ModelError naming the file for: a missing folder, a missing or malformed model.json, another
    format or a newer version, a net not listed, a listed file missing, a size or hash mismatch.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found (make one with recon-cli export --weights RUN --out {folder})")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ModelError(f"{manifest_path}: missing; {folder} is not a model folder (export it again with recon-cli export)")
    manifest = read_json(manifest_path)
    if manifest.get("format") != FORMAT:
        raise ModelError(f"{manifest_path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ModelError(f"{manifest_path}: format_version {version!r}; this recon reads version {FORMAT_VERSION} "
                         "(update recon or export the model again)")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ModelError(f"{manifest_path}: malformed (no \"files\" table)")
    for net in NETS:
        if f"{net}.onnx" not in files:
            raise ModelError(f"{manifest_path}: does not list {net}.onnx")
    for name, entry in files.items():
        _verify_file(folder, manifest_path, name, entry)
    return manifest


def load_model_dir(path) -> ModelInfo:
    """Verify a model folder (`verify_model_dir`) and read its metadata.

    ModelError naming the file for anything `verify_model_dir` refuses, and for metadata missing or
    disagreeing between the nets.
    """
    folder = Path(path)
    manifest = verify_model_dir(folder)
    return _model_info(folder, manifest, *_merged_metadata(folder, manifest))


def _verify_file(folder: Path, manifest_path: Path, name: str, entry) -> None:
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise ModelError(f"{manifest_path}: bad file name {name!r}")
    if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and isinstance(entry.get("bytes"), int)):
        raise ModelError(f"{manifest_path}: entry for {name} lacks sha256/bytes")
    file = folder / name
    if not file.is_file():
        raise ModelError(f"{file}: missing from the model folder (listed in {MANIFEST})")
    size = file.stat().st_size
    if size != entry["bytes"]:
        raise ModelError(f"{file}: {size} bytes, {MANIFEST} says {entry['bytes']} (truncated or replaced; "
                         "export the model again)")
    if sha256_file(file) != entry["sha256"]:
        raise ModelError(f"{file}: sha256 does not match {MANIFEST} (modified or corrupt; export the model again)")


def _merged_metadata(folder: Path, manifest: dict) -> tuple[dict, dict]:
    """The sketch net's metadata_props, checked against the voxel net's, completed from model.json, and
    each net's output names; each net's signature, external data and provenance checked
    (recon.runtime.model_checks)."""
    from recon.runtime import model_checks

    sessions = {}
    for net in NETS:
        model_checks.check_external_data(folder / f"{net}.onnx", manifest["files"])
        sessions[net] = _header_session(folder / f"{net}.onnx")
    per_net = {net: dict(session.get_modelmeta().custom_metadata_map) for net, session in sessions.items()}
    for key in _SHARED_KEYS:
        values = {net: meta[key] for net, meta in per_net.items() if key in meta}
        if len(set(values.values())) > 1:
            raise ModelError(f"{folder}: sketch.onnx and voxel.onnx disagree on {key} ({values['sketch']!r} vs "
                             f"{values['voxel']!r}); export the model again")
    model_checks.check_folder(folder, manifest, per_net)
    for net, session in sessions.items():
        model_checks.check_network(folder / f"{net}.onnx", net, session, per_net[net])
    fallback = manifest.get("metadata") if isinstance(manifest.get("metadata"), dict) else {}
    merged = {str(k): str(v) for k, v in fallback.items()}
    merged.update(per_net["voxel"])
    merged.update(per_net["sketch"])
    return merged, {net: tuple(arg.name for arg in session.get_outputs()) for net, session in sessions.items()}


def _model_info(folder: Path, manifest: dict, meta: dict, outputs: dict) -> ModelInfo:
    def get(key: str, parse, check=lambda v: True, expected: str = ""):
        if key not in meta:
            raise ModelError(f"{folder / 'sketch.onnx'}: metadata has no {key} (export the model again)")
        try:
            value = parse(meta[key])
        except (TypeError, ValueError):
            value = None
        if value is None or not check(value):
            raise ModelError(f"{folder / 'sketch.onnx'}: metadata {key} = {meta[key]!r} is not {expected}")
        return value

    def triple(text: str) -> tuple:
        values = tuple(float(v) for v in json.loads(text))
        return values if len(values) == 3 else None

    get("recon.format_version", int, lambda v: v == FORMAT_VERSION, f"{FORMAT_VERSION} (update recon)")
    channel_order = meta.get("recon.channel_order", "RGB")
    if channel_order != "RGB":
        raise ModelError(f"{folder / 'sketch.onnx'}: metadata recon.channel_order = {channel_order!r}; only RGB is supported")
    return ModelInfo(
        path=folder,
        manifest=manifest,
        metadata=meta,
        image_size=get("recon.image_size", int, lambda v: v >= 32, "an integer >= 32"),
        voxel_res=get("recon.voxel_res", int, lambda v: v >= 2, "an integer >= 2"),
        mean=get("recon.mean", triple, expected="a JSON list of 3 numbers"),
        std=get("recon.std", triple, lambda v: min(v) > 0, "a JSON list of 3 positive numbers"),
        fill=get("recon.framing_fill", float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
        background=meta.get("recon.background", "white"),
        threshold=get("recon.threshold", float, lambda v: 0 < v < 1, "a number in (0, 1)") if "recon.threshold" in meta else 0.5,
        preset=meta.get("recon.preset", ""),
        files=dict(manifest["files"]),
        outputs=outputs,
        framing_size=(get("recon.framing_size", int, lambda v: v >= 32 and v % 32 == 0, "a multiple of 32")
                      if "recon.framing_size" in meta else get("recon.image_size", int)),
    )
