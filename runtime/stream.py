"""Camera and video capture loops: frames in, Results out, the stages running concurrently.

    with Reconstructor().stream(0) as stream:           # camera 0; or "clip.mp4", "rtsp://...", frames
        for frame in stream:                            # FrameResult: .index, .result, .latency_ms ...
            if frame.ok:
                frame.result.save("out", stem=f"frame_{frame.index:06d}")
    print(stream.stats)

Three threads joined by bounded queues: capture (reads the source) -> infer (Reconstructor.batch:
preprocessing, both networks and marching cubes) -> the caller's loop (mesh saving, display...).
Live sources (camera index, stream URL, or live=True for an iterable) always feed the network the
newest frame and drop stale ones (counted in stats.dropped); files (and live=False iterables) drop
nothing: a full queue makes capture wait (backpressure). Results come in frame order.

A source that raises, or a camera that stops delivering, is retried `retries` times with a short
backoff, then the loop ends with a ReconError naming the source; a read that blocks longer than
`timeout_s` ends it the same way, so nothing hangs. Threads stop on source end, on `close()` (or
leaving the `with` block / closing the generator) and on KeyboardInterrupt in the caller's loop.
OpenCV (the `video` extra) is needed only for cameras, URLs and video files (stream_sources.py).
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from recon.runtime.errors import InputError, ReconError, first_line
from recon.runtime.stream_sources import StreamError, open_source

__all__ = ["FrameResult", "Stream", "StreamStats", "StreamError", "open_source"]

_END = object()  # end of a channel


@dataclass
class FrameResult:
    """One processed frame. index: the frame's position in the source (0-based, skipped and dropped
    frames included). captured_at / done_at: wall-clock times (time.time()) when the frame was read
    and when the loop handed its result out; latency_ms: the time between the two."""

    index: int
    result: object  # recon.runtime.pipeline.Result
    captured_at: float
    done_at: float
    latency_ms: float
    frame: Optional[np.ndarray] = None  # the RGB frame, when keep_frames=True

    @property
    def ok(self) -> bool:
        return self.result.ok


@dataclass
class StreamStats:
    """Counts and timings of a stream so far (final once the loop has ended)."""

    source: str = ""
    read: int = 0  # frames read from the source
    skipped: int = 0  # not selected by every=N
    dropped: int = 0  # stale frames replaced by newer ones (live sources) or too old (max_latency_ms)
    processed: int = 0  # results handed out (failed ones included)
    failed: int = 0  # results with status "failed" (no object found...)
    elapsed_s: float = 0.0
    latencies_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=10_000), repr=False)

    @property
    def fps(self) -> float:
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency(self, q: float) -> Optional[float]:
        """The q-quantile (0..1) of the latencies of the last 10,000 results, ms (None before any)."""
        if not self.latencies_ms:
            return None
        return float(np.percentile(np.fromiter(self.latencies_ms, float), q * 100))

    def as_dict(self) -> dict:
        def rounded(value):
            return None if value is None else round(value, 1)

        return {"source": self.source, "read": self.read, "skipped": self.skipped, "dropped": self.dropped,
                "processed": self.processed, "failed": self.failed, "elapsed_s": round(self.elapsed_s, 3),
                "fps": round(self.fps, 2), "latency_p50_ms": rounded(self.latency(0.5)),
                "latency_p90_ms": rounded(self.latency(0.9)), "latency_p99_ms": rounded(self.latency(0.99))}

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.as_dict().items())


class _Channel:
    """A bounded FIFO between two threads. drop_oldest: a put on a full channel replaces the oldest
    item (counted via on_drop) instead of waiting. close() ends it: gets drain what is left, then _END."""

    def __init__(self, maxsize: int, drop_oldest: bool, on_drop=None):
        self.items = collections.deque()
        self.maxsize, self.drop_oldest, self.on_drop = maxsize, drop_oldest, on_drop
        self.cond = threading.Condition()
        self.closed = False

    def put(self, item, stop: threading.Event) -> bool:
        """False when the stream is stopping (the item is not queued)."""
        with self.cond:
            while len(self.items) >= self.maxsize and not self.drop_oldest:
                if stop.is_set():
                    return False
                self.cond.wait(0.05)
            if stop.is_set():
                return False
            if len(self.items) >= self.maxsize:
                dropped = self.items.popleft()
                if self.on_drop:
                    self.on_drop(dropped)
            self.items.append(item)
            self.cond.notify_all()
            return True

    def get(self, timeout: float):
        """The next item, _END once closed and empty, or None after `timeout` seconds."""
        with self.cond:
            deadline = time.monotonic() + timeout
            while not self.items:
                if self.closed:
                    return _END
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
            item = self.items.popleft()
            self.cond.notify_all()
            return item

    def get_nowait(self):
        with self.cond:
            if not self.items:
                return None
            item = self.items.popleft()
            self.cond.notify_all()
            return item

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()



class Stream:
    """Iterate to get FrameResults in frame order; see the module docstring. Reconstructor.stream
    makes one. The reconstructor is used by the stream's inference thread only while it runs.

    every: process every Nth frame (the others are skipped, not counted as dropped). max_latency_ms:
    a frame that waited longer than this before inference is dropped (any source). live: None = guess
    (cameras and URLs are live, files and iterables are not). bgr: iterable frames are OpenCV BGR.
    batch: frames per network run for non-live sources (live sources always run the newest one).
    retries / backoff_s: failed reads retried before giving up. timeout_s: a single read blocking longer
    ends the stream (None: wait forever). max_frames: read at most this many frames. queue_size: frames
    waiting for inference and results waiting for the caller, at most. keep_frames: FrameResult.frame
    holds the RGB frame. track: each frame starts from the previous good frame's silhouette instead of
    a framing pass (Reconstructor.batch's follow): one sketch pass per frame while the object stays in
    view. options: passed to Reconstructor.batch (threshold, height_m...).
    """

    def __init__(self, reconstructor, source, every: int = 1, max_latency_ms: Optional[float] = None,
                 live: Optional[bool] = None, *, bgr: bool = False, batch: int = 1, retries: int = 3,
                 backoff_s: float = 0.1, timeout_s: Optional[float] = 10.0, max_frames: Optional[int] = None,
                 queue_size: int = 4, keep_frames: bool = False, name: Optional[str] = None, track: bool = True,
                 **options):
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise InputError(f"every: must be an integer >= 1, got {every!r}")
        if max_latency_ms is not None and not max_latency_ms > 0:
            raise InputError(f"max_latency_ms: must be positive, got {max_latency_ms}")
        if not isinstance(batch, int) or batch < 1:
            raise InputError(f"batch: must be an integer >= 1, got {batch!r}")
        if not isinstance(queue_size, int) or queue_size < 1:
            raise InputError(f"queue_size: must be an integer >= 1, got {queue_size!r}")
        if max_frames is not None and max_frames < 1:
            raise InputError(f"max_frames: must be >= 1, got {max_frames}")
        self.reconstructor = reconstructor
        self.source = open_source(source, live, bgr, name, timeout_s)
        self.live = self.source.live
        self.every, self.max_latency_ms, self.batch = every, max_latency_ms, 1 if self.live else batch
        self.retries, self.backoff_s, self.timeout_s = int(retries), float(backoff_s), timeout_s
        self.max_frames, self.keep_frames, self.options = max_frames, keep_frames, options
        self.track, self._followed = bool(track), None  # the last good result, when tracking
        self.stats = StreamStats(source=self.source.name)
        self._lock = threading.Lock()  # guards stats counters written by several threads
        self._stop = threading.Event()
        self._frames = _Channel(1 if self.live else queue_size, drop_oldest=self.live, on_drop=self._dropped)
        self._results = _Channel(max(1, queue_size // 2), drop_oldest=False)
        self._error: Optional[BaseException] = None
        self._reading_since: Optional[float] = None  # monotonic time a read started, None between reads
        self._threads: list[threading.Thread] = []
        self._generator = None
        self._started = None

    # ------------------------------------------------------------ public

    def __iter__(self):
        if self._generator is None:
            self._generator = self._run()
        return self._generator

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Stop the threads, release the source; the stats are final after this. Idempotent."""
        self._stop.set()
        self._frames.close()
        self._results.close()
        generator, self._generator = self._generator, None
        if generator is not None:
            try:
                generator.close()
            except ValueError:  # running in another thread: the stop event ends it there
                return
        self._shutdown()

    # ------------------------------------------------------------ threads

    def _dropped(self, _item) -> None:
        with self._lock:
            self.stats.dropped += 1

    def _fail(self, error: BaseException, stop: bool = False) -> None:
        """Remember the first error; the caller gets it after the results that came before it.
        stop: also stop the threads now (a stall: the stuck read cannot end by itself)."""
        if self._error is None:
            self._error = error
        if stop:
            self._stop.set()

    def _read_with_retries(self):
        failures = 0
        while True:
            self._reading_since = time.monotonic()
            try:
                return self.source.read()
            except StreamError:
                raise
            except Exception as error:
                failures += 1
                if failures > self.retries:
                    raise StreamError(f"{self.source.name}: no frame after {self.retries} retries "
                                      f"({first_line(error)})") from None
                if self._stop.wait(self.backoff_s * failures):
                    return None
                try:
                    self.source.reopen()
                except Exception:
                    pass  # the next read fails and counts
            finally:
                self._reading_since = None

    def _capture(self) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and index >= self.max_frames:
                    break
                frame = self._read_with_retries()
                if frame is None or self._stop.is_set():
                    break
                captured = (time.time(), time.monotonic())
                with self._lock:
                    self.stats.read += 1
                if index % self.every:
                    with self._lock:
                        self.stats.skipped += 1
                elif not self._frames.put((index, frame, captured), self._stop):
                    break
                index += 1
        except BaseException as error:  # noqa: B902  (anything: the caller must hear of it)
            self._fail(error)
        finally:
            self._frames.close()

    def _infer(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._frames.get(0.1)
                if item is None:
                    continue
                if item is _END:
                    break
                chunk = [item]
                while len(chunk) < self.batch:
                    more = self._frames.get_nowait()
                    if more is None:
                        break
                    chunk.append(more)
                if self.max_latency_ms is not None:
                    now = time.monotonic()
                    fresh = [c for c in chunk if (now - c[2][1]) * 1000 <= self.max_latency_ms]
                    for _ in range(len(chunk) - len(fresh)):
                        self._dropped(None)
                    chunk = fresh
                    if not chunk:
                        continue
                frames = [c[1] for c in chunk]
                results = self.reconstructor.batch(frames, bgr=self.source.bgr, follow=self._followed,
                                                   names=[f"frame_{c[0]:06d}" for c in chunk], **self.options)
                if self.track:  # the newest frame's result, if it found the object (else: frame afresh)
                    self._followed = results[-1] if results[-1].ok else None
                for (index, frame, captured), result in zip(chunk, results):
                    rgb = None
                    if self.keep_frames:
                        rgb = frame[..., ::-1].copy() if self.source.bgr else frame
                    if not self._results.put((index, result, captured, rgb), self._stop):
                        return
                del frames, results, chunk, item
        except BaseException as error:  # noqa: B902
            self._fail(error)
        finally:
            self._results.close()

    def _start(self) -> None:
        self._started = time.monotonic()
        for target, label in ((self._capture, "capture"), (self._infer, "infer")):
            thread = threading.Thread(target=target, name=f"recon-stream-{label}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _shutdown(self) -> None:
        self._stop.set()
        self._frames.close()
        self._results.close()
        for thread in self._threads:
            # A read stuck in the source (a hung camera driver) cannot be interrupted: the thread is a
            # daemon and is left behind rather than hang the caller.
            thread.join(timeout=1.0 if thread.name.endswith("capture") else 30.0)
        stuck = any(thread.is_alive() and thread.name.endswith("capture") for thread in self._threads)
        self._threads = []
        if stuck:  # its read holds the capture: release it once that read returns, without waiting here
            threading.Thread(target=self.source.release, name="recon-stream-release", daemon=True).start()
        else:
            self.source.release()
        if self._started is not None:
            self.stats.elapsed_s = time.monotonic() - self._started
            self._started = None

    def _check_stall(self) -> None:
        since = self._reading_since
        if self.timeout_s is not None and since is not None and time.monotonic() - since > self.timeout_s:
            self._fail(StreamError(f"{self.source.name}: no frame for {self.timeout_s:g} s "
                                   f"(the source stopped delivering)"), stop=True)

    def _run(self):
        self._start()
        try:
            while True:
                item = self._results.get(0.1)
                if item is None:  # nothing yet: the infer thread closes the channel when it ends
                    self._check_stall()
                    continue
                if item is _END:
                    break
                index, result, (wall, mono), rgb = item
                latency = (time.monotonic() - mono) * 1000
                with self._lock:
                    self.stats.processed += 1
                    self.stats.failed += not result.ok
                    self.stats.latencies_ms.append(latency)
                    self.stats.elapsed_s = time.monotonic() - self._started
                yield FrameResult(index, result, wall, wall + latency / 1000, latency, rgb)
        finally:
            self._shutdown()
        if self._error is not None:
            error = self._error
            if isinstance(error, ReconError):
                raise error
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise error
            raise StreamError(f"{self.source.name}: stream failed ({type(error).__name__}: {first_line(error)})") \
                from error
