"""The serve side's batching: a bounded queue of decoded pictures and the one worker thread that owns the
Reconstructor and runs them in micro-batches (recon.runtime.serve's HTTP app feeds it), plus the counters
the app reports at /metrics.

Before it starts, every network runs once at every batch size it may see (`warm_up`). The worker
takes the first waiting job and, while other requests are on their way (the app announces each one as
it starts reading it: `arrival()`) or the last run had several, waits at most `max_wait_ms` for more, up
to `max_batch` (the memory plan's batch); a request that comes alone after a lone one runs at once. Then
one `Reconstructor.batch()`: jobs with equal options share a run.
`max_batch=1` is batching off with the same code (the benchmark's baseline). The queue is bounded:
`submit` raises Overloaded when it is full, so the app can answer 503 at once instead of queueing forever.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ServeLimits", "Overloaded", "Job", "BatchQueue", "Metrics", "limit_allocator_arenas", "warm_up"]

# glibc's mallopt parameter for the number of malloc arenas (malloc.h); each thread that allocates may
# otherwise get its own arena (up to 8 per core), and freed memory stays in them: RSS creeps up under load.
_M_ARENA_MAX = -8
ARENAS = 2
TRIM_EVERY = 64  # pictures between giving freed allocator memory back to the system


@functools.lru_cache(maxsize=None)
def _glibc():
    """The process's C library (looked up once) when it is glibc (it has mallopt and malloc_trim), else None."""
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def limit_allocator_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas, before the server's threads start; False where it is not glibc."""
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, arenas))


def _trim_allocator() -> None:
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@dataclass(frozen=True)
class ServeLimits:
    max_upload_bytes: int = 20_000_000  # the whole request body
    max_pixels: int = 25_000_000  # per picture, checked from the header before decoding
    max_batch: int = 8  # pictures per network run (1: batching off)
    # The longest the first request of a batch waits for company (only while company is likely, see
    # BatchQueue._work). Measured with 8 clients (bench_serve, 1,000 requests a mode): batches of 5.9 and
    # 1.22x batching off's throughput; a fixed 5 ms wait gave 3.9 and 1.17x.
    max_wait_ms: float = 10.0
    max_queue: int = 64  # requests waiting; more get 503
    timeout_s: float = 60.0  # a request waiting longer than this gets 503 too
    kept_meshes: int = 64  # recent meshes served by URL
    # Threads that decode uploads and encode answers beside the network's worker: a few, not the ASGI
    # stack's default pool of 40, since more cannot run at once on a few cores and each one that touches
    # the ~1 MB of picture, mesh and JSON per request grows its own malloc arena (resident memory).
    request_threads: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))


def warm_up(reconstructor, max_batch: int) -> None:
    """Run each network once at every batch size up to `max_batch`, on zeros, before the first request.

    The engines build shape-specialised kernels and buffers the first time they see a batch size; a
    server sees new sizes for as long as the largest batches are rare, so its resident memory kept growing
    through a load run. Measured in one process: a Reconstructor's RSS rose 251 -> 426 MB over the first
    round of batch sizes 1-8 and stayed within 3.5 MB of it over five more rounds.
    """
    model = reconstructor.model
    inputs = {("sketch", model.framing_size, 3), ("sketch", model.image_size, 3), ("voxel", model.image_size, 5)}
    for net, side, channels in sorted(inputs):
        runner = reconstructor.runners[net]
        (name, spec), = runner.inputs.items()
        for size in range(1, min(max_batch, runner.max_batch or max_batch) + 1):
            runner.infer({name: np.zeros((size, channels, side, side), spec.dtype)})


class Overloaded(Exception):
    """The queue is full: the caller answers 503 with Retry-After."""


@dataclass
class Job:
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
        self._lock, self._arriving = threading.Lock(), 0  # requests announced and not yet queued
        self._last_batch = 0
        self._since_trim = 0
        warm_up(reconstructor, limits.max_batch)
        self._thread = threading.Thread(target=self._work, name="recon-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @contextmanager
    def arrival(self):
        """`with queue.arrival() as submit: ... submit(job)`: the request counts as on its way (the worker
        waits for it) from its first byte until it is queued or fails."""
        counted = [True]

        def leave() -> None:
            with self._lock:
                if counted[0]:
                    counted[0] = False
                    self._arriving -= 1

        def submit(job: Job) -> Future:
            leave()  # before queueing: the worker must not wait for a job it already holds
            return self.submit(job)

        with self._lock:
            self._arriving += 1
        try:
            yield submit
        finally:
            leave()

    def submit(self, job: Job) -> Future:
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
                    jobs.append(self._queue.get_nowait())
                    continue
                except queue.Empty:
                    pass
                left = deadline - time.perf_counter()
                # Company is likely while requests are on their way, or while the last run had several (the
                # clients it answered send again about now); a request after a lone one runs at once.
                if left <= 0 or (self._arriving == 0 and self._last_batch <= 1):
                    break
                try:
                    jobs.append(self._queue.get(timeout=min(left, 0.001)))  # re-check who is on the way
                except queue.Empty:
                    pass
            jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]  # callers that gave up
            self._last_batch = len(jobs)
            groups: dict = {}
            for job in jobs:
                groups.setdefault((job.options, job.mask is not None, job.box is not None), []).append(job)
            for group in groups.values():
                self._run(group)

    def _run(self, jobs: list[Job]) -> None:
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
        self._since_trim += len(jobs)
        if self._since_trim >= TRIM_EVERY:  # measured: the C heap keeps 30-45 MB freed after a few hundred pictures
            self._since_trim = 0
            _trim_allocator()


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
