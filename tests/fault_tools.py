"""Helpers of the fault-injection suites (tests/test_faults*.py): one-error checks, parallel CLI runs,
temporary-file listings, pictures and killed writers."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cli_runner import start_cli


def one_error(done, *fragments, code=2) -> str:
    """Exit `code`, exactly one `error:` line naming every fragment, no traceback; the line."""
    text = done.stderr + done.stdout
    assert done.returncode == code, text
    assert "Traceback" not in text, text
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def run_all(*commands, timeout: float = 300, env: dict | None = None) -> list[subprocess.CompletedProcess]:
    """Several independent `recon-cli` runs at once (each is mostly start-up time)."""
    started = [(args, start_cli(*args, env=env)) for args in commands]
    done = []
    for args, process in started:
        out, err = process.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(args, process.returncode, out, err))
    return done


RUN_FILES = {"summary.json", "index.html"}  # what `infer --out` holds besides each picture's outputs


def temp_files(folder: Path) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if p.name.endswith(".tmp")]


def cutout(path: Path, seed: int = 0) -> Path:
    rgba = np.zeros((150, 200, 4), np.uint8)
    rgba[30:120, 60:150, :3] = np.random.default_rng(seed).integers(40, 200, (90, 90, 3))
    rgba[30:120, 60:150, 3] = 255
    Image.fromarray(rgba).save(path)
    return path


def rehash(folder: Path) -> None:
    """Rewrite model.json's sizes and hashes for the files now in the folder (what a tamperer does)."""
    manifest = json.loads((folder / "model.json").read_text())
    for name in manifest["files"]:
        data = (folder / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / "model.json").write_text(json.dumps(manifest))


def killed_writer(folder: Path, name: str, kind: str = "file") -> None:
    """A process that dies by SIGKILL halfway through an atomic write of folder/name (or an export's
    temporary model folder): its temporary file stays behind, as after a power cut."""
    code = (f"import os, signal, tempfile\n"
            f"from recon.runtime.fileio import atomic_path, temp_prefix\n"
            f"if {kind!r} == 'file':\n"
            f"    with atomic_path({str(folder / name)!r}) as tmp:\n"
            f"        tmp.write_bytes(b'x' * 100000)\n"
            f"        os.kill(os.getpid(), signal.SIGKILL)\n"
            f"else:\n"
            f"    tempfile.mkdtemp(prefix=temp_prefix({name!r}), suffix='.tmp', dir={str(folder)!r})\n"
            f"    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert temp_files(folder), "the killed writer left nothing to clean"




def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
