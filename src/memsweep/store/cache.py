"""A cache on disk for things computed once and shared by the runs of a sweep (reference features, their
Gaussian statistics, the offline digits network), keyed by what determines them.

    <output_root>/cache/<kind>/<key>.pt      the value (a dict of tensors, numbers and strings)
    <output_root>/cache/<kind>/<key>.json    what the key stands for, when and where it was computed
    <output_root>/cache/<kind>/<key>.lock    flock'ed by the process computing it
    <output_root>/cache/log.jsonl            one line per lookup: hit, computed, or waited (for another process)

The key is a hash of a description (`parts`): for reference features, the dataset, subset, a hash of the
images' content, and the feature space's identity (including a hash of its weights file), so a change in the
data or the extractor gives a new key and the value is recomputed.

Many runs may start at once: a lookup that misses takes an exclusive flock on the key's lock file, looks
again (another process may have finished meanwhile), and only then computes. So one process computes and the
others wait, then read its result. Values are written to a temporary file and renamed, so nobody ever reads
half a file; a process killed while computing releases its flock (the OS does), and the next one computes.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import torch

from memsweep.store.files import atomic_write, atomic_write_text

log = logging.getLogger("memsweep")

FORMAT = 1  # bump to invalidate every cached value


def digest(parts) -> str:
    """A stable hash of a JSON-able description."""
    blob = json.dumps({"format": FORMAT, "parts": parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def tensor_hash(t: torch.Tensor) -> str:
    """sha256 of a tensor's content, shape and dtype."""
    a = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{tuple(a.shape)} {a.dtype}".encode())
    h.update(a.view(torch.uint8).numpy().data if a.numel() else b"")
    return h.hexdigest()




class Cache:
    """get(kind, parts, compute): the cached value, computed by exactly one process if missing.

    `root` None gives a cache in memory only (nothing on disk). Recently used values are also kept in memory
    (`keep_in_memory` of them), so a process evaluating many runs reads a shared value once."""

    def __init__(self, root: Path | None, keep_in_memory: int = 8):
        self.root = Path(root) if root is not None else None
        self.keep = keep_in_memory
        self.memory: OrderedDict[str, dict] = OrderedDict()

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.pt"

    def get(self, kind: str, parts: dict, compute: Callable[[], dict], what: str = "") -> dict:
        key = digest({"kind": kind, **parts})
        memo = f"{kind}/{key}"
        if memo in self.memory:
            self.memory.move_to_end(memo)
            return self.memory[memo]
        if self.root is None:
            value = compute()
        else:
            value = self._get_disk(kind, key, parts, compute, what)
        self.memory[memo] = value
        while len(self.memory) > self.keep:
            self.memory.popitem(last=False)
        return value

    def _get_disk(self, kind, key, parts, compute, what) -> dict:
        path = self.path(kind, key)
        value = self._load(path)
        if value is not None:
            self._log("hit", kind, key, what)
            return value
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            t0 = time.time()
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks while another process computes this key
            waited = time.time() - t0
            value = self._load(path)
            if value is not None:  # computed by another process while we waited
                self._log("waited", kind, key, what, seconds=waited)
                return value
            for stale in path.parent.glob(f".{key}.*.tmp"):  # left by a writer killed before its rename (any version)
                stale.unlink(missing_ok=True)
            t0 = time.time()
            value = compute()
            seconds = time.time() - t0
            atomic_write(path, lambda f: torch.save(value, f))
            atomic_write_text(path.with_suffix(".json"), json.dumps(
                {"kind": kind, "what": what, "parts": parts, "seconds": round(seconds, 3), "created": time.time(),
                 "host": socket.gethostname(), "pid": os.getpid()}, indent=1, default=str))
            self._log("computed", kind, key, what, seconds=seconds)
            log.info("cache: computed %s %s in %.1fs -> %s", kind, what, seconds, path)
            return value
        finally:
            os.close(fd)  # releases the flock

    @staticmethod
    def _load(path: Path):
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # unreadable (e.g. a disk error): recomputed under the lock
            log.warning("cache: %s is unreadable (%s: %s); recomputing it", path, type(e).__name__, e)
            return None

    def _log(self, event: str, kind: str, key: str, what: str, seconds: float = 0.0) -> None:
        line = json.dumps({"time": round(time.time(), 3), "event": event, "kind": kind, "key": key, "what": what,
                           "seconds": round(seconds, 3), "pid": os.getpid(), "host": socket.gethostname()}) + "\n"
        try:  # one write of one short line with O_APPEND: lines of concurrent processes never interleave
            fd = os.open(self.root / "log.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError:
            pass

    def read_log(self) -> list[dict]:
        path = self.root / "log.jsonl" if self.root is not None else None
        if path is None or not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def for_config(cfg) -> Cache:
    """The cache of a run's config: <paths.output_root>/cache, or memory only if eval.feature_cache is false."""
    if not cfg.eval.feature_cache or not cfg.get("paths") or not cfg.paths.get("output_root"):
        return Cache(None)
    return Cache(Path(str(cfg.paths.output_root)).expanduser() / "cache")



def data_cache(cfg) -> Cache:
    """The cache of decoded datasets (data=folder, data=npz): <paths.output_root>/cache, always on disk."""
    return Cache(Path(str(cfg.paths.output_root)).expanduser() / "cache")
