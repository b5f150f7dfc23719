"""Figures drawn once: a report keeps a figure of the previous report whose inputs and drawing code are unchanged.

Drawing is most of a report once the sample analyses are stored (report.sample_analyses): 15 figures of a 4-run
CIFAR-sized sweep took 28 s of a 30 s second report here, all of it matplotlib's layout and rendering. So
each figure is keyed by a fingerprint of what it is drawn from: its arguments (runs by their metrics, status,
config values and the listing of their saved sample grids; tables and arrays by content), the source of
memsweep's modules and matplotlib's version. sweeps/<name>/figures.json maps each figure's title to the key it
was drawn with and its file; a figure whose key and file are both still there is not drawn again.

Arguments with no fingerprint (an object this module does not know) make the figure uncacheable: it is drawn
every time. Two equal inputs may fingerprint differently (a table built in another order): that is a redraw,
never a stale figure.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pickle
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch

import memsweep
from memsweep.store.files import atomic_write_text, read_json

FILENAME = "figures.json"


class Uncacheable(TypeError):
    """An argument this module cannot fingerprint."""


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of every module of memsweep and matplotlib's version: any change of the code redraws."""
    h = hashlib.blake2b(matplotlib.__version__.encode(), digest_size=16)
    root = Path(memsweep.__file__).parent
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _feed(h, obj) -> None:
    if hasattr(obj, "fingerprint_parts"):   # RunData, LazyImages: what they stand for, not their caches
        h.update(type(obj).__name__.encode())
        return _feed(h, obj.fingerprint_parts())
    if obj is None or isinstance(obj, (bool, int, float, str, Path, np.generic)):
        h.update(repr((type(obj).__name__, obj)).encode())
    elif isinstance(obj, (list, tuple)):
        h.update(f"[{len(obj)}".encode())
        for x in obj:
            _feed(h, x)
    elif isinstance(obj, dict):
        h.update(f"{{{len(obj)}".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (pd.DataFrame, pd.Series)):
        h.update(pickle.dumps(obj, protocol=4))
    elif isinstance(obj, torch.Tensor):
        _feed(h, obj.detach().cpu().numpy())
    elif isinstance(obj, np.ndarray):
        h.update(f"{obj.dtype}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(type(obj).__name__.encode())
        _feed(h, [getattr(obj, f.name) for f in dataclasses.fields(obj)])
    else:
        raise Uncacheable(type(obj).__name__)


def key(func, args, kwargs) -> str | None:
    """The figure's fingerprint, or None if an argument has none."""
    h = hashlib.blake2b(code_version().encode(), digest_size=16)
    h.update(f"{func.__module__}.{func.__qualname__}".encode())
    try:
        _feed(h, [list(args), dict(sorted(kwargs.items()))])
    except Uncacheable:
        return None
    return h.hexdigest()


class FigureCache:
    """The record of one sweep's figures: kept(title, key) says whether the figure on disk can stay."""

    def __init__(self, out: Path):
        self.path = Path(out) / FILENAME
        self.out = Path(out)
        old = read_json(self.path, {}) or {}
        self.old = old.get("figures", {}) if isinstance(old, dict) else {}
        self.new: dict[str, dict] = {}

    def kept(self, title: str, fig_key: str | None):
        """(True, file or None) if the last report drew this figure from the same inputs and its file is
        still there (None: the figure had nothing to draw); (False, None) otherwise."""
        entry = self.old.get(title)
        if fig_key is None or not isinstance(entry, dict) or entry.get("key") != fig_key:
            return False, None
        name = entry.get("file")
        if name is not None and not (self.out / name).is_file():
            return False, None
        self.new[title] = entry
        return True, name

    def drawn(self, title: str, fig_key: str | None, path) -> None:
        if fig_key is not None:
            self.new[title] = {"key": fig_key, "file": None if path is None else Path(path).name}

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps({"figures": self.new}, indent=1) + "\n")
