"""Runs `recon-cli` in a fresh process, as a user does."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """`recon-cli ARGS...` in a fresh process; 200 columns, so rich wraps messages the same on every terminal."""
    return subprocess.run([sys.executable, "-m", "recon.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Non-zero exit, one `error:` line naming what went wrong, no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) >= 1 and lines[-1].startswith("error:"), result.stderr
    message = " ".join(result.stderr.split())  # rich may wrap long lines
    for fragment in fragments:
        assert fragment in message, (fragment, result.stderr)
