"""Writing files so that a reader, or a writer killed halfway, never sees half a file; and fault injection."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Callable

_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Fault injection for the kill tests: MEMSWEEP_FAILPOINT=name:k SIGKILLs this process the k-th time
    it reaches the point `name` (checkpoint, metrics, eval, step, status). A no-op otherwise."""
    spec = os.environ.get("MEMSWEEP_FAILPOINT")
    if not spec or spec.partition(":")[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(spec.partition(":")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def temp_name(path: Path) -> Path:
    """The temporary file a write of `path` goes through: hidden, per process, beside the target (so the
    rename stays on one file system). Readers that clean up after killed writers glob `.<name>.*.tmp`."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write(path: Path, write: Callable, point: str | None = None) -> Path:
    """Write `path` through a temporary file: write(file), flush, fsync, then rename over `path`. `point`: a
    failpoint reached after the data is on disk and before the rename (the kill tests)."""
    path = Path(path)
    tmp = temp_name(path)
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    if point:
        failpoint(point)
    os.replace(tmp, path)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default
