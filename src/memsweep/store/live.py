"""Whether a run is really being trained: the recorded state, corrected for processes that died without saying
so, and for Slurm jobs that are gone."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess

from memsweep.states import State


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:
        return True


def slurm_job_active(job_id) -> bool:
    """True if Slurm still has the job pending or running (False when there is no Slurm to ask)."""
    if not job_id or not shutil.which("squeue"):
        return False
    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                             timeout=20).stdout
    except (subprocess.SubprocessError, OSError):
        return False
    return bool(out.strip())


def live_state(status: dict) -> str:
    """The recorded state, corrected for processes that died without saying so."""
    state = status.get("state", State.PENDING)
    if state == State.RUNNING and status.get("host") == socket.gethostname() and not status.get("job_id"):
        return State.RUNNING if _pid_alive(status.get("pid")) else State.STOPPED
    return state


def slurm_active_jobs() -> set[str]:
    """Every job Slurm has pending or running, array tasks one by one (123_4, as submitit names them): one
    squeue for a whole sweep instead of one per run. Empty when there is no Slurm to ask."""
    if not shutil.which("squeue"):
        return set()
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=60).stdout
    except (subprocess.SubprocessError, OSError):
        return set()
    return set(out.split())


def needs_slurm(status: dict) -> bool:
    """Whether only Slurm can tell if this run is active (is_active asks it)."""
    return live_state(status) in (State.QUEUED, State.RUNNING) and bool(status.get("job_id"))


def is_active(status: dict, active_jobs: set[str] | None = None) -> bool:
    """A run that some process or Slurm job is training or about to train. `active_jobs`: what
    slurm_active_jobs() said, for many runs at once (else squeue is asked about this run's job)."""
    state = live_state(status)
    if state == State.RUNNING and not status.get("job_id"):
        return True
    if needs_slurm(status):
        return slurm_job_active(status["job_id"]) if active_jobs is None else str(status["job_id"]) in active_jobs
    return False
