"""Model folders: model.json verified file by file, metadata read from the ONNX files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import recon
from cli_runner import modules_loaded_by
from recon.runtime.errors import ModelError
from recon.runtime.model import default_model_dir, load_model_dir, read_onnx_metadata, verify_model_dir
from recon.runtime.preprocess import DEFAULT_FILL
from recon.train.presets import IMAGE_MEAN, IMAGE_STD, get_preset


@pytest.fixture
def model_copy(model_dir, tmp_path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    return copy


def test_metadata_matches_the_preset(model_dir):
    info = load_model_dir(model_dir)
    preset = get_preset("edge")
    assert info.image_size == preset.image_size and info.voxel_res == preset.voxel_res
    assert info.mean == pytest.approx(IMAGE_MEAN) and info.std == pytest.approx(IMAGE_STD)
    assert info.fill == pytest.approx(DEFAULT_FILL) and info.background == "white"
    assert 0 < info.threshold < 1 and info.preset == "edge"
    assert info.onnx("sketch") == model_dir / "sketch.onnx" and info.engine("sketch") is None
    # Read from the ONNX file itself (both nets carry the same keys).
    assert read_onnx_metadata(model_dir / "voxel.onnx")["recon.image_size"] == str(preset.image_size)


def test_verify_model_dir_returns_model_json_without_torch_or_onnx(model_dir, tmp_path):
    """What export checks its own output with, and the runtime checks before loading: standard library only.
    The engine sidecar check (before deserialising a TensorRT plan) is as light."""
    assert verify_model_dir(model_dir) == json.loads((model_dir / "model.json").read_text())
    engine = tmp_path / "sketch.engine"
    engine.write_bytes(b"plan")
    (tmp_path / "sketch.engine.json").write_text(json.dumps({"format": "recon-engine", "tensorrt": "10.3.0"}))
    statement = ("from recon.runtime.model import verify_model_dir\n"
                 "from recon.runtime.backends import check_engine_sidecar\n"
                 f"verify_model_dir({str(model_dir)!r}); check_engine_sidecar({str(engine)!r}, {{'tensorrt': '10.3.0'}})")
    assert modules_loaded_by(statement, ("torch", "onnx", "onnxruntime", "tensorrt")) == []


def _rewrite_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / "model.json").read_text())
    change(manifest)
    (folder / "model.json").write_text(json.dumps(manifest))


def _error(folder) -> str:
    with pytest.raises(ModelError) as error:
        load_model_dir(folder)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_missing_folder_and_manifest(tmp_path, model_copy):
    assert "model folder not found" in _error(tmp_path / "nowhere")
    (model_copy / "model.json").unlink()
    message = _error(model_copy)
    assert "model.json" in message and "missing" in message


def test_missing_file(model_copy):
    (model_copy / "voxel.onnx").unlink()
    message = _error(model_copy)
    assert str(model_copy / "voxel.onnx") in message and "missing" in message


def test_tampered_file(model_copy):
    data = bytearray((model_copy / "sketch.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    (model_copy / "sketch.onnx").write_bytes(bytes(data))
    message = _error(model_copy)
    assert str(model_copy / "sketch.onnx") in message and "sha256" in message


def test_truncated_file(model_copy):
    data = (model_copy / "voxel.onnx").read_bytes()
    (model_copy / "voxel.onnx").write_bytes(data[:1000])
    assert "bytes" in _error(model_copy)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(format="other"), "format 'other'"),
    (lambda m: m.update(format_version=99), "format_version 99"),
    (lambda m: m["files"].pop("voxel.onnx"), "does not list voxel.onnx"),
    (lambda m: m["files"].update({"../evil": {"sha256": "0", "bytes": 1}}), "bad file name"),
    (lambda m: m["files"]["voxel.onnx"].pop("bytes"), "entry for voxel.onnx lacks sha256/bytes"),
    (lambda m: m.pop("files"), 'malformed (no "files" table)'),
])
def test_manifest_problems(model_copy, change, message):
    _rewrite_manifest(model_copy, change)
    assert message in _error(model_copy)


def test_unreadable_manifest(model_copy):
    (model_copy / "model.json").write_text("{not json")
    assert f"{model_copy / 'model.json'}: unreadable" in _error(model_copy)
    (model_copy / "model.json").write_text("[]")
    assert "model.json: not a JSON object" in _error(model_copy)


def test_default_model_dir():
    folder = Path(recon.__file__).resolve().parent / "models" / "default"
    if (folder / "model.json").is_file():
        assert default_model_dir() == folder
    else:
        with pytest.raises(ModelError, match="no default model is installed; pass --model MODEL_DIR"):
            default_model_dir()
