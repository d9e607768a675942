"""Shared option types: every command's numbers, names and output paths are checked here, while the
command line is parsed, before any work starts (so `train --out FILE` fails at once, not after an epoch).

    lr: Optional[float] = options.positive_float(None, "Learning rate.")

Each helper returns a typer.Option whose callback raises InputError (one `error:` line, exit 2) naming
the option, the value and what it must be. Only typer and pathlib load here: `--help` stays instant.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import typer


def _fail(param, value, expected: str):
    from recon.runtime.errors import InputError

    name = max(param.opts, key=len) if param is not None and param.opts else "value"
    raise InputError(f"{name} {value}: must be {expected}")


def _checked(check: Callable[[object], bool], expected: str):
    """A typer callback: None passes (an unset optional value), else `check(value)` must hold."""

    def callback(ctx: typer.Context, param, value):
        if ctx.resilient_parsing or value is None:
            return value
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if not check(item):
                _fail(param, item, expected)
        return value

    return callback


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def int_at_least(default, minimum: int, help: str, *names: str):
    """An integer option >= `minimum`."""
    return typer.Option(default, *names, help=help,
                        callback=_checked(lambda v: v >= minimum, f"an integer >= {minimum}"))


def positive_float(default, help: str, *names: str):
    """A finite number > 0 (a learning rate, a length in metres)."""
    return typer.Option(default, *names, help=help,
                        callback=_checked(lambda v: _finite(v) and v > 0, "a finite number > 0"))


def fraction(default, help: str, *names: str):
    """A number in [0, 1] (a mixing fraction)."""
    return typer.Option(default, *names, help=help,
                        callback=_checked(lambda v: _finite(v) and 0 <= v <= 1, "a number between 0 and 1"))


def nonnegative_float(default, help: str, *names: str):
    return typer.Option(default, *names, help=help,
                        callback=_checked(lambda v: _finite(v) and v >= 0, "a finite number >= 0"))


def probability(default, help: str, *names: str):
    """A number strictly between 0 and 1 (an iso level of occupancy probabilities)."""
    return typer.Option(default, *names, help=help,
                        callback=_checked(lambda v: _finite(v) and 0 < v < 1,
                                          "a number between 0 and 1 (exclusive)"))


def name_list(default: str, help: str, *names: str):
    """Comma-separated names: at least one, none empty."""

    def names_given(value: str) -> bool:
        return bool(csv_list(value))

    return typer.Option(default, *names, help=help,
                        callback=_checked(names_given, "one or more comma-separated names"))


def csv_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def output_dir(default, help: str, *names: str):
    """A folder to write (made when the command runs): refused now when it is a file or cannot be made."""

    def callback(ctx: typer.Context, param, value: Optional[Path]):
        if ctx.resilient_parsing or value is None:
            return value
        from recon.runtime.fileio import check_output_dir

        check_output_dir(value, max(param.opts, key=len), create=False)
        return value

    return typer.Option(default, *names, help=help, callback=callback)


def output_file(default, help: str, *names: str):
    """A file to write at the end of a long command (JSON report, picture): its folder is checked now."""

    def callback(ctx: typer.Context, param, value: Optional[Path]):
        if ctx.resilient_parsing or value is None:
            return value
        from recon.runtime.fileio import check_output_file

        check_output_file(value, max(param.opts, key=len))
        return value

    return typer.Option(default, *names, help=help, callback=callback)


def precision(fp16: bool, int8: bool) -> str:
    """--fp16 / --int8 -> which ONNX files run (recon.runtime.model.PRECISIONS); both at once is a usage error."""
    if fp16 and int8:
        from recon.runtime.errors import InputError

        raise InputError("--fp16 and --int8: choose one of them")
    return "int8" if int8 else "fp16" if fp16 else "fp32"
