"""The training loop: one function, read top to bottom.

The run's formulation (science.objective; rectified flow) on the first n images, Adam, an EMA of the
weights, evaluations at log-spaced steps.
The loop (`_train_loop`) trains one run (`SoloStep`) or a pack of runs that share an architecture
(memsweep.train.packed.PackedStep, one network for all): only the step differs. Everything else a run does --
its batches, evaluations, checkpoints, status, divergence check, resuming -- is `Run`'s, the same for both.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import time

import torch
from tqdm import tqdm

from memsweep.data.datasets import decoded
from memsweep.data.sources import FILE_SOURCES, missing
from memsweep.errors import ConfigError
from memsweep.store.cache import data_cache
from memsweep.store.identity import run_dir
from memsweep.store.run import RunStore
from memsweep.store.run_dir import ELSEWHERE, RunLocked
from memsweep.train import distributed
from memsweep.train.packed import PackedStep
from memsweep.train.active_run import Run, pick_device
from memsweep.train.signals import Interrupted, SignalGuard
from memsweep.train.solo import SoloStep
from memsweep.states import State, DONE

log = logging.getLogger("memsweep")


def train(cfg, guard: SignalGuard | None = None, on_session=None, job_id: str | None = None,
          lock_wait_s: float = 0.0) -> dict:
    """Train (or resume, or skip if finished) the run `cfg` describes. Returns its status."""
    return train_runs([cfg], guard, on_session, job_id, lock_wait_s)[0]


def train_runs(cfgs, guard: SignalGuard | None = None, on_session=None, job_id: str | None = None,
               lock_wait_s: float = 0.0) -> list[dict]:
    """Train (or resume, or skip if finished) runs in this process: one alone, or several packed into one
    network (memsweep.train.packed; they must share a pack_key). Returns each run's status, in the order given.
    `on_session` receives the stepper, whose `checkpoint()` saves every run in training (submitit's requeue).
    `lock_wait_s`: how long to wait for a run's lock (a requeued job's previous attempt may still be exiting)."""
    guard = guard or SignalGuard()
    rank, size, _ = distributed.world()  # several ranks: started by `memsweep train runtime.processes=K` or torchrun
    if size == 1 and any(c.runtime.processes > 1 for c in cfgs):
        raise ConfigError(f"runtime.processes={max(c.runtime.processes for c in cfgs)}: a run on several processes "
                          "is started by `memsweep train` or torchrun, one run at a time (not packed, not in a sweep)")
    if size > 1 and len(cfgs) > 1:
        raise ConfigError(f"a pack of {len(cfgs)} runs trains in one process, not on {size}")
    prepare_data(cfgs)
    device = distributed.setup(cfgs[0]) if size > 1 else None
    try:
        return _train_runs(cfgs, guard, on_session, job_id, lock_wait_s, rank, device)
    except RuntimeError as e:  # a rank died or hung (rank 0's status.json says so, _train_runs)
        error = distributed.lost(e)
        if error is None or error is e:
            raise
        raise error from e
    finally:
        distributed.teardown()


def _train_runs(cfgs, guard, on_session, job_id, lock_wait_s, rank: int, device) -> list[dict]:
    results: list[dict | None] = [None] * len(cfgs)
    with contextlib.ExitStack() as locks:
        todo = []
        for i, cfg in enumerate(cfgs):
            # rank 0 alone holds the lock and writes the run directory; the other ranks read it
            store = RunStore(run_dir(cfg)) if rank == 0 else distributed.Replica(run_dir(cfg))
            try:
                locks.enter_context(store.lock(lock_wait_s))
            except RunLocked as e:
                if len(cfgs) == 1:
                    raise
                log.warning("%s; left to it, the pack trains the others", e)  # another sweep shares this run
                results[i] = {**store.status(), "state": ELSEWHERE}
                continue
            status = store.status()
            if status["state"] in DONE:
                log.info("run %s is already %s; nothing to do", store.run_id, status["state"])
                results[i] = status
            else:
                todo.append((i, cfg, store, status))
        # rank 0 decided, holding the lock; all follow. The other ranks read the checkpoint only after this, so once
        # a requeued job's previous attempt has let go of the run: every rank resumes from the same checkpoint
        keep = distributed.broadcast([i for i, *_ in todo])
        for i, cfg, store, status in todo:
            if i not in keep:
                results[i] = store.status()
        todo = [t for t in todo if t[0] in keep]
        if not todo:
            return results
        first = todo[0][1]
        if first.runtime.threads:
            torch.set_num_threads(first.runtime.threads)
        device = device or pick_device(first.runtime.device)
        runs = []
        try:
            for i, cfg, store, status in todo:
                runs.append(Run(cfg, store, status, device, job_id))
            _train_loop(runs, guard, on_session)
        except BaseException as e:
            error = distributed.lost(e) or e  # a rank died or hung: its own one-line error
            if not isinstance(e, (KeyboardInterrupt, SystemExit)):  # setup included: status.json says so
                for k, (_, _, store, _) in enumerate(todo):
                    if k >= len(runs) or runs[k].result is None:
                        _mark_failed(store, error)
            if error is not e:
                raise error from e
            raise
        for (i, *_), run in zip(todo, runs):
            results[i] = run.result
    return results


def prepare_data(cfgs, here: bool = True) -> None:
    """Decode the runs' file datasets (data=folder, data=npz) into the reference cache before any run directory
    is written: bad files fail with one line and nothing written, and a sweep's runs decode them once. `here`:
    the runs train on this machine, so CIFAR-10 must be here too (a Slurm job checks it where it runs)."""
    for problem in dict.fromkeys(missing(c.data) for c in cfgs) if here else ():
        if problem:
            raise ConfigError(problem)
    cfgs = [c for c in cfgs if c.data.name in FILE_SOURCES]
    if cfgs:
        cache = data_cache(cfgs[0])  # one cache: runs sharing the data hit its memory after the first
        for cfg in cfgs:
            decoded(cfg.data, cache)


def _mark_failed(store: RunStore, e: BaseException) -> None:
    """status.json says failed, with the error. On a full disk even that tiny write may fail: the error then
    says so (the run shows as stopped once this process is gone, and resumes like one)."""
    try:
        store.set_status(state=State.FAILED, error=f"{type(e).__name__}: {e}")
        if not isinstance(store, distributed.Replica):  # rank 0 writes it
            e.add_note(f"run {store.run_id} marked failed")
    except OSError as again:
        e.add_note(f"run {store.run_id} could not be marked failed either ({again.strerror or again})")


def _stop(runs: list[Run], e: Interrupted) -> None:
    """SIGTERM or Ctrl-C between two steps: checkpoint each run in training at the current step, mark it
    stopped (a relaunch resumes it from that step), and say so in the error's notes."""
    for run in runs:
        run.checkpoint()
        run.store.set_status(state=State.STOPPED, step=run.step, stopped_by=signal.Signals(e.signum).name,
                             **run.timing())
        e.add_note(f"run {run.store.run_id} checkpointed at step {run.step} of {run.total}")


def _train_loop(runs: list[Run], guard: SignalGuard, on_session) -> None:
    if len(runs) == 1:
        stepper = SoloStep(runs[0])
    else:
        stepper = PackedStep(runs)
    if on_session:
        on_session(stepper)
    for run in list(stepper.runs):  # resumed at its last step (killed after the final checkpoint)
        if run.step >= run.total:
            run.finish()
            stepper.leave(run)
    cfg = runs[0].cfg
    desc = f"run {runs[0].store.run_id} n={cfg.data.n}" if len(runs) == 1 else f"pack of {len(runs)} runs"
    bar = tqdm(total=sum(r.total for r in runs), initial=sum(r.step for r in runs), desc=desc,
               disable=not cfg.runtime.progress or runs[0].rank > 0, dynamic_ncols=True, mininterval=1.0)
    try:
        _steps(stepper, guard, bar)
    except Interrupted as e:  # raised by the guard between two steps (train.signals.interruptible)
        with guard.hold():  # a second signal while checkpointing is dropped: we are stopping already
            _stop(stepper.runs, e)
            guard.pending.clear()
        raise


def _steps(stepper, guard: SignalGuard, bar) -> None:
    device = stepper.runs[0].device
    # signals are held back throughout and their handlers run between two steps (flush); on several ranks
    # only once every rank has them (agree), so that all stop at the same step
    with bar, guard.hold():
        while stepper.runs:
            active = list(stepper.runs)
            # on a GPU, kernels run ahead of the clock: their time is counted at the next synchronisation
            # (the loss check every 50 steps, an evaluation), so train_seconds is then approximate
            started = time.perf_counter()
            losses = stepper.step()  # one training step of every run in training
            seconds = (time.perf_counter() - started) / len(active)
            for run, loss in zip(active, losses):
                done = run.advance(loss, seconds)
                if run.step in run.schedule and run.last_row is not None:  # rank 0 evaluated: the bar shows it,
                    bar.set_postfix(gap=f"{run.last_row['loss_gap']:.4f}",  # the final evaluation too (issue 29)
                                    mem=f"{run.last_row['mem_ratio']:.2f}", refresh=False)
                if done is not None:
                    stepper.leave(run)
            bar.update(len(active))
            if stepper.runs:
                guard.run(distributed.agree(guard, device))   # on several ranks: the signals they agree on
            else:
                guard.flush()
