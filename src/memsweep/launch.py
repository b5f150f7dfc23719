"""Launching runs: local worker processes, or Slurm job arrays through submitit.

Jobs carry only the run's resolved config: when a job starts (or restarts after a requeue) the run finds
its own latest checkpoint in its directory, so no checkpoint path is ever pickled into a job.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import submitit
from omegaconf import OmegaConf, open_dict

from .errors import ConfigError
from .store import ELSEWHERE  # what a sweep reports for a run that another process trains

log = logging.getLogger("memsweep")


def _container(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def _payload(members) -> dict | list[dict]:
    """What a job carries: one run's config, or the configs of a pack's runs."""
    return _container(members[0].cfg) if len(members) == 1 else [_container(r.cfg) for r in members]


# -- the job: what a worker process or a Slurm job runs -------------------------------------------------
REQUEUE_LOCK_WAIT_S = 300.0


class TrainJob(submitit.helpers.Checkpointable):
    """Train one run, or a pack of runs (a list of configs: memsweep.packed). On Slurm, submitit calls
    `checkpoint` on its pre-timeout or preemption signal (USR2): we save the runs at the current step, between
    two training steps, and submitit requeues the job."""

    def __init__(self, cfg_container):
        self.cfg_container = cfg_container
        self.session = None

    def __getstate__(self):  # only the config travels with the job, never the training state
        return {"cfg_container": self.cfg_container, "session": None}

    def __call__(self):
        from .train import SignalGuard, train_runs

        packed = isinstance(self.cfg_container, list)
        cfgs = [OmegaConf.create(c) for c in (self.cfg_container if packed else [self.cfg_container])]
        job_id, guard, lock_wait_s = None, SignalGuard(), 0.0
        try:
            env = submitit.JobEnvironment()
            # a requeued job may start before its previous attempt has finished exiting: wait for its lock
            job_id, guard, lock_wait_s = env.job_id, SignalGuard([signal.SIGUSR2]), REQUEUE_LOCK_WAIT_S
        except RuntimeError:
            pass  # not under submitit (local workers)
        states = [s["state"] for s in train_runs(cfgs, guard=guard, on_session=self._set_session, job_id=job_id,
                                                 lock_wait_s=lock_wait_s)]
        return states if packed else states[0]

    def _set_session(self, session) -> None:
        self.session = session

    def checkpoint(self, *args, **kwargs):
        if self.session is not None:
            self.session.checkpoint()
            log.warning("checkpointed %s before requeue",
                        ", ".join(f"run {r.store.run_id} at step {r.step}" for r in self.session.runs))
        return submitit.helpers.DelayedSubmission(TrainJob(self.cfg_container))


# -- local ----------------------------------------------------------------------------------------------
def _local_worker(cfg_container) -> str | list[str]:
    import torch

    torch.set_num_threads(1)  # two one-thread processes beat one two-thread process for small models
    return TrainJob(cfg_container)()


def run_local(runs, workers: int | None = None, show_progress: bool = True, pack: int = 1) -> dict:
    """Train runs in parallel worker processes, one thread each; wait for all and show progress.
    `pack` > 1: runs that can share a pack (memsweep.packed.pack_key) are trained up to `pack` per process."""
    from .packed import make_packs

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
    from .status import LiveProgress
    from .store import RunLocked

    with LiveProgress(runs, enabled=show_progress) as progress, \
            ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_local_worker, _payload(p)): p for p in packs}
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
                        results[run.run_id] = "failed"
                    log.error("run %s failed: %s: %s", ", ".join(r.run_id for r in members), type(e).__name__, e)
            pending -= done
            progress.refresh()
            if pending:
                time.sleep(0.5)
    return results


# -- Slurm ----------------------------------------------------------------------------------------------
def check_slurm() -> None:
    """Fail before any submission if no Slurm controller answers."""
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        raise ConfigError("launcher=slurm: no Slurm here (sbatch/sinfo not found); start one with slurm/up.sh "
                          "or use launcher=local")
    try:
        subprocess.run(["sinfo", "-h"], check=True, capture_output=True, timeout=20)
    except (subprocess.SubprocessError, OSError):
        raise ConfigError("launcher=slurm: the Slurm controller does not answer (sinfo failed)") from None


SLURM_KEYS = ("pack", "partition", "account", "qos", "timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb",
              "max_array_size", "array_parallelism", "signal_delay_s", "constraint", "additional_parameters",
              "folder", "name")


def _executor(folder: Path, res: dict) -> submitit.AutoExecutor:
    ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    params = {"timeout_min": int(res.get("timeout_min", 60)), "cpus_per_task": int(res.get("cpus_per_task", 1)),
              "slurm_array_parallelism": int(res.get("array_parallelism", 256)),
              "slurm_signal_delay_s": int(res.get("signal_delay_s", 120)),
              "slurm_additional_parameters": dict(res.get("additional_parameters") or {})}
    if res.get("mem_gb"):
        params["mem_gb"] = float(res["mem_gb"])
    if res.get("gpus_per_node"):
        params["gpus_per_node"] = int(res["gpus_per_node"])
    for key in ("partition", "account", "qos", "constraint"):
        if res.get(key):
            params[f"slurm_{key}"] = res[key]
    ex.update_parameters(name=f"memsweep", **params)
    return ex


def slurm_jobs(runs) -> list[tuple[dict, list[list]]]:
    """The Slurm jobs that train `runs`, by resources: [(resources, [the runs of each job])]. A job trains one
    run, or up to launcher.pack runs that share a pack (memsweep.packed.pack_key) and their resources."""
    from .packed import make_packs

    groups: dict[str, list] = {}
    for run in runs:
        res = {**_container(run.cfg.launcher), **run.resources}
        unknown = set(res) - set(SLURM_KEYS)
        if unknown:
            raise ConfigError(f"launcher.{sorted(unknown)[0]}: unknown Slurm setting (known: {', '.join(SLURM_KEYS)})")
        groups.setdefault(repr(sorted(res.items(), key=str)), []).append((run, res))
    out = []
    for items in groups.values():
        res, by_cfg = items[0][1], {id(run.cfg): run for run, _ in items}
        packs = make_packs([run.cfg for run, _ in items], max(1, int(res.get("pack") or 1)), workers=1)
        out.append((res, [[by_cfg[id(c)] for c in pack] for pack in packs]))
    return out


def submit_slurm(runs, sweep_dir: Path) -> list[tuple[str, str]]:
    """Submit runs as job arrays (grouped by resources, split under max_array_size; a pack of runs is one job).
    Returns (run_id, job_id) of every run, at once."""
    from .store import RunStore
    from . import config as config_mod

    check_slurm()
    submitted = []
    for res, packs in slurm_jobs(runs):
        for run in (r for p in packs for r in p):
            with open_dict(run.cfg):
                run.cfg.runtime.progress = False
                run.cfg.runtime.threads = int(res.get("cpus_per_task", 1))
        ex = _executor(Path(res.get("folder") or sweep_dir / "slurm") / "%j", res)
        size = max(1, int(res.get("max_array_size", 1000)))
        for start in range(0, len(packs), size):
            chunk = packs[start:start + size]
            with ex.batch():
                jobs = [ex.submit(TrainJob(_payload(p))) for p in chunk]
            for members, job in zip(chunk, jobs):
                for run in members:
                    RunStore(config_mod.run_dir(run.cfg)).set_status(state="queued", job_id=job.job_id)
                    submitted.append((run.run_id, job.job_id))
    return submitted
