"""`recon-cli infer` in a fresh process, as a user runs it: outputs, summary.json and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from cli_runner import assert_one_line_error, modules_loaded_by, run_cli
from conftest import noise_bytes


def run_infer(*args) -> subprocess.CompletedProcess:
    return run_cli("infer", *args)


def save_cutout(path, seed=0):
    rgba = np.zeros((150, 200, 4), np.uint8)
    rgba[30:120, 60:150, :3] = np.random.default_rng(seed).integers(40, 200, (90, 90, 3))
    rgba[30:120, 60:150, 3] = 255
    Image.fromarray(rgba).save(path)
    return path


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """Two good pictures and every kind of bad one, in one folder."""
    folder = tmp_path_factory.mktemp("pictures")
    save_cutout(folder / "chair.png")
    save_cutout(folder / "car.png", seed=1)
    (folder / "zero.png").write_bytes(b"")
    png, jpeg = noise_bytes("PNG"), noise_bytes("JPEG")
    (folder / "cut.png").write_bytes(png[: len(png) // 2])
    (folder / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "notes.png").write_text("shopping list, not a picture")
    Image.new("1", (8000, 7000)).save(folder / "huge.png")  # 56 megapixels in a few kB
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(folder / "black.png")
    Image.fromarray(np.full((60, 80, 3), 255, np.uint8)).save(folder / "white.jpg")
    return folder


BAD = {"zero.png": "empty", "cut.png": "truncated", "cut.jpg": "truncated", "notes.png": "not a picture",
       "huge.png": "megapixel", "black.png": "no object found", "white.jpg": "no object found"}


def test_good_and_bad_pictures(model_dir, pictures, tmp_path):
    out = tmp_path / "out"
    done = run_infer(pictures, "--model", model_dir, "--out", out, "--format", "obj,glb", "--device", "cpu",
                     "--threads", "2", "--batch", "3", "--height-m", "0.8")
    assert done.returncode == 1, done.stderr  # some failed, the others written
    assert "Traceback" not in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    entries = {os.path.basename(e["input"]): e for e in summary["results"]}
    assert set(entries) == set(BAD) | {"chair.png", "car.png"}
    for name in ("chair.png", "car.png"):
        entry = entries[name]
        stem = name[:-4]
        assert entry["status"] == "ok" and entry["error"] is None
        assert entry["outputs"] == {"obj": str(out / f"{stem}.obj"), "glb": str(out / f"{stem}.glb"),
                                    "preview": str(out / f"{stem}.preview.png")}
        assert entry["volume"] > 0 and entry["volume_m3"] > 0 and entry["faces"] > 0 and entry["vertices"] > 0
        assert len(entry["bbox"]) == 2 and set(entry["timings_ms"]) == {"preprocess", "sketch", "voxel", "mesh", "color"}
        assert f"{out / stem}.obj" in " ".join(done.stdout.split())  # says where the mesh went (a result: stdout)
    for name, reason in BAD.items():
        entry = entries[name]
        assert entry["status"] == "failed" and entry["outputs"] == {}
        assert entry["error"].startswith(str(pictures / name) + ":") and reason in entry["error"], entry["error"]
        lines = [line for line in done.stdout.splitlines() if str(pictures / name) + ":" in line]
        assert len(lines) == 1, done.stdout  # one clear line per failure
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(["car.glb", "car.obj", "car.preview.png", "chair.glb", "chair.obj",
                              "chair.preview.png", "index.html", "summary.json"])  # nothing for failures, no temp files


def test_all_ok_is_exit_0_with_globs_and_every_format(model_dir, pictures, tmp_path):
    out = tmp_path / "out"
    done = run_infer(str(pictures / "c[ah]*.png"), "--model", model_dir, "--out", out, "--device", "cpu",
                     "--format", "obj,ply,stl,glb,npy,binvox", "--no-preview")
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{s}.{f}" for s in ("car", "chair") for f in ("obj", "ply", "stl", "glb", "npy", "binvox")]
                           + ["index.html", "summary.json"])


def test_same_stem_from_two_folders_does_not_overwrite(model_dir, tmp_path):
    for folder, seed in (("a", 0), ("b", 4)):
        (tmp_path / folder).mkdir()
        save_cutout(tmp_path / folder / "x.png", seed)
    done = run_infer(tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", "--model", model_dir, "--out",
                     tmp_path / "out", "--device", "cpu", "--no-preview")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["index.html", "summary.json", "x.obj", "x_2.obj"]


@pytest.mark.parametrize("problem, fragments", [
    ("missing", ["model folder not found"]),
    ("incomplete", ["voxel.onnx", "missing"]),
    ("tampered", ["sketch.onnx", "sha256"]),
])
def test_bad_model_folder_is_exit_2(model_dir, pictures, tmp_path, problem, fragments):
    model = tmp_path / "model"
    if problem != "missing":
        shutil.copytree(model_dir, model)
    if problem == "incomplete":
        (model / "voxel.onnx").unlink()
    if problem == "tampered":
        data = bytearray((model / "sketch.onnx").read_bytes())
        data[-100] ^= 0x01
        (model / "sketch.onnx").write_bytes(bytes(data))
    done = run_infer(pictures / "chair.png", "--model", model, "--out", tmp_path / "out")
    assert done.returncode == 2
    assert_one_line_error(done, *fragments)
    assert not (tmp_path / "out").exists()  # nothing was written, so no empty output folder either


def test_usage_errors_are_exit_2(model_dir, pictures, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no pictures here")
    cases = [
        ((empty,), ["no pictures in this folder"]),
        ((str(tmp_path / "*.png"),), ["matches no files"]),
        ((pictures / "chair.png", "--format", "fbx"), ["'fbx' not supported", "obj"]),
        ((pictures / "chair.png", "--device", "cuda"), ["CUDAExecutionProvider", "--device cpu"]),
    ]
    for args, fragments in cases:
        done = run_infer(*args, "--model", model_dir, "--out", tmp_path / "out")
        assert done.returncode == 2, (args, done.stderr)
        assert_one_line_error(done, *fragments)
        assert not (tmp_path / "out").exists(), args


def test_output_folder_not_writable_is_exit_2(model_dir, pictures, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    done = run_infer(pictures / "chair.png", "--model", model_dir, "--out", blocker / "out")
    assert done.returncode == 2
    assert_one_line_error(done, "--out", "not writable")
    if os.geteuid() != 0:  # root writes anywhere: the permission case only means something for users
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        done = run_infer(pictures / "chair.png", "--model", model_dir, "--out", locked)
        assert done.returncode == 2
        assert_one_line_error(done, "not writable")


def test_help_does_not_load_the_runtime():
    assert modules_loaded_by("from recon.cli import infer_cmd", ("onnxruntime", "trimesh", "torch", "numpy")) == []
