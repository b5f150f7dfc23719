"""Local launching: runs trained in parallel worker processes (packed up to launcher.pack per process)."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from omegaconf import open_dict

from memsweep.store.run import ELSEWHERE, RunLocked
from memsweep.sweeps.jobs import TrainJob, payload
from memsweep.sweeps.status import LiveProgress
from memsweep.train.packed import make_packs
from memsweep.states import State

log = logging.getLogger("memsweep")


def _local_worker(cfg_container) -> str | list[str]:
    torch.set_num_threads(1)  # two one-thread processes beat one two-thread process for small models
    return TrainJob(cfg_container)()


def run_local(runs, workers: int | None = None, show_progress: bool = True, pack: int = 1) -> dict:
    """Train runs in parallel worker processes, one thread each; wait for all and show progress.
    `pack` > 1: runs that can share a pack (memsweep.packed.pack_key) are trained up to `pack` per process."""
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
    with LiveProgress(runs, enabled=show_progress) as progress, \
            ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_local_worker, payload(p)): p for p in packs}
        pending = set(futures)
        while pending:
            done = {f for f in pending if f.done()}
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
                except Exception as e:  # the runs' status.json says failed; the sweep goes on
                    for run in members:
                        results[run.run_id] = State.FAILED
                    log.error("run %s failed: %s: %s", ", ".join(r.run_id for r in members), type(e).__name__, e)
            pending -= done
            progress.refresh()
            if pending:
                time.sleep(0.5)
    return results


