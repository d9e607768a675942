"""`recon-cli serve`: an ASGI app (Starlette, run by uvicorn) around one Reconstructor.

    GET  /                  the upload page (the same three.js viewer as OUT/index.html)
    POST /reconstruct       multipart: image (required), mask (a picture), box ("x0,y0,x1,y1"), and the
                            options threshold, color, height_m, width_m, mesh (url | inline | none),
                            format (glb, obj, ply, stl: what `mesh=inline` carries); options may also
                            come as query parameters. Answers JSON (see `_answer`).
    GET  /meshes/<id>.<fmt> a mesh of a recent answer (the id is the server's, never a path)
    GET  /health, /metrics  liveness JSON; Prometheus text (requests, failures, latency quantiles, batches)

Requests that arrive together share one network run: a worker thread owns the Reconstructor, takes the
first waiting request, waits at most `max_wait_ms` for more, up to `max_batch` (the memory plan's batch),
and runs them as one `batch()`. The queue is bounded: when full the answer is 503 with Retry-After, at
once. Bad uploads get a 4xx and {"status": "error", "error": "..."}: 400 (no image, empty, a bad option
or box), 413 (upload over max_upload_bytes, picture over max_pixels: decompression bombs are refused from
the header, before decoding), 415 (not a picture). Uploads are decoded in memory; nothing the client
sends is used as a file name.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import os
import queue
import re
import secrets
import threading
import time
import warnings
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field

import numpy as np

from recon.runtime.errors import InputError, ReconError

__all__ = ["ServeLimits", "BatchQueue", "Overloaded", "create_app"]

MESH_MODES = ("url", "inline", "none")
OPTIONS = ("threshold", "color", "height_m", "width_m", "mesh", "format", "box")
FILES = ("image", "mask")


@dataclass(frozen=True)
class ServeLimits:
    max_upload_bytes: int = 20_000_000  # the whole request body
    max_pixels: int = 25_000_000  # per picture, checked from the header before decoding
    max_batch: int = 8  # pictures per network run (1: batching off)
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    max_queue: int = 64  # requests waiting; more get 503
    timeout_s: float = 60.0  # a request waiting longer than this gets 503 too
    kept_meshes: int = 64  # recent meshes served by URL


class Overloaded(Exception):
    """The queue is full: the caller answers 503 with Retry-After."""


class HTTPProblem(Exception):
    def __init__(self, code: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.headers = code, message, headers or {}


@dataclass
class _Job:
    image: np.ndarray
    name: str
    mask: np.ndarray | None
    box: str | None
    options: tuple  # (threshold, color, height_m, width_m): jobs with equal options share a run
    future: Future = field(default_factory=Future)
    queued: float = field(default_factory=time.perf_counter)


class BatchQueue:
    """A bounded queue and the one thread that runs the Reconstructor over micro-batches of it."""

    def __init__(self, reconstructor, limits: ServeLimits, on_batch=None):
        self.reconstructor, self.limits = reconstructor, limits
        self.on_batch = on_batch or (lambda size: None)
        self._queue: queue.Queue = queue.Queue(maxsize=limits.max_queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="recon-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, job: _Job) -> Future:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Overloaded() from None
        return job.future

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                jobs = [self._queue.get(timeout=0.1)]
            except queue.Empty:
                continue
            deadline = time.perf_counter() + self.limits.max_wait_ms / 1000.0
            while len(jobs) < self.limits.max_batch:
                try:
                    jobs.append(self._queue.get(timeout=max(0.0, deadline - time.perf_counter())))
                except queue.Empty:
                    break
            jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]  # callers that gave up
            groups: dict = {}
            for job in jobs:
                groups.setdefault((job.options, job.mask is not None, job.box is not None), []).append(job)
            for group in groups.values():
                self._run(group)

    def _run(self, jobs: list[_Job]) -> None:
        threshold, color, height_m, width_m = jobs[0].options
        masks = [job.mask for job in jobs] if jobs[0].mask is not None else None
        boxes = [job.box for job in jobs] if jobs[0].box is not None else None
        started = time.perf_counter()
        try:
            results = self.reconstructor.batch([job.image for job in jobs], names=[job.name for job in jobs],
                                               threshold=threshold, color=color, height_m=height_m,
                                               width_m=width_m, mask=masks, box=boxes)
        except Exception as error:  # one bad call must not stop the worker; each caller hears why
            for job in jobs:
                job.future.set_exception(error)
            return
        self.on_batch(len(jobs))
        for job, result in zip(jobs, results):
            job.future.set_result((result, len(jobs), (started - job.queued) * 1000.0))


class Metrics:
    """Counters and a window of recent latencies, as Prometheus text."""

    QUANTILES = (0.5, 0.9, 0.95, 0.99)

    def __init__(self, window: int = 10_000):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.latencies: deque = deque(maxlen=window)
        self.latency_sum, self.latency_count = 0.0, 0
        self.batches, self.batched = 0, 0

    def request(self, path: str, code: int, seconds: float | None = None) -> None:
        with self._lock:
            self.requests[(path, code)] = self.requests.get((path, code), 0) + 1
            if seconds is not None:
                self.latencies.append(seconds)
                self.latency_sum += seconds
                self.latency_count += 1

    def batch(self, size: int) -> None:
        with self._lock:
            self.batches += 1
            self.batched += size

    def text(self, queue_depth: int) -> str:
        with self._lock:
            lines = ["# HELP recon_requests_total HTTP requests by path and status code.",
                     "# TYPE recon_requests_total counter"]
            lines += [f'recon_requests_total{{path="{p}",code="{c}"}} {n}' for (p, c), n in sorted(self.requests.items())]
            failures = sum(n for (p, c), n in self.requests.items() if c >= 400)
            lines += ["# HELP recon_request_failures_total Requests answered with a 4xx or 5xx status.",
                      "# TYPE recon_request_failures_total counter", f"recon_request_failures_total {failures}",
                      "# HELP recon_reconstruct_seconds Latency of POST /reconstruct (recent window).",
                      "# TYPE recon_reconstruct_seconds summary"]
            ordered = sorted(self.latencies)
            for q in self.QUANTILES:
                value = ordered[min(len(ordered) - 1, int(math.ceil(q * len(ordered))) - 1)] if ordered else float("nan")
                lines.append(f'recon_reconstruct_seconds{{quantile="{q}"}} {value:.6f}')
            lines += [f"recon_reconstruct_seconds_sum {self.latency_sum:.6f}",
                      f"recon_reconstruct_seconds_count {self.latency_count}",
                      "# HELP recon_batches_total Network runs.", "# TYPE recon_batches_total counter",
                      f"recon_batches_total {self.batches}",
                      "# HELP recon_batched_pictures_total Pictures in those runs.",
                      "# TYPE recon_batched_pictures_total counter", f"recon_batched_pictures_total {self.batched}",
                      "# HELP recon_queue_depth Requests waiting for the network.", "# TYPE recon_queue_depth gauge",
                      f"recon_queue_depth {queue_depth}"]
        rss = _resident_bytes()
        if rss is not None:
            lines += ["# HELP process_resident_memory_bytes Resident memory.",
                      "# TYPE process_resident_memory_bytes gauge", f"process_resident_memory_bytes {rss}"]
        return "\n".join(lines) + "\n"


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class MeshStore:
    """The last few answers' meshes, by a random id the server made (LRU, bounded)."""

    ID = re.compile(r"^[0-9a-f]{32}$")

    def __init__(self, size: int):
        self.size, self._lock, self._meshes = size, threading.Lock(), OrderedDict()

    def put(self, mesh) -> str:
        key = secrets.token_hex(16)
        with self._lock:
            self._meshes[key] = mesh
            while len(self._meshes) > self.size:
                self._meshes.popitem(last=False)
        return key

    def get(self, key: str):
        with self._lock:
            return self._meshes.get(key) if self.ID.match(key) else None


def _decode(data: bytes, what: str, limits: ServeLimits, gray: bool = False) -> np.ndarray:
    """Upload bytes -> (H, W, 3/4) uint8 (gray: (H, W)), refusing too many pixels from the header alone."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from recon.runtime.images import MIN_SIDE

    if not data:
        raise HTTPProblem(400, f"{what}: the upload is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise HTTPProblem(413, f"{what}: over the {limits.max_pixels / 1e6:.0f} megapixel limit") from None
    except (UnidentifiedImageError, OSError):
        raise HTTPProblem(415, f"{what}: not a picture (expected PNG, JPEG, BMP, GIF, TIFF or WebP)") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise HTTPProblem(413, f"{what}: {width}x{height} pixels is over the {limits.max_pixels / 1e6:.0f} "
                               "megapixel limit")
    if min(width, height) < MIN_SIDE:
        raise HTTPProblem(400, f"{what}: {width}x{height} pixels is too small (at least {MIN_SIDE} per side)")
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except Exception as error:  # truncated or corrupt data: Pillow raises many types
        raise HTTPProblem(400, f"{what}: cannot decode the picture ({type(error).__name__})") from None
    if gray:
        return np.asarray(image.convert("L"))
    transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return np.asarray(image.convert("RGBA" if transparent else "RGB"))


def _flag(value: str, name: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise HTTPProblem(400, f"{name}: expected true or false, got {value[:40]!r}")


def _number(value: str, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not low < number < high:
        raise HTTPProblem(400, f"{name}: expected a number between {low:g} and {high:g} (exclusive), got {value[:40]!r}")
    return number


def parse_options(fields: dict) -> dict:
    """Form fields / query parameters -> checked options (HTTPProblem 400 naming the bad one)."""
    from recon.runtime.meshio import MESH_ENCODERS

    unknown = sorted(set(fields) - set(OPTIONS) - set(FILES))
    if unknown:
        raise HTTPProblem(400, f"unknown option {unknown[0][:40]!r}; valid: {', '.join(OPTIONS + FILES)}")
    options = {"threshold": None, "color": None, "height_m": None, "width_m": None, "mesh": "url", "format": "glb",
               "box": None}
    if "threshold" in fields:
        options["threshold"] = _number(fields["threshold"], "threshold", 0.0, 1.0)
    if "color" in fields:
        options["color"] = _flag(fields["color"], "color")
    for name in ("height_m", "width_m"):
        if name in fields:
            options[name] = _number(fields[name], name, 0.0, math.inf)
    if options["height_m"] is not None and options["width_m"] is not None:
        raise HTTPProblem(400, "height_m and width_m: give one of them, not both")
    for name, choices in (("mesh", MESH_MODES), ("format", tuple(MESH_ENCODERS))):
        if name in fields:
            if fields[name] not in choices:
                raise HTTPProblem(400, f"{name}: {fields[name][:40]!r} not supported; valid: {', '.join(choices)}")
            options[name] = fields[name]
    if "box" in fields:
        from recon.runtime.framing import parse_box

        try:
            parse_box(fields["box"], "box")
        except InputError as error:
            raise HTTPProblem(400, str(error)) from None
        options["box"] = fields["box"]
    return options


def _display_name(filename: str | None) -> str:
    """The client's file name for display only: its last part, plain characters, short."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", (filename or "upload").replace("\\", "/").rsplit("/", 1)[-1])[:80]
    return name or "upload"


def _answer(result, batch_size: int, queued_ms: float, total_ms: float, options: dict, store: MeshStore) -> dict:
    """The JSON of one reconstruction: Result.summary() plus the camera, batching, timings and the mesh."""
    from recon.runtime.meshio import MESH_ENCODERS

    answer = result.summary()
    answer["confidence"] = getattr(result, "confidence", None)
    view = getattr(result, "view", None)
    answer["view"] = None if view is None else {"azimuth": view.camera.azimuth, "elevation": view.camera.elevation}
    answer["batch_size"] = batch_size
    answer["timings_ms"].update(queue=round(queued_ms, 2), total=round(total_ms, 2))
    has_mesh = result.mesh is not None and len(result.mesh.faces) > 0
    if not has_mesh or options["mesh"] == "none":
        answer["mesh"] = None
    elif options["mesh"] == "inline":
        data = MESH_ENCODERS[options["format"]](result.mesh)
        answer["mesh"] = {"format": options["format"], "base64": base64.b64encode(data).decode("ascii")}
    if has_mesh and options["mesh"] in ("url", "inline"):
        key = store.put(result.mesh)
        urls = {fmt: f"meshes/{key}.{fmt}" for fmt in ("glb", "obj", "ply")}
        answer["mesh"] = {**(answer.get("mesh") or {"format": "glb"}), "url": urls["glb"], "urls": urls}
    return answer


def create_app(reconstructor, limits: ServeLimits = ServeLimits()):
    """The Starlette app serving `reconstructor` (which the app closes on shutdown)."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from recon.runtime.meshio import MESH_ENCODERS
    from recon.runtime.viewer import upload_page_html

    metrics, store = Metrics(), MeshStore(limits.kept_meshes)
    batcher = BatchQueue(reconstructor, limits, on_batch=metrics.batch)
    page = upload_page_html(asdict(limits))

    def problem(path: str, error: HTTPProblem, started: float | None = None) -> JSONResponse:
        metrics.request(path, error.code, None if started is None else time.perf_counter() - started)
        return JSONResponse({"status": "error", "error": error.message}, error.code, headers=error.headers)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_upload_bytes:
            raise HTTPProblem(413, f"upload: {int(declared)} bytes is over the {limits.max_upload_bytes} byte limit")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_upload_bytes:
                raise HTTPProblem(413, f"upload: over the {limits.max_upload_bytes} byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_form(request: Request) -> tuple[dict, dict]:
        """(text fields, {file field: (bytes, filename)}) of the multipart body, size-checked first."""
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise HTTPProblem(400, "expected a multipart/form-data body with an `image` file field")
        body = await read_body(request)

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=len(FILES), max_fields=len(OPTIONS))
        except Exception as error:  # malformed multipart, too many parts
            raise HTTPProblem(400, f"bad multipart body ({getattr(error, 'detail', error)})") from None
        fields, files = {}, {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields[key] = value
            elif key in FILES:
                files[key] = (await value.read(), value.filename)
            else:
                raise HTTPProblem(400, f"unexpected file field {key[:40]!r}; file fields: {', '.join(FILES)}")
        await form.close()
        return fields, files

    async def reconstruct(request: Request) -> Response:
        started = time.perf_counter()
        try:
            fields, files = await read_form(request)
            options = parse_options({**dict(request.query_params), **fields})
            if "image" not in files:
                raise HTTPProblem(400, "image: missing (send the picture as the multipart file field `image`)")
            image = await run_in_threadpool(_decode, files["image"][0], "image", limits)
            mask = None
            if "mask" in files:
                mask = await run_in_threadpool(_decode, files["mask"][0], "mask", limits, True)
                if options["box"] is not None:
                    raise HTTPProblem(400, "mask and box: give one of them")
                if mask.shape != image.shape[:2]:
                    raise HTTPProblem(400, f"mask: {mask.shape[1]}x{mask.shape[0]} pixels, the image has "
                                           f"{image.shape[1]}x{image.shape[0]}")
                mask = mask >= 128
            job = _Job(image, _display_name(files["image"][1]), mask, options["box"],
                       (options["threshold"], options["color"], options["height_m"], options["width_m"]))
            try:
                future = batcher.submit(job)
            except Overloaded:
                raise HTTPProblem(503, f"busy: {limits.max_queue} requests are waiting", {"Retry-After": "1"}) from None
            try:
                result, batch_size, queued_ms = await asyncio.wait_for(asyncio.wrap_future(future), limits.timeout_s)
            except asyncio.TimeoutError:
                raise HTTPProblem(503, f"busy: no answer within {limits.timeout_s:g} s", {"Retry-After": "5"}) from None
            except ReconError as error:
                raise HTTPProblem(400, str(error)) from None
            except Exception as error:  # a bug, not the client's doing: say so in the same JSON shape
                raise HTTPProblem(500, f"internal error ({type(error).__name__}: {error})") from None
            answer = await run_in_threadpool(_answer, result, batch_size, queued_ms,
                                             (time.perf_counter() - started) * 1000.0, options, store)
        except HTTPProblem as error:
            return problem("/reconstruct", error, started)
        metrics.request("/reconstruct", 200, time.perf_counter() - started)
        return JSONResponse(answer)

    async def mesh_file(request: Request) -> Response:
        key, fmt = request.path_params["key"], request.path_params["fmt"]
        mesh = store.get(key) if fmt in MESH_ENCODERS else None
        if mesh is None:
            return problem("/meshes", HTTPProblem(404, "mesh: unknown or expired (meshes are kept for the "
                                                       f"last {limits.kept_meshes} answers)"))
        data = await run_in_threadpool(MESH_ENCODERS[fmt], mesh)
        metrics.request("/meshes", 200)
        return Response(data, media_type="model/gltf-binary" if fmt == "glb" else "application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="recon.{fmt}"'})

    async def index(request: Request) -> Response:
        metrics.request("/", 200)
        return HTMLResponse(page)

    async def health(request: Request) -> Response:
        metrics.request("/health", 200)
        return JSONResponse({"status": "ok", "model": str(reconstructor.model.path),
                             "providers": reconstructor.providers, "queue": batcher.depth,
                             "max_batch": limits.max_batch, "max_wait_ms": limits.max_wait_ms})

    async def prometheus(request: Request) -> Response:
        return PlainTextResponse(metrics.text(batcher.depth), media_type="text/plain; version=0.0.4")

    @asynccontextmanager
    async def lifespan(app):
        yield
        await run_in_threadpool(batcher.close)
        reconstructor.close()

    routes = [Route("/", index), Route("/reconstruct", reconstruct, methods=["POST"]),
              Route("/meshes/{key}.{fmt}", mesh_file), Route("/health", health), Route("/metrics", prometheus)]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.batcher, app.state.metrics = batcher, metrics
    return app
