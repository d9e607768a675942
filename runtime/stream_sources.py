"""Where a stream's frames come from (recon.runtime.stream): a camera index, a stream URL or a video
file through OpenCV (the `video` extra, imported on use), or any iterable of frames."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Optional

from recon.runtime.errors import InputError, ReconError, first_line


class StreamError(ReconError):
    """The source failed (after retries) or stopped delivering frames."""


def _cv2():
    try:
        import cv2
    except ImportError:
        raise InputError("video files, cameras and stream URLs need OpenCV: pip install 'recon[video]'") from None
    return cv2


class _Source:
    """Frames from somewhere: read() -> (H, W, 3) uint8 array (bgr as self.bgr), or None at the end.
    Raises on a failed read (the stream retries); reopen() is tried between retries."""

    name = "source"
    live = False
    bgr = False

    def read(self):
        raise NotImplementedError

    def reopen(self) -> None:
        pass

    def release(self) -> None:
        pass


class _CaptureSource(_Source):
    """cv2.VideoCapture over a camera index, a URL or a video file."""

    bgr = True

    def __init__(self, target, name: str, live: bool, timeout_s: Optional[float] = None):
        self.target, self.name, self.live, self.timeout_s = target, name, live, timeout_s
        self.lock = threading.Lock()
        self.capture = None
        self.reopen()
        if not self.capture.isOpened():
            self.release()
            what = "camera" if isinstance(target, int) else "stream" if live else "video file"
            raise InputError(f"{name}: cannot open this {what} with OpenCV")

    def reopen(self) -> None:
        cv2 = _cv2()
        with self.lock:
            if self.capture is not None:
                self.capture.release()
            if isinstance(self.target, str) and _is_url(self.target) and self.timeout_s is not None:
                # FFmpeg's own timeouts (30 s by default) bound a stuck open or read, a little after
                # the stream's own stall check (timeout_s) has ended the stream with its message.
                limit = int(1000 * self.timeout_s) + 1000
                self.capture = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, limit, cv2.CAP_PROP_READ_TIMEOUT_MSEC, limit])
            else:
                self.capture = cv2.VideoCapture(self.target)

    def read(self):
        with self.lock:
            ok, frame = self.capture.read()
        if ok and frame is not None:
            return frame
        if self.live:  # a camera or a stream that does not deliver: an error, retried
            raise OSError("no frame delivered")
        return None  # a file's end

    def release(self) -> None:
        with self.lock:
            if self.capture is not None:
                self.capture.release()


class _IterableSource(_Source):
    def __init__(self, iterable, name: str, live: bool, bgr: bool):
        self.iterator, self.name, self.live, self.bgr = iter(iterable), name, live, bgr
        self.failed = None  # the last error, to tell "ended after raising" from a clean end

    def read(self):
        try:
            frame = next(self.iterator)
        except StopIteration:
            if self.failed is not None:  # a generator that raised is finished: that is a failure, not an end
                raise StreamError(f"{self.name}: source failed ({first_line(self.failed)}) and cannot be resumed") \
                    from None
            return None
        except Exception as error:
            self.failed = error
            raise
        self.failed = None
        return frame


def _is_url(text: str) -> bool:
    return "://" in text


def open_source(source, live: Optional[bool] = None, bgr: bool = False, name: Optional[str] = None,
                timeout_s: Optional[float] = None) -> _Source:
    """A camera index (int), a video file path, a stream URL, or an iterable of frames -> a _Source.
    InputError now for a missing file or a capture OpenCV cannot open. timeout_s: bounds a URL's open
    and reads."""
    if isinstance(source, bool):
        raise InputError(f"source: expected a camera index, a video file, a URL or frames, got {source!r}")
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        index = int(source)
        return _CaptureSource(index, name or f"camera {index}", True if live is None else live)
    if isinstance(source, str) and _is_url(source):
        return _CaptureSource(source, name or source, True if live is None else live, timeout_s)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not a video file")
        return _CaptureSource(str(path), name or str(path), bool(live))
    try:
        iter(source)
    except TypeError:
        raise InputError(f"source: expected a camera index, a video file, a URL or an iterable of frames, "
                         f"got {type(source).__name__}") from None
    return _IterableSource(source, name or f"{type(source).__name__} source", bool(live), bgr)
