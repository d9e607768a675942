"""Fault injection, runtime side: bad pictures, oversized batches, tampered model folders, full disks,
bad destinations, killed writers, Ctrl-C and SIGKILL, a stalled stream. Each bad input is built for real
(files, folders, signals, a loopback HTTP camera) and checked for its exit code, exactly one `error:` line
(or a failed item), no traceback, no temporary or partial files, and the rest of the batch processed.
Datasets and training: tests/test_faults_training.py; helpers: tests/fault_tools.py."""

from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_runner import run_cli, start_cli
from fault_tools import RUN_FILES, cutout, killed_writer, one_error, rehash, run_all, temp_files, wait_for
from recon.runtime.errors import InputError, ModelError, ReconError


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fault_pictures")
    cutout(folder / "good.png")
    strip = np.full((16, 100_000, 3), 255, np.uint8)  # under the megapixel limit, its box 100000 px square
    strip[4:12, 40_000:60_000] = (200, 60, 40)
    Image.fromarray(strip).save(folder / "wide.png")
    Image.fromarray(np.ascontiguousarray(strip[:, :30_000].transpose(1, 0, 2))).save(folder / "tall.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


# ---------------------------------------------------------------- pictures and batches


def test_crop_memory_follows_the_crop_not_the_box_squared():
    from recon.runtime.preprocess import crop_image, whole_image_box

    strip = np.random.default_rng(0).integers(0, 255, (16, 5000, 3), dtype=np.uint8)
    tracemalloc.start()
    crop = crop_image(strip, whole_image_box(16, 5000), 128)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert crop.shape == (128, 128, 3)
    assert peak < 8 * 2**20, peak  # padding to the 5000 px square box would take 72 MiB


def test_tall_and_wide_pictures_do_not_stop_the_batch(model_dir, pictures, tmp_path):
    out = tmp_path / "out"
    done = run_cli("infer", pictures, "--model", model_dir, "--out", out, "--no-preview", "--batch", "4")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr  # broken.png failed
    entries = {Path(e["input"]).name: e for e in json.loads((out / "summary.json").read_text())["results"]}
    assert set(entries) == {"good.png", "wide.png", "tall.png", "broken.png"}
    assert entries["good.png"]["status"] != "failed" and entries["broken.png"]["status"] == "failed"
    for entry in entries.values():  # every listed output exists; nothing else, nothing temporary
        assert all(Path(path).is_file() for path in entry["outputs"].values())
    listed = {Path(p).name for e in entries.values() for p in e["outputs"].values()}
    assert {p.name for p in out.iterdir()} - RUN_FILES == listed


def test_profile_batch_is_checked_against_memory_before_allocating(model_dir, tmp_path):
    report = tmp_path / "profile.json"
    done = run_cli("profile", "--model", model_dir, "--batch", "1,100000", "--iterations", "1",
                   "--json", report, timeout=120)
    one_error(done, "batch 100000", "GiB", "at most")
    assert not report.exists()


# ---------------------------------------------------------------- model folders


@pytest.fixture
def tampered(model_dir, tmp_path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    return folder


def test_swapped_networks_are_refused_by_infer_and_profile(tampered, pictures, tmp_path):
    sketch, voxel = tampered / "sketch.onnx", tampered / "voxel.onnx"
    os.rename(sketch, tmp_path / "swap")
    os.rename(voxel, sketch)
    os.rename(tmp_path / "swap", voxel)
    rehash(tampered)
    for done in run_all(("infer", pictures / "good.png", "--model", tampered, "--out", tmp_path / "out"),
                        ("profile", "--model", tampered, "--iterations", "1")):
        one_error(done, "sketch.onnx", "swapped")
    assert not (tmp_path / "out" / "summary.json").exists()


def test_networks_of_two_exports_and_an_edited_metadata_copy_are_refused(tampered):
    onnx = pytest.importorskip("onnx")
    from recon.runtime.model import load_model_dir

    manifest = json.loads((tampered / "model.json").read_text())
    manifest["metadata"]["recon.threshold"] = "0.9"
    (tampered / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="recon.threshold.*edited or mixed up"):
        load_model_dir(tampered)
    voxel = onnx.load(str(tampered / "voxel.onnx"))
    for entry in voxel.metadata_props:
        if entry.key == "recon.export_time":
            entry.value = "2001-01-01T00:00:00+00:00"
    onnx.save(voxel, str(tampered / "voxel.onnx"))
    rehash(tampered)
    with pytest.raises(ModelError, match="different exports"):
        load_model_dir(tampered)


def test_external_data_must_be_listed_and_hashed(tampered):
    onnx = pytest.importorskip("onnx")
    from recon.runtime.model import load_model_dir

    sketch = onnx.load(str(tampered / "sketch.onnx"))
    onnx.save(sketch, str(tampered / "sketch.onnx"), save_as_external_data=True, location="sketch.weights",
              size_threshold=0)
    rehash(tampered)  # sketch.onnx's new hash, but sketch.weights is not listed
    with pytest.raises(ModelError, match="sketch.weights, which model.json does not list"):
        load_model_dir(tampered)
    manifest = json.loads((tampered / "model.json").read_text())
    manifest["files"]["sketch.weights"] = {}
    (tampered / "model.json").write_text(json.dumps(manifest))
    rehash(tampered)
    assert load_model_dir(tampered).image_size > 0  # listed and hashed: accepted
    with open(tampered / "sketch.weights", "r+b") as weights:  # and its hash is checked
        weights.write(b"\0\0\0\0")
    with pytest.raises(ModelError, match="sketch.weights: sha256 does not match"):
        load_model_dir(tampered)


def test_reconstructor_raises_its_own_errors(model_dir):
    from recon.runtime.pipeline import Reconstructor

    with pytest.raises(InputError, match="model_dir: expected the path"):
        Reconstructor(model_dir=123)
    reconstruct = Reconstructor(model_dir, threads=1)
    reconstruct.close()
    with pytest.raises(ReconError, match="closed"):
        reconstruct(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="batch 10000000: needs about"):
        Reconstructor(model_dir, batch=10_000_000)


# ---------------------------------------------------------------- writing results


def test_a_full_disk_leaves_no_partial_item(model_dir, pictures, tmp_path):
    import resource

    from recon.runtime.pipeline import Reconstructor

    with Reconstructor(model_dir, threads=1) as reconstruct:
        result = reconstruct(str(pictures / "good.png"))
    out = tmp_path / "out"
    out.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    written = result.save(out, "probe", formats=("glb", "obj"), preview=False)
    sizes = {fmt: path.stat().st_size for fmt, path in written.items()}
    for path in written.values():
        path.unlink()
    smaller_first = sorted(sizes, key=sizes.get)
    assert sizes[smaller_first[0]] < sizes[smaller_first[1]]
    # The first file of the group fits, the second does not (Python ignores SIGXFSZ: the write fails, EFBIG).
    resource.setrlimit(resource.RLIMIT_FSIZE, (sizes[smaller_first[0]] + 1, hard))
    try:
        with pytest.raises(OSError, match="item"):
            result.save(out, "item", formats=smaller_first, preview=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert list(out.iterdir()) == []  # neither the finished file of the group nor a temporary one


def test_summary_json_on_a_full_disk_is_one_error_line(model_dir, pictures, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    code = ("import resource, runpy, sys\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (64, resource.RLIM_INFINITY))\n"
            "sys.argv = ['recon-cli'] + sys.argv[1:]\n"
            "runpy.run_module('recon.cli.main', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", code, "infer", str(pictures / "good.png"), "--model",
                           str(model_dir), "--out", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})
    one_error(done, "summary.json", "File too large", code=1)
    assert list(out.iterdir()) == []


def test_destinations_are_checked_before_any_work(model_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    missing = tmp_path / "no" / "such" / "folder"
    cases = [
        (("infer", "x.png", "--model", model_dir, "--out", blocker), "exists and is not a folder"),
        (("stream", "0", "--model", model_dir, "--out", blocker / "sub"), "not writable"),
        (("eval", "--data", tmp_path, "--model", model_dir, "--json", missing / "e.json"), "does not exist"),
        (("profile", "--model", model_dir, "--json", missing / "p.json"), "does not exist"),
        (("train", "sketch", "--data", tmp_path, "--out", blocker), "exists and is not a folder"),
        (("data", "synth", "--out", blocker, "--objects", "1"), "exists and is not a folder"),
        (("data", "preview", tmp_path, "--out", missing / "sheet.png"), "does not exist"),
        (("export", "--weights", tmp_path, "--out", blocker / "model"), "a-file"),
    ]
    for done, (args, fragment) in zip(run_all(*(args for args, _ in cases)), cases):
        one_error(done, fragment)


def test_the_temporary_folder_of_a_killed_export_is_removed_by_the_next(tmp_path):
    from recon.export.onnx_export import prepare_output

    killed_writer(tmp_path, "model", kind="dir")  # an export killed before it renamed its folder
    prepare_output(tmp_path / "model")
    assert temp_files(tmp_path) == []


# ---------------------------------------------------------------- interruptions


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def started_synth(out: Path) -> subprocess.Popen:
    """`data synth` with two workers, in its own process group (as a terminal runs it), once it has
    finished its first object."""
    process = start_cli("data", "synth", "--out", out, "--objects", "40", "--categories", "chair",
                        "--views", "2", "--image-size", "64", "--voxel-res", "32", "--workers", "2",
                        start_new_session=True)
    wait_for(lambda: any((out / "objects").glob("*.npz")) or process.poll() is not None)
    assert process.poll() is None, process.communicate()
    return process


def test_ctrl_c_in_data_synth_is_one_line_and_leaves_no_temporaries(tmp_path):
    process = started_synth(tmp_path / "data")
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C on a terminal does: the whole group
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert [line.strip() for line in err.splitlines()].count("interrupted") == 1, err
    for noise in ("Traceback", "ForkPoolWorker", "KeyboardInterrupt"):  # nothing from the workers
        assert noise not in err, err
    assert temp_files(tmp_path) == []


def test_killing_data_synth_takes_its_workers_along(tmp_path):
    process = started_synth(tmp_path / "data")
    workers = children_of(process.pid)
    assert len(workers) == 2, workers
    process.kill()
    wait_for(lambda: all(gone(pid) for pid in workers), timeout=20)
    out, err = process.communicate(timeout=60)  # the pipes close: no orphan holds them
    assert "Traceback" not in err, err


def test_ctrl_c_in_infer_keeps_summary_json_and_the_files_in_step(model_dir, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for seed in range(40):
        cutout(folder / f"p{seed:02d}.png", seed)
    out = tmp_path / "out"
    process = start_cli("infer", folder, "--model", model_dir, "--out", out, "--batch", "1", "--format", "obj,glb")
    wait_for(lambda: (out / "summary.json").exists() or process.poll() is not None)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and [line.strip() for line in err.splitlines()].count("interrupted") == 1, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and 1 <= len(summary["results"]) < 40
    listed = {Path(p).name for entry in summary["results"] for p in entry["outputs"].values()}
    assert {p.name for p in out.iterdir()} - RUN_FILES == listed  # no item half there, none unlisted


class _StallingStream(http.server.BaseHTTPRequestHandler):
    """An MJPEG camera on loopback that sends two frames, then nothing (connection kept open)."""

    frame = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for _ in range(2):
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(self.frame)
                             + self.frame + b"\r\n")
            self.wfile.flush()
        time.sleep(40)

    def log_message(self, *args):
        pass


@pytest.mark.timeout(90)
def test_stream_stall_ends_at_its_stated_timeout(model_dir):
    pytest.importorskip("cv2", reason="OpenCV (the `video` extra) is not installed")
    from recon.runtime.pipeline import Reconstructor
    from recon.runtime.stream import StreamError

    buffer = io.BytesIO()
    Image.open(cutout(Path(model_dir).parent / "frame.png")).convert("RGB").save(buffer, "JPEG")
    _StallingStream.frame = buffer.getvalue()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StallingStream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Reconstructor(model_dir, threads=1) as reconstruct:
            start = time.monotonic()
            with pytest.raises(StreamError, match="no frame for 2 s"):
                for _ in reconstruct.stream(f"http://127.0.0.1:{server.server_address[1]}/cam.mjpg", timeout_s=2.0,
                                            retries=0):
                    pass
            waited = time.monotonic() - start
    finally:
        server.shutdown()
    assert waited < 6.0, waited  # FFmpeg's own read timeout is 30 s
