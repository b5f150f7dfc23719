"""The job a worker process or a Slurm job runs: train one run, or a pack of runs, from their configs.

Jobs carry only the runs' resolved configs: when a job starts (or restarts after a requeue) each run finds
its own latest checkpoint in its directory, so no checkpoint path is ever pickled into a job.
"""
from __future__ import annotations

import logging
import signal

import submitit
from omegaconf import OmegaConf

from memsweep.train.loop import SignalGuard, train_runs
from memsweep.train.signals import STOP_SIGNALS, interruptible

log = logging.getLogger("memsweep")


def container(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def payload(members) -> dict | list[dict]:
    """What a job carries: one run's config, or the configs of a pack's runs."""
    return container(members[0].cfg) if len(members) == 1 else [container(r.cfg) for r in members]


# -- the job: what a worker process or a Slurm job runs -------------------------------------------------
REQUEUE_LOCK_WAIT_S = 300.0


class TrainJob(submitit.helpers.Checkpointable):
    """Train one run, or a pack of runs (a list of configs: memsweep.train.packed). On Slurm, submitit calls
    `checkpoint` on its pre-timeout or preemption signal (USR2): we save the runs at the current step, between
    two training steps, and submitit requeues the job."""

    def __init__(self, cfg_container):
        self.cfg_container = cfg_container
        self.session = None

    def __getstate__(self):  # only the config travels with the job, never the training state
        return {"cfg_container": self.cfg_container, "session": None}

    def __call__(self):
        packed = isinstance(self.cfg_container, list)
        cfgs = [OmegaConf.create(c) for c in (self.cfg_container if packed else [self.cfg_container])]
        job_id, lock_wait_s, stops = None, 0.0, ()
        try:
            env = submitit.JobEnvironment()
            if env.num_tasks > 1:  # one run on K tasks (issue 31): torch.distributed's environment, rank per task
                submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
                # submitit checkpoints and requeues on rank 0 only and leaves the others running: they stop,
                # at the same step as rank 0 (train.distributed.agree), with nothing to write
                stops = (signal.SIGUSR2,) if env.global_rank else ()
            # a requeued job may start before its previous attempt has finished exiting: wait for its lock
            job_id, guard, lock_wait_s = env.job_id, SignalGuard([signal.SIGUSR2]), REQUEUE_LOCK_WAIT_S
        except RuntimeError:  # not under submitit: a local worker, whose SIGTERM / Ctrl-C (sweeps.local) land
            guard = SignalGuard(STOP_SIGNALS)  # between two steps
        with interruptible(stops):
            if stops:
                guard = SignalGuard(stops)
            states = [s["state"] for s in train_runs(cfgs, guard=guard, on_session=self._set_session,
                                                     job_id=job_id, lock_wait_s=lock_wait_s)]
        return states if packed else states[0]

    def _set_session(self, session) -> None:
        self.session = session

    def checkpoint(self, *args, **kwargs):
        if self.session is not None:
            self.session.checkpoint()
            log.warning("checkpointed %s before requeue",
                        ", ".join(f"run {r.store.run_id} at step {r.step}" for r in self.session.runs))
        return submitit.helpers.DelayedSubmission(TrainJob(self.cfg_container))


