"""Runs `recon-cli` in a fresh process, as a user does."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run_cli(*args, timeout: float = 300, unset: tuple[str, ...] = (), cwd=None) -> subprocess.CompletedProcess:
    """`recon-cli ARGS...` in a fresh process (in folder `cwd`); 200 columns, so rich wraps messages the
    same on every terminal; `unset`: environment variables the process must not see (e.g. DISPLAY)."""
    env = {key: value for key, value in os.environ.items() if key not in unset}
    return subprocess.run([sys.executable, "-m", "recon.cli.main", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env={**env, "COLUMNS": "200"})


def modules_loaded_by(statement: str, modules) -> list[str]:
    """Which of `modules` a fresh interpreter has loaded after running `statement` (e.g. an import)."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(m for m in {tuple(modules)!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Non-zero exit, one `error:` line naming what went wrong, no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) >= 1 and lines[-1].startswith("error:"), result.stderr
    message = " ".join(result.stderr.split())  # rich may wrap long lines
    for fragment in fragments:
        assert fragment in message, (fragment, result.stderr)


def start_cli(*args, env: dict | None = None, **popen) -> subprocess.Popen:
    """`recon-cli ARGS...` started in a fresh process (run_cli's environment plus `env`), not waited
    for: for interrupting it, or for running several at once."""
    # Ctrl-C restored to its default in the child: a shell runs background jobs (a test suite started
    # with `&`, some CI runners) with SIGINT ignored, and Python then installs no KeyboardInterrupt.
    return subprocess.Popen([sys.executable, "-m", "recon.cli.main", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200", **(env or {})},
                            preexec_fn=_default_sigint, **popen)


def _default_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
