"""Local launching: runs trained in parallel worker processes (packed up to launcher.pack per process)."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch
from omegaconf import open_dict

from memsweep.store.run_dir import ELSEWHERE, RunLocked
from memsweep.errors import StorageError
from memsweep.sweeps.groups import run_groups
from memsweep.sweeps.jobs import TrainJob, payload
from memsweep.sweeps.progress import LiveProgress
from memsweep.train.packing import make_packs
from memsweep.train.signals import STOP_SIGNALS, Interrupted, interruptible
from memsweep.states import State

log = logging.getLogger("memsweep")


def _context():
    """fork where it is safe, spawn elsewhere. A forked worker starts at once with what the launcher has
    imported; a spawned one imports memsweep, torch and the rest again (~5.5 s of CPU each here: a sweep of 4
    tiny runs on 2 workers takes 1.3x the wall and 1.5x the CPU spawned, scripts/bench_workers.py). Not once
    the launcher has initialized CUDA (a forked child could not use it), nor off Linux."""
    if sys.platform == "linux" and not torch.cuda.is_initialized():
        return mp.get_context("fork")
    return mp.get_context("spawn")


def _fresh_signals() -> None:
    """A forked worker's signals as a spawned one's: the launcher's handlers (which raise Interrupted in the
    launcher) are not the worker's, which sets its own around each job."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _local_worker(cfg_container) -> str | list[str]:
    torch.set_num_threads(1)  # two one-thread processes beat one two-thread process for small models
    with interruptible(STOP_SIGNALS):  # SIGTERM (from the launcher, a shutdown) or Ctrl-C: checkpoint, stop
        try:
            return TrainJob(cfg_container)()
        except Interrupted as e:  # the runs are checkpointed and marked stopped (train.loop._stop)
            log.warning("%s", "; ".join(getattr(e, "__notes__", ())) or "stopped before any step")
            return [State.STOPPED] * len(cfg_container) if isinstance(cfg_container, list) else State.STOPPED


def _failure(e: BaseException) -> str:
    """One line for a worker's error: the error and its notes (e.g. a full disk, and whether the run could be
    marked failed)."""
    notes = "".join(f"; {n}" for n in getattr(e, "__notes__", ()))
    return (str(e) if isinstance(e, StorageError) else f"{type(e).__name__}: {e}") + notes


def _stop_workers(futures) -> None:
    """The launcher got SIGTERM or Ctrl-C: start nothing more, and pass SIGTERM on to the workers (a `kill`
    reaches only this process) so that each checkpoints its runs between two steps."""
    for f in futures:
        f.cancel()
    for process in mp.active_children():
        process.terminate()


def _collect(done, futures, results, stopping: bool = False) -> set:
    """Record the states of the finished jobs `done` in `results` (run id -> state); returns `done`.
    `stopping`: the launcher passed SIGTERM on, and a worker still starting up died of it."""
    for f in done:
        members = futures[f]
        try:
            states = f.result()
            for run, state in zip(members, states if isinstance(states, list) else [states]):
                results[run.run_id] = state
        except RunLocked as e:  # another sweep's worker got to it first: left to that process
            for run in members:
                results[run.run_id] = ELSEWHERE
            log.warning("%s; left to it", e)
        except (CancelledError, *((BrokenProcessPool,) if stopping else ())):  # stopped before it started
            for run in members:
                results[run.run_id] = State.STOPPED
        except Exception as e:  # the runs' status.json says failed; the sweep goes on
            for run in members:
                results[run.run_id] = State.FAILED
            log.error("run %s failed: %s", ", ".join(r.run_id for r in members), _failure(e))
    return done


def run_local(runs, workers: int | None = None, show_progress: bool = True, pack: int = 1) -> dict:
    """Train runs in parallel worker processes, one thread each; wait for all and show progress.
    `pack` > 1: runs that can share a pack (memsweep.train.packing.pack_key) are trained up to `pack` per process."""
    if any(r.cfg.runtime.processes > 1 for r in runs):  # runs on K processes: K devices each (sweeps.groups)
        return run_groups(runs, workers, show_progress)
    workers = workers or os.cpu_count() or 1
    by_id = {}
    for run in runs:
        with open_dict(run.cfg):
            run.cfg.runtime.progress = False
            run.cfg.runtime.threads = 1
        by_id[id(run.cfg)] = run
    # longest first: the sweep ends sooner
    packs = [[by_id[id(c)] for c in p] for p in make_packs([r.cfg for r in runs], pack, workers)]
    results = {}
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(packs))), mp_context=_context(),
                             initializer=_fresh_signals) as pool:
        futures = {pool.submit(_local_worker, payload(p)): p for p in packs}   # forks before our threads start
        with LiveProgress(runs, enabled=show_progress) as progress:
            interrupted = _wait(futures, results, progress)
    if interrupted:
        stopped = [run_id for run_id, state in results.items() if state == State.STOPPED]
        interrupted.add_note(f"{len(stopped)} of {len(runs)} runs stopped (checkpointed at their current step "
                             "or not started)")
        raise interrupted
    return results


def _wait(futures, results: dict, progress) -> Interrupted | None:
    """Collect the jobs as they end, refreshing the progress; the Interrupted this launcher got, if any."""
    pending, interrupted = set(futures), None
    while pending:
        try:
            pending -= _collect({f for f in pending if f.done()}, futures, results, interrupted is not None)
            progress.refresh()
            if pending:
                time.sleep(0.5)
        except Interrupted as e:  # this launcher got SIGTERM or Ctrl-C: its workers stop and say so
            interrupted = interrupted or e
            _stop_workers(pending)
    return interrupted
