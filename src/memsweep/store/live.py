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


def is_active(status: dict) -> bool:
    """A run that some process or Slurm job is training or about to train."""
    state = live_state(status)
    if state == State.RUNNING and not status.get("job_id"):
        return True
    if state in (State.QUEUED, State.RUNNING) and status.get("job_id"):
        return slurm_job_active(status["job_id"])
    return False
