"""The README's examples, run as written: its Python API block, and its quick tour's commands in order
on tiny data (size options appended, which override the README's: the last value of an option wins).

Skipped quick-tour lines, each for a reason printed in the test: the ShapeNet conversion (no ShapeNet
here) and the torchrun line (elided arguments; tests/test_train.py runs DDP). `stream 0` reads a video
file instead of camera 0 (no camera here; the same code path after opening).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
EXAMPLES = ROOT / "examples"

# Appended to a quick-tour command (by its first two words) so it runs in seconds on tiny data.
TINY = {
    ("data", "synth"): ["--objects", "2", "--views", "2", "--image-size", "64", "--voxel-res", "32", "--workers", "1"],
    ("data", "build"): ["--views", "2", "--image-size", "64", "--voxel-res", "32", "--workers", "1"],
    ("data", "preview"): ["--samples", "2"],
    ("train", "*"): ["--epochs", "1", "--batch", "2"],
    ("eval", "*"): ["--trials", "1", "--batch", "4"],
    ("profile", "*"): ["--batch", "1", "--iterations", "2", "--warmup", "0"],
    ("stream", "*"): ["--max-frames", "4"],
}
SKIP = {"r2n2": "needs the ShapeNet release", "torchrun": "elided arguments; DDP is tests/test_train.py's"}


def code_block(after_heading: str, language: str) -> str:
    """The first ```language block after the line `after_heading` (or after the first block's start)."""
    start = README.index(after_heading)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(README, start)
    assert match, f"no {language} block after {after_heading!r} in the README"
    return match.group(1)


def quick_tour() -> list[list[str]]:
    """The quick tour's command lines, split as a shell would (comments dropped)."""
    return [words for line in code_block("## Quick tour", "bash").splitlines() if (words := shlex.split(line, comments=True))]


def write_clip(path: Path, frames: int = 6) -> None:
    """A short video of the example photo (OpenCV: the `video` extra, installed with dev)."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV (the `video` extra) is not installed")
    import numpy as np
    from PIL import Image

    frame = np.asarray(Image.open(EXAMPLES / "chair_photo.jpg").convert("RGB").resize((128, 128)))[..., ::-1]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 128))
    for _ in range(frames):
        writer.write(np.ascontiguousarray(frame))
    writer.release()


def write_pictures(folder: Path) -> None:
    """The pictures the README's examples name: photo.png, a.png, b.png, frames/, shots/*.jpg, clip.mp4."""
    from PIL import Image

    Image.open(EXAMPLES / "chair_photo.jpg").save(folder / "photo.png")
    shutil.copy(EXAMPLES / "car_test.png", folder / "a.png")
    shutil.copy(EXAMPLES / "chair_test.png", folder / "b.png")
    (folder / "frames").mkdir()
    shutil.copy(EXAMPLES / "airplane_test.png", folder / "frames" / "airplane.png")
    (folder / "shots").mkdir()
    Image.open(EXAMPLES / "car_photo.jpg").save(folder / "shots" / "car.jpg")
    write_clip(folder / "clip.mp4")


def write_meshes(folder: Path) -> None:
    """`my_meshes/` and `cad/` of the data build lines: one small chair-ish mesh each, and `fixes.tsv`."""
    import trimesh

    for name in ("my_meshes", "cad"):
        (folder / name / "chair").mkdir(parents=True)
        seat = trimesh.creation.box((1.0, 0.1, 1.0))
        back = trimesh.creation.box((1.0, 1.0, 0.1)).apply_translation((0, 0.5, 0.45))
        trimesh.util.concatenate([seat, back]).export(folder / name / "chair" / "box_chair.obj")
    (folder / "fixes.tsv").write_text("# <mesh file name> <TAB> <rotation 0-23 | exclude>\n")


def run(words: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """`recon-cli ...` as the module a fresh interpreter runs (the same entry point), in `cwd`."""
    command = [sys.executable, "-m", "recon.cli.main", *words[1:]] if words[0] == "recon-cli" else words
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"})


@pytest.mark.timeout(300)
def test_python_api_example_runs_as_written(tmp_path):
    write_pictures(tmp_path)
    done = subprocess.run([sys.executable, "-c", code_block("Python API", "python")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "photo.glb").stat().st_size > 0  # result.save made the missing folder
    assert (tmp_path / "out" / "photo.preview.png").stat().st_size > 0
    assert "ok" in done.stdout.split()  # print(result.status, ...)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_quick_tour_runs_as_written_on_tiny_data(tmp_path):
    write_pictures(tmp_path)
    write_meshes(tmp_path)
    ran = []
    for words in quick_tour():
        if skipped := next((reason for key, reason in SKIP.items() if key in words), None):
            print(f"skipped: {shlex.join(words)} ({skipped})")
            continue
        if words[:3] == ["recon-cli", "stream", "0"]:
            words = [*words[:2], "clip.mp4", *words[3:]]
        key = (words[1], words[2] if words[1] == "data" else "*")
        done = run(words + TINY.get(key, []), tmp_path)
        # infer's exit code 1 is "some pictures failed" (a 1-epoch model finds no object in some): still a run
        assert done.returncode == 0 or (words[1] == "infer" and done.returncode == 1), (shlex.join(words),
                                                                                       done.stderr[-3000:])
        assert "Traceback" not in done.stderr and "error:" not in done.stderr, (shlex.join(words), done.stderr)
        ran.append(words[1:3])
    assert len(ran) >= 15, ran  # the tour is really being run, not skipped wholesale
    # Outputs land where the README says: numbered folders under runs/, the named ones elsewhere.
    assert (tmp_path / "runs" / "preview" / "poses.png").exists() or (tmp_path / "runs" / "preview").is_dir()
    assert (tmp_path / "runs" / "preview2" / "sheet.png").stat().st_size > 0
    assert json.loads((tmp_path / "runs" / "a" / "eval.json").read_text())["variant"] == "full"
    assert json.loads((tmp_path / "models" / "a" / "model.json").read_text())["iou"]["variant"] == "full"
    summary = json.loads((tmp_path / "runs" / "infer" / "summary.json").read_text())
    assert sorted(Path(r["input"]).name for r in summary["results"]) == ["airplane.png", "car.jpg", "photo.png"]
    failed = [r for r in summary["results"] if r["status"] == "failed"]  # a 1-epoch model misses some objects
    assert all(r["error"] and "\n" not in r["error"] and Path(r["input"]).name in r["error"] for r in failed), failed
    assert json.loads((tmp_path / "runs" / "live" / "summary.json").read_text())["stats"]["read"] == 4
    assert "batches" in json.loads((tmp_path / "runs" / "profile.json").read_text())
    litter = sorted(p.name for p in tmp_path.iterdir())
    assert litter == sorted(["a.png", "b.png", "cad", "clip.mp4", "data", "fixes.tsv", "frames", "models",
                             "my_meshes", "photo.png", "runs", "shots"]), litter
