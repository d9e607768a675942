"""Capture loops (recon.runtime.stream) over real video files and frame generators, with the shipped model."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cli_runner import run_cli
from recon.runtime.errors import InputError, ReconError

cv2 = pytest.importorskip("cv2", reason="OpenCV (the `video` extra) is not installed")


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "chair_photo.jpg"


def drawn(i: int, size: int = 96) -> np.ndarray:
    """An RGB frame: the shipped example chair, moving right with i (the shipped model's confidence
    refuses a plain drawn box as no chair, car or airplane, as it should)."""
    from PIL import Image

    base = np.asarray(Image.open(EXAMPLE).convert("RGB").resize((size, size)))
    shift = i % max(1, size // 8)
    frame = np.roll(base, shift, axis=1)
    frame[:, :shift] = base[:, :1]
    return frame


def write_video(path, frames: int = 20, size: int = 96) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size, size))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(drawn(i, size)[..., ::-1])  # OpenCV writes BGR
    writer.release()


@pytest.fixture(scope="module")
def reconstructor():
    from recon.runtime.pipeline import Reconstructor

    with Reconstructor(threads=1) as reconstruct:
        yield reconstruct


@pytest.fixture
def video(tmp_path):
    path = tmp_path / "moving.avi"
    write_video(path)
    return path


@pytest.mark.timeout(60)
def test_video_file_gives_every_frame_in_order(reconstructor, video):
    with reconstructor.stream(video) as stream:
        frames = list(stream)
    assert [f.index for f in frames] == list(range(20))
    assert all(f.ok for f in frames), [f.result.error for f in frames if not f.ok]
    assert all(f.latency_ms > 0 and f.done_at >= f.captured_at for f in frames)
    assert frames[0].result.name == "frame_000000"
    stats = stream.stats
    assert (stats.read, stats.processed, stats.dropped) == (20, 20, 0)
    assert stats.fps > 0 and stats.latency(0.5) <= stats.latency(0.99)


@pytest.mark.timeout(60)
def test_every_nth_frame(reconstructor, video):
    stream = reconstructor.stream(video, every=5)
    assert [f.index for f in stream] == [0, 5, 10, 15]
    assert (stream.stats.read, stream.stats.skipped, stream.stats.dropped) == (20, 16, 0)


@pytest.mark.timeout(60)
def test_slow_consumer_on_live_source_drops_frames(reconstructor):
    def camera(n=300):
        for i in range(n):
            time.sleep(0.002)
            yield drawn(i)

    stream = reconstructor.stream(camera(), live=True)
    latencies = []
    for frame in stream:
        latencies.append(frame.latency_ms)
        time.sleep(0.1)  # a consumer far slower than the camera
    stats = stream.stats
    assert stats.read == 300
    assert stats.dropped > 0
    assert stats.processed + stats.dropped == 300
    assert max(latencies) < 1000, latencies  # newest frame each time: latency does not grow with the backlog
    assert latencies[-1] < 1000


@pytest.mark.timeout(60)
def test_source_failing_midway_ends_with_a_clear_error(reconstructor):
    def camera():
        for i in range(5):
            yield drawn(i)
        raise RuntimeError("camera unplugged")

    seen = []
    with pytest.raises(ReconError, match="camera unplugged"):
        for frame in reconstructor.stream(camera(), name="test camera"):
            seen.append(frame.index)
    assert seen == [0, 1, 2, 3, 4]


@pytest.mark.timeout(60)
def test_flaky_source_is_retried_then_gives_up(reconstructor):
    class Flaky:
        """Fails on every other read, then for good after 6 frames."""

        def __init__(self):
            self.calls = self.frames = 0

        def __iter__(self):
            return self

        def __next__(self):
            self.calls += 1
            if self.frames >= 6 or self.calls % 2 == 0:
                raise OSError("device busy")
            self.frames += 1
            return drawn(self.frames)

    source = Flaky()
    start = time.monotonic()
    with pytest.raises(ReconError, match=r"flaky: no frame after 3 retries \(device busy\)"):
        for _ in reconstructor.stream(source, name="flaky", backoff_s=0.01):
            pass
    assert source.frames == 6 and time.monotonic() - start < 30


@pytest.mark.timeout(60)
def test_source_that_stops_delivering_does_not_hang(reconstructor):
    release = threading.Event()

    def camera():
        yield drawn(0)
        release.wait(30)  # a camera that never delivers again

    try:
        with pytest.raises(ReconError, match="no frame for 1 s"):
            for _ in reconstructor.stream(camera(), live=True, timeout_s=1.0, name="stuck camera"):
                pass
    finally:
        release.set()


@pytest.mark.timeout(60)
def test_close_stops_the_threads(reconstructor):
    def endless():
        i = 0
        while True:
            i += 1
            yield drawn(i)

    before = set(threading.enumerate())  # other tests may leave (ending) threads: compare identities
    with reconstructor.stream(endless()) as stream:
        for frame in stream:
            if frame.index == 3:
                break
    assert stream.stats.processed == 4
    time.sleep(0.1)
    assert not set(threading.enumerate()) - before


def test_bad_sources(reconstructor, tmp_path):
    with pytest.raises(InputError, match="no such file"):
        reconstructor.stream(tmp_path / "missing.avi")
    with pytest.raises(InputError, match="every"):
        reconstructor.stream([drawn(0)], every=0)
    (tmp_path / "junk.avi").write_bytes(b"not a video")
    with pytest.raises(InputError, match="cannot open"):
        reconstructor.stream(tmp_path / "junk.avi")


@pytest.mark.timeout(60)
def test_memory_stays_flat_over_2000_frames(reconstructor):
    psutil = pytest.importorskip("psutil")
    process = psutil.Process()
    frames = [drawn(i, 64) for i in range(40)]
    rss = {}

    def source():
        for i in range(2000):
            if i == 100:
                rss["warm"] = process.memory_info().rss
            yield frames[i % 40].copy()

    # every=10 keeps the test fast (200 frames through the networks); all 2,000 pass through capture.
    stream = reconstructor.stream(source(), every=10, live=False)
    count = sum(1 for _ in stream)
    end = process.memory_info().rss
    assert stream.stats.read == 2000 and count == 200
    growth = (end - rss["warm"]) / rss["warm"]
    assert growth < 0.05, f"resident memory grew {growth:.1%}"


def run_stream_cli(*args) -> subprocess.CompletedProcess:
    """`recon-cli stream ARGS` with no display, as on a headless device."""
    return run_cli("stream", *args, timeout=120, unset=("DISPLAY",))


@pytest.mark.timeout(120)
def test_cli_writes_frames_and_stats(video, tmp_path):
    out = tmp_path / "out"
    result = run_stream_cli(video, "--out", out, "--every", "4", "--format", "glb", "--show")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"frame_{i:06d}.glb" for i in (0, 4, 8, 12, 16)]
                           + [f"frame_{i:06d}.preview.png" for i in (0, 4, 8, 12, 16)] + ["summary.json"])
    summary = json.loads((out / "summary.json").read_text())  # like infer's: what was written, and the stats
    assert [frame["index"] for frame in summary["frames"]] == [0, 4, 8, 12, 16]
    assert summary["frames"][0]["outputs"]["glb"] == str(out / "frame_000000.glb")
    assert summary["stats"]["processed"] == 5 and summary["interrupted"] is False
    # the stats table is the command's result (stdout); the status line and warnings are diagnostics (stderr)
    assert "fps" in result.stdout and "latency p99" in result.stdout and "dropped" in result.stdout
    assert "warning --show: no display" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(60)
def test_cli_missing_file_is_one_line_error_and_leaves_no_output_folder(tmp_path):
    out = tmp_path / "out"
    result = run_stream_cli(tmp_path / "missing.avi", "--out", out)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing.avi: no such file" in lines[0], result.stderr
    assert not out.exists()  # the source failed to open before anything was written
