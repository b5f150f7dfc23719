"""A run's states, as status.json records them. A bottom layer: the curve fits (science) and the store both
need to know which runs finished."""
from __future__ import annotations

import enum


class State(str, enum.Enum):
    """A run's state in status.json (the strings on disk)."""
    PENDING = "pending"      # nothing written yet
    QUEUED = "queued"        # submitted to Slurm, not started
    RUNNING = "running"
    STOPPED = "stopped"      # recorded as running by a process that is gone (store.live)
    FINISHED = "finished"
    FAILED = "failed"
    DIVERGED = "diverged"    # non-finite loss: finished as far as a sweep is concerned

    __str__ = str.__str__      # print and format as the string on disk
    __format__ = str.__format__


DONE = (State.FINISHED, State.DIVERGED)   # nothing more to train
