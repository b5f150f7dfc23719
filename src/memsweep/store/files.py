"""Writing files so that a reader, or a writer killed halfway, never sees half a file (nor a full disk leaves
one); and fault injection."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
from pathlib import Path
from typing import Callable

from memsweep.errors import storage_error

_hits: dict[str, int] = {}


def failpoint(name: str, path=None) -> None:
    """Fault injection for the fault tests: MEMSWEEP_FAILPOINT=name:k SIGKILLs this process the k-th time
    it reaches the point `name` (checkpoint, metrics, eval, step, status); name:k:enospc raises ENOSPC there
    instead, as a full disk would (`path`: the file being written). A no-op otherwise. On several processes
    (train.distributed) MEMSWEEP_FAILPOINT_RANK=r limits it to rank r."""
    spec = os.environ.get("MEMSWEEP_FAILPOINT")
    if not spec or spec.partition(":")[0] != name:
        return
    if os.environ.get("MEMSWEEP_FAILPOINT_RANK", os.environ.get("RANK", "0")) != os.environ.get("RANK", "0"):
        return
    _, k, action = (spec.split(":") + ["", ""])[:3]
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != int(k or 1):
        return
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    os.kill(os.getpid(), signal.SIGKILL)


class _Recording:
    """A file that remembers the first OSError of a write: torch.save turns it into a RuntimeError
    ("unexpected pos ..."), and the errno (ENOSPC) is what says the disk is full."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self):
        try:
            return self.f.flush()
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name):
        return getattr(self.f, name)


def temp_name(path: Path) -> Path:
    """The temporary file a write of `path` goes through: hidden, per process, beside the target (so the
    rename stays on one file system). Readers that clean up after killed writers glob `.<name>.*.tmp`."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write(path: Path, write: Callable, point: str | None = None) -> Path:
    """Write `path` through a temporary file: write(file), flush, fsync, then rename over `path`. `point`: a
    failpoint reached after the data is on disk and before the rename (the kill tests)."""
    path = Path(path)
    tmp, recording = temp_name(path), None
    try:
        with open(tmp, "wb") as f:
            recording = _Recording(f)
            write(recording)
            f.flush()
            os.fsync(f.fileno())
        if point:
            failpoint(point, path)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):  # a half-written temp file would keep the space that ran out
            tmp.unlink(missing_ok=True)
        recorded = recording.error if recording is not None and isinstance(e, Exception) else None
        cause = recorded if recorded is not None else e  # a Ctrl-C stays a Ctrl-C
        error = storage_error(cause, path)
        if error is not cause:
            raise error from e
        raise
    return path


def append_line(path: Path, line: str, point: str | None = None) -> None:
    """Append one line with one write (appends never interleave) and fsync. If the write fails (a full disk)
    the file is cut back to its previous end, so no torn line is left behind. `point`: a failpoint reached
    halfway through the line (the kill tests)."""
    data = line.encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        end = os.fstat(fd).st_size
        try:
            parts = [data[: len(data) // 2], data[len(data) // 2:]] if point else [data]
            for i, part in enumerate(parts):
                if i and point:
                    failpoint(point, path)
                while part:
                    part = part[os.write(fd, part):]
            os.fsync(fd)
        except OSError as e:
            with contextlib.suppress(OSError):  # shrinking a file needs no space
                os.ftruncate(fd, end)
            error = storage_error(e, path)
            if error is e:
                raise
            raise error from e
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default
