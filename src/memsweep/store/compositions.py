"""Hydra's compositions of a choice of config groups, kept between commands (compositions/ in store.user_cache).

Hydra composing the config groups was half of what a command that composes a run spent beyond its imports
(0.045 s; docs/measurements.md). config.Composer composes a base once per choice of config groups (model=c64,
+experiment=...) and applies the key overrides (data.n=64) to a copy, so the base a command needs is most often
one an earlier command composed: the bases are kept here as Composer holds them (pickled), under the fingerprint
of all that makes them (the name and bytes of every file on the config search path, the code that composes, the
versions of Python, Hydra and OmegaConf) and a hash of the group overrides. A change to any of them is another
key, so a kept base is never stale, only unused; the folders of all but the newest KEEP fingerprints are
removed. A base is kept unresolved (${oc.env:...} is resolved by each command) and is what Hydra composed before
memsweep checks it: every command checks its runs. A base that cannot be read or written is composed again.
Hydra's parse of each override line (data.n=64) is kept beside them: parsing 15 lines took 8 ms (its lexer starts
cold in every process), a tenth of a dry run.
"""
from __future__ import annotations

import hashlib
import logging
import pickle
import shutil
from pathlib import Path

from memsweep.store import user_cache
from memsweep.store.files import atomic_write_bytes

log = logging.getLogger(__name__)
KEEP = 16   # fingerprints kept: a few projects' config folders, each edited a few times


def fingerprint(files, *parts: str) -> str:
    """A hash of (name, path) files' names and bytes and of other parts (versions, the search path)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() + b"\0")
    for name, path in files:
        h.update(name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return h.hexdigest()[:32]


class Kept:
    """The bases kept under one fingerprint, by their group overrides, and the override lines parsed."""
    PARSED = "overrides.pkl"
    MAX_PARSED = 20_000   # lines kept; beyond, only those of the last command

    def __init__(self, fingerprint: str):
        self.root = user_cache.folder() / "compositions"
        self.folder = self.root / fingerprint

    def base(self, groups) -> bytes | None:
        """The kept base of a choice of groups, pickled; None when none is kept or it does not unpickle (a file
        cut short)."""
        data = self._read(self._name(groups))
        try:
            pickle.loads(data or b"")
            return data
        except Exception:
            return None

    def keep_base(self, groups, data: bytes) -> None:
        self._write(self._name(groups), data)

    def parsed(self) -> dict:
        """Override line -> Hydra's Override, as parsed by earlier commands."""
        try:
            parsed = pickle.loads(self._read(self.PARSED) or b"")
            return parsed if isinstance(parsed, dict) else {}
        except Exception:
            return {}

    def keep_parsed(self, parsed: dict, used) -> None:
        kept = parsed if len(parsed) <= self.MAX_PARSED else {line: parsed[line] for line in used}
        self._write(self.PARSED, pickle.dumps(kept))

    @staticmethod
    def _name(groups) -> str:
        return f"{hashlib.sha256(repr(tuple(groups)).encode()).hexdigest()[:32]}.pkl"

    def _read(self, name: str) -> bytes | None:
        try:
            return (self.folder / name).read_bytes()
        except OSError:
            return None

    def _write(self, name: str, data: bytes) -> None:
        try:
            new = not self.folder.is_dir()
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.folder / name, data)
            if new:
                self._prune()
        except OSError as e:   # a read-only or full home: composed again next time
            log.debug("composition not kept in %s: %s", self.folder, e)

    def _prune(self) -> None:
        folders = sorted((d for d in self.root.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
        for old in folders[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
