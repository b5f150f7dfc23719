"""memsweep's folder in the user's cache: $XDG_CACHE_HOME/memsweep, else ~/.cache/memsweep.

What is kept there is made again when it is missing (the FLOP counts of dry runs: sweeps.cost; Hydra's
compositions: store.compositions), so the folder is safe to delete. Never the output root: what is kept depends on
the code and the configs, not on the runs, and commands that only plan write nothing there."""
from __future__ import annotations

import os
from pathlib import Path


def folder() -> Path:
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(home).expanduser() / "memsweep"
