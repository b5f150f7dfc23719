"""Results derived from a run's saved files, stored in the run directory so a report computes each only once.

run_dir/analysis/<name>.v<version>.npz    arrays, plus `meta`: a JSON object saying what they were computed
                                          from (version, inputs' sizes and times, parameters)

A stored result is used only when its meta equals what the reader expects: a changed definition (its version
constant), a rewritten input or other parameters give a miss, and the result is computed again and replaces
it. Files are written to a temporary name and renamed (store.run.atomic_write_bytes), so a reader never sees
half a file, and two reports computing the same result at once both write it whole: the last rename wins.
"""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np

from memsweep.store.files import atomic_write_bytes

log = logging.getLogger("memsweep")

DIRNAME = "analysis"


def path(run_dir, name: str, version: int) -> Path:
    return Path(run_dir) / DIRNAME / f"{name}.v{version}.npz"


def stamp(file) -> list[int]:
    """What identifies a saved input file without reading it: its size and modification time (ns)."""
    st = Path(file).stat()
    return [st.st_size, st.st_mtime_ns]


def folder_stamp(folder) -> list:
    """(name, size, mtime) of each file directly in `folder` (empty if none): its saved files, unread."""
    folder = Path(folder)
    return [(p.name, *stamp(p)) for p in sorted(folder.iterdir()) if p.is_file()] if folder.is_dir() else []


def _canonical(meta: dict) -> str:
    return json.dumps(meta, sort_keys=True, allow_nan=True, default=str)


def read(run_dir, name: str, version: int, expect: dict) -> tuple[dict, dict] | None:
    """(arrays, meta) if stored with meta["inputs"] == `expect`; None if missing, unreadable or stale."""
    p = path(run_dir, name, version)
    try:
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if _canonical(meta.get("inputs")) != _canonical(expect):
                return None
            return {k: z[k] for k in z.files if k != "meta"}, meta
    except FileNotFoundError:
        return None
    except Exception as e:   # a damaged file (disk error, foreign writer): computed again and replaced
        log.warning("analysis cache: %s is unreadable (%s: %s); recomputing it", p, type(e).__name__, e)
        return None


def write(run_dir, name: str, version: int, arrays: dict, inputs: dict, **extra) -> Path:
    """Store `arrays` (numpy arrays) under meta {"inputs": inputs, **extra}, atomically."""
    p = path(run_dir, name, version)
    p.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    meta = json.loads(_canonical({"inputs": inputs, **extra}))   # what read() will compare, JSON-normalized
    np.savez(buf, meta=np.array(json.dumps(meta, allow_nan=True)), **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(p, buf.getvalue())
    return p
