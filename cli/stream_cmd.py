"""`recon-cli stream`: a camera, video file or stream URL in, a mesh + preview per processed frame out
(registered by recon.cli.main as `app.command("stream")(stream)`).

Only typer, pathlib and typing are imported here at load time; the runtime and OpenCV when it runs.
"""

from pathlib import Path
from typing import Optional

import typer

from recon.cli import options


def stream(
    source: str = typer.Argument(..., help="Camera index (0, 1...), video file, or stream URL (rtsp://, http://...)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder from `recon-cli export` "
                                         "(default: the model installed with recon)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write OUT/frame_000123.<format> and "
                                       ".preview.png per saved frame, and OUT/summary.json (default: write nothing)."),
    every: int = typer.Option(1, "--every", min=1, help="Process every Nth frame of the source."),
    save_every: int = typer.Option(1, "--save-every", min=1, help="Write every Nth processed frame."),
    format: str = typer.Option("glb", "--format", help="Comma-separated outputs: obj, ply, stl, glb, npy, binvox."),
    show: bool = typer.Option(False, "--show", help="Show the preview in an OpenCV window (needs a display)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Stop after reading N frames."),
    live: Optional[bool] = typer.Option(None, "--live/--no-live", help="Drop stale frames and keep up with the "
                                        "source (default: cameras and URLs yes, files no)."),
    max_latency_ms: Optional[float] = typer.Option(None, "--max-latency-ms", help="Drop frames older than this "
                                                   "before inference."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N (GPU N), tensorrt or openvino."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads per network."),
    fp16: bool = typer.Option(False, "--fp16", help="Run the model's FP16 twins (`recon-cli export --fp16` makes them)."),
    int8: bool = typer.Option(False, "--int8", help="Run the model's INT8 twins (`recon-cli export --int8` makes "
                              "them)."),
    smooth: int = typer.Option(0, "--smooth", min=0, help="Laplacian smoothing passes over each mesh (0: none)."),
    largest_only: bool = typer.Option(False, "--largest-only", help="Keep only the largest connected piece of each mesh."),
):
    """Reconstruct frames of a camera, video file or stream as they come; prints fps, latency and drops
    (and writes them with the saved frames to OUT/summary.json).

    Exit code 0 when the source ended (or Ctrl-C), 2 for a usage problem or a source that failed.
    """
    from recon.cli import console as ui
    from recon.runtime.errors import ReconError
    from recon.runtime.pipeline import Reconstructor, check_formats

    formats = check_formats([f for f in format.split(",") if f.strip()] or ["glb"])
    from recon.cli.infer_cmd import prepare_output

    if out is not None:
        out = prepare_output(out, create=False)
    err = ui.err
    reconstructor = Reconstructor(model, device=device, threads=threads, smooth=smooth, largest_only=largest_only,
                                  precision=options.precision(fp16, int8))
    with reconstructor:
        frames = reconstructor.stream(source, every=every, max_latency_ms=max_latency_ms, live=live,
                                      bgr=True, max_frames=max_frames)
        if out is not None:  # made once the model and the source have opened: neither failing leaves an empty folder
            try:
                prepare_output(out)
            except BaseException:
                frames.close()
                raise
        window = _Window(err) if show else None
        status = _Status(err, frames.stats)
        written = interrupted = 0
        saved = []  # summary.json's per-frame entries
        failure = None
        try:
            with frames, status:
                for frame in frames:
                    if frame.ok and out is not None and (frames.stats.processed - 1) % save_every == 0:
                        files = frame.result.save(out, stem=f"frame_{frame.index:06d}", formats=formats)
                        saved.append({"index": frame.index, "latency_ms": round(frame.latency_ms, 1),
                                      **frame.result.summary(), "outputs": {k: str(v) for k, v in files.items()}})
                        written += 1
                    if window is not None and frame.ok:
                        window.show(frame.result.preview())
                    status.update()
        except KeyboardInterrupt:
            interrupted = 1
        except ReconError as error:  # the source failed: still report what was done, then the error
            failure = error
        finally:
            if window is not None:
                window.close()
    stats = frames.stats
    if interrupted:
        err.print("interrupted")
    ui.out.print(_table(stats))
    if out is not None:
        from recon.runtime.fileio import write_json_atomic

        write_json_atomic(out / "summary.json", {"model": str(reconstructor.model.path), "formats": list(formats),
                                                 "stats": stats.as_dict(), "interrupted": bool(interrupted),
                                                 "error": None if failure is None else str(failure), "frames": saved})
        ui.out.print(f"wrote {written} frames to {ui.esc(out)}; summary: {ui.esc(out / 'summary.json')}")
    if failure is not None:
        raise failure


class _Status:
    """A rich status line on a terminal, else one plain line per second."""

    def __init__(self, console, stats):
        self.console, self.stats = console, stats
        self.live = None
        self.last = 0.0

    def text(self) -> str:
        s = self.stats
        p50 = s.latency(0.5)
        latency = "-" if p50 is None else f"{p50:.0f} ms"
        return (f"{s.fps:5.1f} fps  latency p50 {latency}  read {s.read}  processed {s.processed}  "
                f"dropped {s.dropped}  failed {s.failed}")

    def __enter__(self):
        if self.console.is_terminal:
            self.live = self.console.status(self.text())
            self.live.__enter__()
        return self

    def update(self) -> None:
        import time

        if self.live is not None:
            self.live.update(self.text())
        elif time.monotonic() - self.last >= 1.0:
            self.last = time.monotonic()
            self.console.print(self.text())

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.__exit__(*exc)


class _Window:
    """cv2.imshow when OpenCV has a GUI and a display exists; else one warning line and nothing."""

    def __init__(self, console):
        import os
        import sys

        self.cv2 = None
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            console.print("[yellow]warning[/] --show: no display (DISPLAY is not set); not showing frames")
            return
        try:
            import cv2

            cv2.namedWindow("recon", cv2.WINDOW_NORMAL)
            self.cv2 = cv2
        except Exception as error:  # ImportError, or cv2.error from a headless build
            from recon.runtime.errors import first_line

            from recon.cli.console import esc

            reason = first_line(error, 120)
            console.print(f"[yellow]warning[/] --show: cannot open a window ({esc(reason)}); not showing frames")

    def show(self, rgb) -> None:
        if self.cv2 is not None:
            self.cv2.imshow("recon", rgb[..., ::-1])
            if self.cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                raise KeyboardInterrupt

    def close(self) -> None:
        if self.cv2 is not None:
            self.cv2.destroyAllWindows()


def _table(stats):
    from rich.table import Table

    from recon.cli.console import esc

    values = stats.as_dict()
    table = Table(title=f"stream {esc(values.pop('source'))}", show_header=False)
    for key, value in values.items():
        table.add_row(key.replace("_", " "), "-" if value is None else esc(value))
    return table
