"""The package as users install it: `pip install .` from a clean checkout builds without setuptools
warnings and ships the default model folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tracked_files() -> list[str]:
    done = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("not a git checkout: cannot tell which files a clean clone has")
    return [name for name in done.stdout.splitlines() if (ROOT / name).is_file()]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_builds_without_warnings_and_ships_the_model(tmp_path):
    clone = tmp_path / "clone"  # what a clean clone holds: tracked files only (no data/, runs/, build/)
    for name in tracked_files():
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, clone / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "dist")], cwd=clone, capture_output=True, text=True, timeout=580)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "Warning" not in log and "deprecated" not in log, log[-3000:]
    names = zipfile.ZipFile(next((tmp_path / "dist").glob("recon-*.whl"))).namelist()
    shipped = {name for name in names if name.startswith("recon/models/default/")}
    assert {f"recon/models/default/{file}" for file in ("model.json", "sketch.onnx", "voxel.onnx")} <= shipped
    assert "recon/cli/main.py" in names and "recon/runtime/pipeline.py" in names
