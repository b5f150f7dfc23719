"""Hashes of files: a bottom layer, since the datasets (data.npz's fingerprint) and the reference cache (feature
spaces' weights) both key things by a file's content."""
from __future__ import annotations

import hashlib
from pathlib import Path

_file_hashes: dict[tuple, str] = {}


def file_hash(path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) within the process."""
    p = Path(path).resolve()
    st = p.stat()
    memo = (str(p), st.st_size, st.st_mtime_ns)
    if memo not in _file_hashes:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _file_hashes[memo] = h.hexdigest()
    return _file_hashes[memo]
