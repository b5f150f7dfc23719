"""Local sweeps of runs on K processes (runtime.processes=K, issue 31): each run gets K of this machine's devices
-- a group of K GPUs (CUDA_VISIBLE_DEVICES) when the runs train on CUDA, else K of launcher.workers' CPU slots
(one gloo process and one thread each) -- and its K ranks train it as `memsweep train` starts them; a run starts
as soon as K devices are free, longest first. A sweep whose runs need more devices than there are is refused in
one line before anything is written."""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import open_dict

from memsweep.errors import ConfigError, RankLost
from memsweep.states import State
from memsweep.sweeps.jobs import TrainJob, container
from memsweep.sweeps.progress import LiveProgress
from memsweep.train import distributed
from memsweep.train.signals import STOP_SIGNALS, Interrupted, interruptible

log = logging.getLogger("memsweep")


def devices(device: str, workers: int | None) -> tuple[list[str], bool]:
    """The device slots the runs share, and whether they are GPUs: the visible CUDA devices when runs on
    `device` (runtime.device) train on CUDA, else `workers` (default: the CPU cores) CPU slots."""
    if device != "cpu" and torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [d for d in visible.split(",") if d] if visible else [str(i) for i in range(torch.cuda.device_count())]
        return ids, True
    return [str(i) for i in range(workers or os.cpu_count() or 1)], False


def check_devices(runs, workers: int | None) -> None:
    """One line, before anything is written, when a run needs more devices than this machine has."""
    slots, gpus = devices(runs[0].cfg.runtime.device, workers)
    need = max(r.cfg.runtime.processes for r in runs)
    if need > len(slots):
        what = "CUDA devices" if gpus else "CPU slots (launcher.workers, default the cores)"
        raise ConfigError(f"runtime.processes={need}: this machine has {len(slots)} {what}; a local sweep gives "
                          f"each run that many (launcher=slurm spreads them over nodes)")


def take(pending: list, free: list[str]):
    """The first pending run whose K devices are free, and those devices (removed from `free`); None if none."""
    for i, run in enumerate(pending):
        k = int(run.cfg.runtime.processes)
        if k <= len(free):
            group = free[:k]
            del free[:k]
            return pending.pop(i), group
    return None


def describe_devices(runs, workers: int | None) -> str:
    """What the dry run says these runs would be given."""
    slots, gpus = devices(runs[0].cfg.runtime.device, workers)
    need = max(r.cfg.runtime.processes for r in runs)
    at_once = len(slots) // need
    if not at_once:
        return (f"would not train them here: runtime.processes={need} needs {need} "
                f"{'CUDA devices' if gpus else 'CPU slots'} per run, this machine has {len(slots)} (launcher=slurm "
                "spreads them over nodes)")
    return (f"would train them one run per {need} {'GPUs' if gpus else 'CPU processes'} ({at_once} at a time on "
            f"{len(slots)} {'CUDA devices' if gpus else 'CPU slots'})")


def run_groups(runs, workers: int | None = None, show_progress: bool = True) -> dict:
    """Train each run on its K devices, as many at once as the devices allow; run id -> final state."""
    check_devices(runs, workers)
    slots, gpus = devices(runs[0].cfg.runtime.device, workers)
    for run in runs:
        with open_dict(run.cfg):
            run.cfg.runtime.progress = False
            run.cfg.runtime.threads = 1
    pending = sorted(runs, key=lambda r: -int(r.cfg.train.total_steps))
    running: dict[str, tuple] = {}  # run id -> (run, its rank processes, its devices)
    results, free = {}, list(slots)
    with tempfile.TemporaryDirectory(prefix="memsweep-ranks-") as tmp, LiveProgress(runs, show_progress) as progress:
        try:
            while pending or running:
                while (started := take(pending, free)) is not None:
                    run, group = started
                    path = Path(tmp) / f"{run.run_id}.json"
                    path.write_text(json.dumps(container(run.cfg)))
                    env = {"CUDA_VISIBLE_DEVICES": ",".join(group)} if gpus else {}
                    procs = distributed.start([sys.executable, "-m", "memsweep.sweeps.groups", str(path)],
                                              int(run.cfg.runtime.processes), env)
                    running[run.run_id] = (run, procs, group)
                for run_id, (run, procs, group) in list(running.items()):
                    if any(p.poll() is None for p in procs) and not any(p.returncode for p in procs):
                        continue
                    code, message = distributed.ended(procs)
                    if message:
                        log.error("run %s: %s", run_id, message)
                    results[run_id] = run.store.status().get("state", State.FAILED if code else State.FINISHED)
                    free.extend(group)
                    del running[run_id]
                progress.refresh()
                time.sleep(0.5)
        except Interrupted as e:  # SIGTERM or Ctrl-C to this launcher: each run's ranks checkpoint and stop
            for run, procs, _ in running.values():
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
            for run_id, (run, procs, _) in running.items():
                distributed.ended(procs)
                results[run_id] = run.store.status().get("state", State.STOPPED)
            for run in pending:
                results[run.run_id] = State.STOPPED
            e.add_note(f"{sum(s == State.STOPPED for s in results.values())} of {len(runs)} runs stopped "
                       "(checkpointed at their current step or not started)")
            raise
    return results


def rank_main(path: str) -> int:
    """One rank of a run the group launcher started (torchrun's environment): train it, stop between two steps
    on SIGTERM or Ctrl-C (exit 143 / 130)."""
    cfg = json.loads(Path(path).read_text())
    with interruptible(STOP_SIGNALS):
        try:
            TrainJob(cfg)()
        except Interrupted as e:
            return e.exit_status
        except RankLost as e:  # another rank died: one line (the launcher names it)
            log.error("%s", e)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(rank_main(sys.argv[1]))
