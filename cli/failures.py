"""The one line `recon-cli` prints for failures that are not recon's own errors, and Ctrl-C's kin.

- A missing optional package (`pip install .` has no torch): which extra brings it (`EXTRAS`).
- An OSError that escaped the commands' own checks (a disk that filled up mid-run): the file and the reason.
- A recon error re-raised by a DataLoader worker carries the worker's traceback in its text: only the
  original message is shown.
- SIGTERM (a `kill`, a CI timeout) ends a command as Ctrl-C does: cleanly, with one `interrupted` line.
"""

from __future__ import annotations

import signal

# module a command imports -> the extra of pyproject.toml that installs it
EXTRAS = {"torch": "train", "embreex": "train", "onnx": "export", "onnxslim": "export", "cv2": "video",
          "openvino": "openvino", "pynvml": "gpu", "cuda": "gpu", "tensorrt": "gpu"}


# commands whose extra brings more than the module map says (export needs torch and the ONNX tooling)
COMMAND_EXTRAS = {"export": "export"}


def missing_extra(error: ModuleNotFoundError, command: str = "") -> str:
    module = (error.name or "").split(".")[0]
    extra = COMMAND_EXTRAS.get(command) if module in ("torch", "onnx", "onnxslim") else None
    extra = extra or EXTRAS.get(module)
    if extra:
        return f"{command or 'this command'} needs {module}, which is not installed: pip install 'recon[{extra}]'"
    return f"a module this command needs is not installed ({error})"


def os_error_line(error: OSError) -> str:
    where = error.filename if error.filename is not None else "a file"
    return f"{where}: {error.strerror or error}"


def user_message(error: BaseException) -> str:
    """The error's own one-line message; for one re-raised from a worker process, the original's."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    return last.split(": ", 1)[1] if ": " in last and "Error" in last.split(": ", 1)[0] else last


def interrupt_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt in the main thread, so its clean-up runs as for Ctrl-C."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
