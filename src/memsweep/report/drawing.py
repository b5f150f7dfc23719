"""The report's figures drawn side by side, in forked worker processes, one per core.

Each figure is independent, single-threaded matplotlib work (layout, ticks, rendering), and together they are
most of a report once its sample analyses are stored: 15 figures took ~13 s of a 29 s first report of a
4-run CIFAR-sized sweep here (scripts/bench_report.py --quick). Fork rather than spawn: the workers inherit
the figures' inputs (runs, tables, sample analyses) without pickling them and without importing memsweep
again. A worker uses one torch thread (a forked child must not resume its parent's OpenMP pool); a figure
that fails comes back as its error's text, so one failure loses nothing else. The parent's objects are frozen
out of the garbage collector before the fork (gc.freeze, as Python's documentation advises for fork without
exec): matplotlib makes many short-lived objects, and each collection of the oldest generation would otherwise
walk the whole inherited heap (the report's tables, torch) and copy the pages it touches: 10-20% of the
figures' time here. Elsewhere than Linux (where fork is the safe default) and for one figure, they are drawn
in this process.
"""
from __future__ import annotations

import gc
import multiprocessing
import sys

import torch

_JOBS: list = []   # (func, args, kwargs) of the current draw(): what the forked workers inherit


def _draw(i: int):
    func, args, kwargs = _JOBS[i]
    try:
        return func(*args, **kwargs), None
    except Exception as e:  # the parent turns it into the report's note
        return None, f"{type(e).__name__}: {e}"


def _one_thread() -> None:
    torch.set_num_threads(1)


def workers_for(jobs: int) -> int:
    """Processes to draw `jobs` figures with: torch's thread count (the cores), one where fork is not safe."""
    return 1 if sys.platform != "linux" else max(1, min(jobs, torch.get_num_threads()))


def draw(jobs: list[tuple], workers: int | None = None) -> list[tuple]:
    """(the figure function's return value, None) or (None, its error's text) for each (func, args, kwargs)."""
    global _JOBS
    workers = workers_for(len(jobs)) if workers is None else workers
    _JOBS = list(jobs)
    try:
        if workers <= 1:
            return [_draw(i) for i in range(len(_JOBS))]
        gc.freeze()   # the parent's objects out of the workers' collections (see above)
        with multiprocessing.get_context("fork").Pool(workers, initializer=_one_thread) as pool:
            return pool.map(_draw, range(len(_JOBS)), chunksize=1)
    finally:
        gc.unfreeze()
        _JOBS = []
