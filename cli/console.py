"""How every `recon-cli` command talks: results on stdout, progress and diagnostics on stderr.

- `out` (stdout) carries what a command produced (result lines, tables, summaries), so `> log` and pipes work.
- `err` (stderr) carries progress bars, notes, warnings and the one `error:` line.
- `esc()` is the one way a user string (a path, a file name, an error message) enters rich markup:
  `pip install 'recon[video]'` and `good[red].png` keep their brackets.
- `progress()` draws a live bar with an ETA on a terminal, and plain, whole lines every 5 % otherwise
  (a log file never gets a bar cut off at 80 columns).
- `quiet_third_party()` keeps OpenCV/FFmpeg logging and Pillow/trimesh warnings from printing above
  our own one-line messages.

Only rich is imported here (the command modules stay light for `--help`).
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.markup import escape

__all__ = ["out", "err", "esc", "progress", "quiet_third_party", "rank_zero"]

# Off a terminal (a log file, a pipe) rich would cut tables at 80 columns: give them room instead.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def esc(value) -> str:
    """`value` as text that rich prints literally (square brackets are markup otherwise)."""
    return escape(str(value))


def rank_zero() -> bool:
    """False in the other processes of a `torchrun` launch: only the first one reports."""
    return os.environ.get("RANK", "0") == "0"


class progress:
    """`with progress(total, "infer") as advance: ... advance(extra="...")` once per finished item.

    On a terminal: a rich bar with done/total, elapsed time and ETA, and `extra` text (e.g. running
    losses) beside it. Elsewhere: a plain line every 5 % and at the end. `total` <= `quiet_below`:
    nothing at all (one picture needs no bar). `print()` writes a line above the bar.
    """

    def __init__(self, total: int | None, description: str, quiet_below: int = 0, console: Console = err):
        self.total, self.description, self.console = total, description, console
        self.enabled = (total is None or total > quiet_below) and rank_zero()
        self.bar = self.task = None
        self.done = 0

    def __enter__(self):
        if self.enabled and self.console.is_terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                TextColumn("{task.fields[extra]}"), console=self.console, transient=True)
            self.task = self.bar.add_task(esc(self.description), total=self.total, extra="")
            self.bar.start()
        return self.advance

    def advance(self, steps: int = 1, extra: str = "", total: int | None = None) -> None:
        """`steps` more done; `total`: the total once it is known (when it was not at the start)."""
        self.done += steps
        self.total = self.total if total is None else total
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, total=self.total, extra=esc(extra))
        elif self.enabled and self.total and (self.done == self.total or self.done % max(1, self.total // 20) == 0):
            self.console.print(f"{esc(self.description)} {self.done}/{self.total} {esc(extra)}".rstrip())

    def restart(self, total: int, description: str) -> None:
        """Start over with a new total (e.g. the next epoch)."""
        self.total, self.description, self.done = total, description, 0
        if self.bar is not None:
            self.bar.reset(self.task, total=total, description=esc(description))

    def print(self, text: str) -> None:
        """A line above the bar (`text` is markup: escape user strings in it)."""
        self.console.print(text)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


def quiet_third_party() -> None:
    """Silence the libraries that print on their own: OpenCV's `[ WARN:0@...]` lines and FFmpeg's
    demuxer messages (read from the environment when cv2 loads), and Python warnings and log records
    (Pillow's, trimesh's, torch's). Our own messages say what failed; theirs would only repeat it in
    another form, above ours. recon itself never warns through `warnings`. `RECON_DEBUG=1` keeps them all."""
    if os.environ.get("RECON_DEBUG"):
        return
    import logging
    import warnings

    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    warnings.simplefilter("ignore")
    logging.captureWarnings(True)  # warnings raised with another filter set later still go to logging
    for name in ("PIL", "trimesh", "py.warnings"):
        logging.getLogger(name).setLevel(logging.ERROR)


def report_skipped(dataset, skipped: list[str]) -> None:
    """One warning line for the objects a command left out of a damaged dataset (train, eval, preview)."""
    if skipped:
        err.print(f"[yellow]warning:[/] {esc(dataset)}: skipped {len(skipped)} object(s) with missing or "
                  f"damaged files or an unknown category: {esc('; '.join(skipped[:3]))}"
                  + (" ..." if len(skipped) > 3 else ""))
