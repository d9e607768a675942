"""`recon-cli serve`: an ASGI app (Starlette, run by uvicorn) around one Reconstructor.

    GET  /                  the upload page (the same three.js viewer as OUT/index.html)
    POST /reconstruct       multipart: image (required), mask (a picture), box ("x0,y0,x1,y1"), and the
                            options threshold, color, height_m, width_m, mesh (url | inline | none),
                            format (glb, obj, ply, stl: what `mesh=inline` carries); options may also
                            come as query parameters. Answers JSON (see serve_request.answer_body).
    GET  /meshes/<id>.<fmt> a mesh of a recent answer (the id is the server's, never a path)
    GET  /health, /metrics  liveness JSON; Prometheus text (requests, failures, latency quantiles, batches)

Requests that arrive together share one network run (recon.runtime.serve_batch: one worker thread owns
the Reconstructor, a bounded wait for company, a bounded batch); the queue is bounded: when full the answer
is 503 with Retry-After, at once. Parsing options, decoding uploads and encoding answers
(recon.runtime.serve_request) run in the thread pool, beside the network's worker, not on the event
loop. Bad uploads get a 4xx and {"status": "error", "error": "..."}: 400 (no image, empty, a bad option or
box), 413 (upload over max_upload_bytes, picture over max_pixels: decompression bombs are refused from
the header, before decoding), 415 (not a picture). Uploads are decoded in memory; nothing the client
sends is used as a file name.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from recon.runtime.errors import ReconError
from recon.runtime.serve_batch import BatchQueue, Job, Metrics, Overloaded, ServeLimits
from recon.runtime.serve_request import (FILES, OPTIONS, HTTPProblem, MeshStore, answer_body, decode_uploads,
                                         display_name, parse_options)

__all__ = ["ServeLimits", "BatchQueue", "Overloaded", "create_app"]


def create_app(reconstructor, limits: ServeLimits = ServeLimits()):
    """The Starlette app serving `reconstructor` (which the app closes on shutdown)."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from recon.runtime.meshio import MESH_ENCODERS
    from recon.runtime.viewer import upload_page_html

    metrics, store = Metrics(), MeshStore(limits.kept_meshes)
    batcher = BatchQueue(reconstructor, limits, on_batch=metrics.batch)
    page = upload_page_html(asdict(limits))
    workers = ThreadPoolExecutor(limits.request_threads, thread_name_prefix="recon-request")

    async def off_loop(function, *args):
        """function(*args) on the request threads: CPU work off the event loop, beside the network."""
        return await asyncio.get_running_loop().run_in_executor(workers, function, *args)

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
            with batcher.arrival() as submit:  # the batcher may wait for this one while it uploads and decodes
                fields, files = await read_form(request)
                options = parse_options({**dict(request.query_params), **fields})
                image, mask = await off_loop(decode_uploads, files, options, limits)
                job = Job(image, display_name(files["image"][1]), mask, options["box"],
                          (options["threshold"], options["color"], options["height_m"], options["width_m"]))
                try:
                    future = submit(job)
                except Overloaded:
                    raise HTTPProblem(503, f"busy: {limits.max_queue} requests are waiting",
                                      {"Retry-After": "1"}) from None
            try:
                result, batch_size, queued_ms = await asyncio.wait_for(asyncio.wrap_future(future), limits.timeout_s)
            except asyncio.TimeoutError:
                raise HTTPProblem(503, f"busy: no answer within {limits.timeout_s:g} s", {"Retry-After": "5"}) from None
            except ReconError as error:
                raise HTTPProblem(400, str(error)) from None
            except Exception as error:  # a bug, not the client's doing: say so in the same JSON shape
                raise HTTPProblem(500, f"internal error ({type(error).__name__}: {error})") from None
            body = await off_loop(answer_body, result, batch_size, queued_ms,
                                  (time.perf_counter() - started) * 1000.0, options, store)
        except HTTPProblem as error:
            return problem("/reconstruct", error, started)
        metrics.request("/reconstruct", 200, time.perf_counter() - started)
        return Response(body, media_type="application/json")

    async def mesh_file(request: Request) -> Response:
        key, fmt = request.path_params["key"], request.path_params["fmt"]
        mesh = store.get(key) if fmt in MESH_ENCODERS else None
        if mesh is None:
            return problem("/meshes", HTTPProblem(404, "mesh: unknown or expired (meshes are kept for the "
                                                       f"last {limits.kept_meshes} answers)"))
        data = await off_loop(MESH_ENCODERS[fmt], mesh)
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
        await off_loop(batcher.close)
        workers.shutdown()
        reconstructor.close()

    routes = [Route("/", index), Route("/reconstruct", reconstruct, methods=["POST"]),
              Route("/meshes/{key}.{fmt}", mesh_file), Route("/health", health), Route("/metrics", prometheus)]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.batcher, app.state.metrics = batcher, metrics
    return app
