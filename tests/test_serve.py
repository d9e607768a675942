"""`recon-cli serve`'s app on a real uvicorn server (loopback, a free port) and a real HTTP client:
good pictures, concurrent ones batched, each kind of bad upload with its status and JSON, overload
answered 503, metrics; and the upload page in headless Chromium."""

from __future__ import annotations

import base64
import io
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed (pip install 'recon[serve]')")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install 'recon[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx (the test client) is not installed")

from browser import browser, canvas_pixels, chromaticity, object_pixels, open_page  # noqa: E402,F401
from recon.runtime.serve import ServeLimits, create_app  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PICTURE = (EXAMPLES / "chair_photo.jpg").read_bytes()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """uvicorn serving create_app(Reconstructor) in a thread, on 127.0.0.1:<free port>."""

    def __init__(self, limits: ServeLimits):
        from recon.runtime.pipeline import Reconstructor

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(Reconstructor(threads=1, batch=limits.max_batch), limits)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def server():
    running = Server(ServeLimits(max_upload_bytes=2_000_000, max_pixels=4_000_000, max_batch=4, max_wait_ms=200))
    yield running
    running.stop()


def post(server, files=None, data=None, params=None, timeout=120, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/reconstruct", files=files, data=data, params=params, timeout=timeout, **kwargs)


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def bomb_png(side: int = 40_000) -> bytes:
    """A PNG whose header claims side x side pixels (1.6 gigapixels) in a few hundred bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit gray
    rows = zlib.compress(b"\0" * (side + 1) * 4)  # a few rows: never decoded that far
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_a_picture_gives_a_coloured_mesh(server):
    answer = post(server, files={"image": ("chair.jpg", PICTURE, "image/jpeg")})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["status"] == "ok" and body["error"] is None and "confidence" in body
    assert body["volume"] > 0 and len(body["bbox"]) == 2 and body["timings_ms"]["total"] > 0
    assert body["view"] is not None and body["name"] == "chair.jpg"
    glb = httpx.get(f"{server.url}/{body['mesh']['url']}", timeout=30)
    assert glb.status_code == 200 and glb.content[:4] == b"glTF" and b"COLOR_0" in glb.content
    ply = httpx.get(f"{server.url}/{body['mesh']['urls']['ply']}", timeout=30)
    assert ply.status_code == 200 and b"property uchar red" in ply.content


def test_inline_mesh_and_options(server):
    answer = post(server, files={"image": ("chair.jpg", PICTURE)}, data={"mesh": "inline", "format": "ply",
                                                                          "color": "false", "threshold": "0.4"})
    body = answer.json()
    assert answer.status_code == 200 and body["threshold"] == 0.4 and body["view"] is None
    assert body["mesh"]["format"] == "ply"
    assert b"property uchar red" not in base64.b64decode(body["mesh"]["base64"])  # color=false: none
    assert post(server, files={"image": ("c.jpg", PICTURE)}, params={"mesh": "none"}).json()["mesh"] is None


def test_concurrent_pictures_share_network_runs(server):
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: post(server, files={"image": (f"{i}.jpg", PICTURE)}), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert max(a.json()["batch_size"] for a in answers) > 1
    assert len({a.json()["mesh"]["url"] for a in answers}) == 4


@pytest.mark.parametrize("files, data, code, words", [
    ({"image": ("empty.png", b"")}, None, 400, "empty"),
    ({"image": ("notes.txt", b"just some text\n" * 20, "text/plain")}, None, 415, "not a picture"),
    ({"image": ("bomb.png", bomb_png())}, None, 413, "megapixel limit"),
    ({"image": ("big.png", b"\0" * 2_100_000)}, None, 413, "byte limit"),
    ({"image": ("chair.jpg", PICTURE)}, {"threshold": "2"}, 400, "threshold"),
    ({"image": ("chair.jpg", PICTURE)}, {"mesh": "ftp"}, 400, "mesh"),
    ({"image": ("chair.jpg", PICTURE)}, {"path": "/etc/passwd"}, 400, "unknown option"),
    ({"image": ("chair.jpg", PICTURE)}, {"box": "1,2,3"}, 400, "box"),
    ({"picture": ("chair.jpg", PICTURE)}, None, 400, "file field"),
    ({"image": ("tiny.png", png_bytes(np.zeros((4, 4, 3), np.uint8)))}, None, 400, "too small"),
])
def test_bad_uploads_get_a_4xx_with_a_json_error(server, files, data, code, words):
    answer = post(server, files=files, data=data)
    assert answer.status_code == code, answer.text
    assert answer.json()["status"] == "error" and words in answer.json()["error"]


def chair_mask() -> bytes:
    """The chair photo's object as a white-on-black mask of the picture's size (its dark pixels)."""
    from PIL import Image

    gray = np.asarray(Image.open(io.BytesIO(PICTURE)).convert("L"))
    return png_bytes(np.where(gray < 128, 255, 0).astype(np.uint8))


def test_a_mask_frames_the_picture(server):
    answer = post(server, files={"image": ("chair.jpg", PICTURE), "mask": ("mask.png", chair_mask())})
    assert answer.status_code == 200, answer.text
    assert answer.json()["framing"] == "mask"


@pytest.mark.parametrize("mask, data, words", [
    (png_bytes(np.full((40, 30), 255, np.uint8)), None, "mask: 30x40 pixels, the image has"),
    (None, {"box": "10,10,200,200"}, "mask and box"),
    (b"not a picture at all", None, "mask: not a picture"),
])
def test_bad_masks_get_a_4xx_with_a_json_error(server, mask, data, words):
    answer = post(server, files={"image": ("chair.jpg", PICTURE), "mask": ("m.png", mask or chair_mask())}, data=data)
    assert 400 <= answer.status_code < 500 and answer.json()["status"] == "error", answer.text
    assert words in answer.json()["error"]


def test_not_multipart_and_unknown_meshes(server):
    answer = httpx.post(f"{server.url}/reconstruct", content=PICTURE, headers={"content-type": "image/jpeg"}, timeout=30)
    assert answer.status_code == 400 and "multipart" in answer.json()["error"]
    for path in ("meshes/0123456789abcdef0123456789abcdef.glb", "meshes/..%2F..%2Fetc%2Fpasswd.glb",
                 "meshes/0123456789abcdef0123456789abcdef.exe"):
        assert httpx.get(f"{server.url}/{path}", timeout=30).status_code == 404


def test_health_and_metrics(server):
    health = httpx.get(f"{server.url}/health", timeout=30).json()
    assert health["status"] == "ok" and health["max_batch"] == 4
    post(server, files={"image": ("empty.png", b"")})
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert '# TYPE recon_reconstruct_seconds summary' in text
    assert 'recon_requests_total{path="/reconstruct",code="400"}' in text
    assert 'recon_reconstruct_seconds{quantile="0.95"}' in text
    failures = [line for line in text.splitlines() if line.startswith("recon_request_failures_total ")]
    assert int(failures[0].split()[1]) >= 1


def test_overload_answers_503_at_once():
    overloaded = Server(ServeLimits(max_batch=1, max_queue=1, max_wait_ms=0))
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: post(overloaded, files={"image": (f"{i}.jpg", PICTURE)}, timeout=300),
                                    range(8)))
        codes = sorted(a.status_code for a in answers)
        assert set(codes) <= {200, 503} and 503 in codes and 200 in codes, codes
        busy = [a for a in answers if a.status_code == 503]
        assert all(a.headers["retry-after"] == "1" and "busy" in a.json()["error"] for a in busy)
        assert post(overloaded, files={"image": ("after.jpg", PICTURE)}).status_code == 200  # still serving
    finally:
        overloaded.stop()


def test_the_server_warms_every_batch_size_before_the_first_request():
    """Each network, at each input size the pipeline feeds it, runs at every batch size up to max_batch
    (the real runners, recording what they were given)."""
    from recon.runtime.pipeline import Reconstructor
    from recon.runtime.serve_batch import warm_up

    with Reconstructor(threads=1, batch=3) as reconstructor:
        seen = []
        for net, runner in reconstructor.runners.items():
            def recording(feed, infer=runner.infer, net=net):
                seen.extend((net, value.shape) for value in feed.values())
                return infer(feed)
            runner.infer = recording
        warm_up(reconstructor, 3)
        s, f = reconstructor.model.image_size, reconstructor.model.framing_size
        wanted = {(net, (b, c, side, side)) for b in (1, 2, 3)
                  for net, c, side in (("sketch", 3, s), ("sketch", 3, f), ("voxel", 5, s))}
        assert set(seen) == wanted and len(seen) == len(wanted)


def test_upload_page_shows_the_coloured_mesh(browser, server):  # noqa: F811
    page = open_page(browser, server.url + "/", offline=False)
    page.set_input_files("#image", str(EXAMPLES / "chair_photo.jpg"))
    pixels = canvas_pixels(page, "serve")
    assert page.errors == []
    drawn = object_pixels(pixels)
    assert len(drawn) > 0.02 * pixels.shape[0] * pixels.shape[1], "the canvas is blank"
    links = page.locator(".card .links a")
    assert sorted(links.all_inner_texts()) == ["glb", "obj", "ply"]
    assert np.abs(chromaticity(drawn) - 1 / 3).sum() > 0.03  # coloured (the chair is dark brown), not grey
    page.close()


def test_a_taken_port_is_one_error_line():
    from cli_runner import assert_one_line_error, run_cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = run_cli("serve", "--port", taken.getsockname()[1])
    assert_one_line_error(done, "cannot listen there")


def test_a_request_that_comes_alone_does_not_wait_for_company():
    """The batcher waits only for requests on their way: with a minute of allowed wait, one request
    alone is answered long before it (waiting the whole window, the client's 20 s timeout would fire)."""
    lone = Server(ServeLimits(max_batch=2, max_wait_ms=60_000))
    try:
        answer = httpx.post(f"{lone.url}/reconstruct", files={"image": ("chair.jpg", PICTURE)}, timeout=20)
        assert answer.status_code == 200 and answer.json()["batch_size"] == 1
    finally:
        lone.stop()
