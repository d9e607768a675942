"""The recon.* metadata_props every exported graph carries (docs/design.md, "Model folder"):
what they mean, how they are made from a run, stamped onto a graph and read back."""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path
from typing import Dict

import numpy as np

from recon.export.onnx_graphs import framing_size
from recon.runtime.model import FORMAT_VERSION as MODEL_FORMAT_VERSION

FORMAT_VERSION = str(MODEL_FORMAT_VERSION)  # recon.format_version: the model folder format written
OUTPUT_MEANINGS = {
    "normals": "(B,3,S,S) camera-space unit normals facing the camera (OpenGL camera: x right, y up, looking down -z)",
    "depth": "(B,1,S,S) depth offset from the object centre along the view axis; see recon.depth_meaning",
    "silhouette": "(B,1,S,S) probability that the pixel shows the object (sigmoid applied)",
    "features": "(B,F) the sketch encoder's two deepest feature maps averaged over the picture (what the "
                "picture looks like to the network; the confidence's appearance head reads them)",
    "occupancy": "(B,R,R,R) probability that the voxel is inside the object, axes [x, y, z] of the canonical "
                 "frame (y up, front -z), voxel i centred at -0.5 + (i + 0.5) / R (sigmoid applied)",
}
DEPTH_MEANING = ("camera depth minus camera distance (default 2.2): positive distance along the viewing axis to "
                 "the surface, offset so the object centre is 0; 0 off the object (use silhouette to mask)")
METADATA_KEYS = (
    "recon.format_version", "recon.preset", "recon.image_size", "recon.channel_order", "recon.mean", "recon.std",
    "recon.framing_fill", "recon.background", "recon.voxel_res", "recon.threshold", "recon.outputs",
    "recon.depth_meaning", "recon.data_fingerprint", "recon.version", "recon.git_commit", "recon.export_time",
    "recon.stage_weights",
)


def set_metadata(model, metadata: Dict[str, str], graph_name: str) -> None:
    import recon

    del model.metadata_props[:]
    for key in METADATA_KEYS:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, metadata[key]
    model.producer_name, model.producer_version = "recon", recon.__version__
    model.graph.name = graph_name
    model.doc_string = "recon: one photo -> 2.5D sketch -> voxels; see the recon.* metadata for preprocessing"
    if model.ir_version > 8:  # what TensorRT 8.6's parser is built against; opset <= 17 needs nothing newer
        model.ir_version = 8


def read_metadata(path: str | Path) -> Dict[str, str]:
    """The metadata_props of an ONNX file in file order (without loading its weights)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {entry.key: entry.value for entry in model.metadata_props}


def git_commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                              text=True, timeout=5)
        commit = done.stdout.strip()
        return commit if done.returncode == 0 and commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def model_metadata(loaded: dict, threshold: float | None = None) -> Dict[str, str]:
    """The recon.* metadata_props (strings; JSON where structured) from a loaded run; threshold: the
    default iso level (None: DEFAULT_THRESHOLD), best chosen on training data by `recon-cli eval --split train`."""
    import recon
    from recon.runtime.model import sha256_file
    from recon.runtime.preprocess import DEFAULT_FILL
    from recon.train.evaluate import DEFAULT_THRESHOLD
    from recon.train.presets import IMAGE_MEAN, IMAGE_STD

    preset = loaded["preset"]
    fingerprints = {key: loaded[key].get("data_fingerprint") for key in ("sketch", "voxel")}
    fingerprint = (fingerprints["sketch"] if fingerprints["sketch"] == fingerprints["voxel"]
                   else json.dumps(fingerprints))
    stages = {}
    for key in ("sketch", "voxel"):
        path = loaded["paths"][key]
        epoch = loaded[key].get("epoch")
        stages[key] = {"file": path.name, "stage": loaded[key].get("stage", path.stem),
                       "epoch": int(epoch) if isinstance(epoch, (int, np.integer)) else epoch,
                       "sha256": sha256_file(path)}
    return {
        "recon.format_version": FORMAT_VERSION,
        "recon.preset": preset.name,
        "recon.image_size": str(preset.image_size),
        "recon.channel_order": "RGB",
        "recon.mean": json.dumps([float(v) for v in IMAGE_MEAN]),
        "recon.std": json.dumps([float(v) for v in IMAGE_STD]),
        "recon.framing_fill": repr(float(DEFAULT_FILL)),
        "recon.background": "white",
        "recon.voxel_res": str(preset.voxel_res),
        "recon.threshold": repr(float(DEFAULT_THRESHOLD if threshold is None else threshold)),
        "recon.outputs": json.dumps(OUTPUT_MEANINGS),
        "recon.depth_meaning": DEPTH_MEANING,
        "recon.data_fingerprint": str(fingerprint),
        "recon.version": recon.__version__,
        "recon.git_commit": git_commit(),
        "recon.export_time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "recon.stage_weights": json.dumps(stages),
        **({"recon.framing_size": str(framing_size(preset))} if framing_size(preset) else {}),
    }
