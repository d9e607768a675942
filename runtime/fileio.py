"""Atomic file writing: a reader (or an interrupted run) never sees a half-written file.

Temporary files and folders are named `.<target name>.<writer pid>.<random>.tmp`, beside their target.
A writer killed outright (SIGKILL, power loss) cannot remove its own; the next command that checks that
destination (`check_output_dir`, `check_output_file`) removes those whose writer process is gone.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

from recon.runtime.errors import InputError

_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")  # what temp_prefix + mkstemp/mkdtemp make


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_prefix(name: str) -> str:
    """The prefix of this process's temporary files for target `name` (see the module docstring)."""
    return f".{name}.{os.getpid()}."


def _writer_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    try:  # a zombie (killed, not yet reaped) is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Remove the temporary files and folders in `folder` whose writer process is gone; how many."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if not match or not _writer_gone(int(match.group(1))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
        except OSError:
            pass
    return removed


def _probe_writable(folder: Path, label: str) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=temp_prefix("write-test"), suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise InputError(f"{label}: {folder} is not writable ({error.strerror or error})") from None


def check_output_dir(path: str | os.PathLike, label: str = "--out", create: bool = True,
                     owned_by: tuple[str, ...] = ()) -> Path:
    """Before any work: `path` is (or can become) a writable folder; stale temporary files in it are
    removed. create: make it now (else only prove its nearest existing parent writable). owned_by: names
    one of which a folder this command wrote before holds (to resume it): an existing folder with other
    files and none of them is refused, so a mistyped --out never scatters files into, say, a checkout's
    examples/. InputError."""
    path = Path(path)
    label = f"{label} {path}" if label else str(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{label}: exists and is not a folder")
    if not create and not path.exists():
        parent = next((p for p in path.absolute().parents if p.exists()), Path("/"))
        if not parent.is_dir():
            raise InputError(f"{label}: cannot create the output folder: not writable ({parent} is a file)")
        _probe_writable(parent, label)
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{label}: cannot create the output folder: not writable ({error.strerror or error})") \
            from None
    _probe_writable(path, label)
    remove_stale_temps(path)  # ours: a killed run's temporary files do not make the folder foreign
    if owned_by and not any((path / name).exists() for name in owned_by) and any(path.iterdir()):
        raise InputError(f"{label}: holds other files and no {owned_by[0]} (not one this command wrote); "
                         "choose a new or empty folder")
    return path


def check_output_file(path: str | os.PathLike, label: str = "--out") -> Path:
    """Before any work: `path` can be written (its folder exists and is writable, it is not a folder);
    stale temporary files beside it are removed. InputError otherwise."""
    path = Path(path)
    label = f"{label} {path}" if label else str(path)
    if path.is_dir():
        raise InputError(f"{label}: is a folder; give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise InputError(f"{label}: folder {parent} does not exist")
    _probe_writable(parent, label)
    remove_stale_temps(parent)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result file is an ordinary file
        os.replace(tmp, path)
    except OSError as error:  # a full disk: name the file being written, not its temporary twin
        if error.filename is not None and os.fspath(error.filename) != str(tmp):
            raise
        raise OSError(error.errno, error.strerror, str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """A compressed .npz (what np.load reads) whose bytes depend only on the arrays.

    np.savez_compressed stamps the current time into each zip entry; a fixed stamp makes equal
    data give equal files, so a dataset is reproducible byte for byte from its seed.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.asanyarray(array), allow_pickle=False)
            archive.writestr(entry, payload.getvalue())
    return buffer.getvalue()


def save_npz_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    write_bytes_atomic(path, npz_bytes(**arrays))
