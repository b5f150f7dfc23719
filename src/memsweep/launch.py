"""Where queued Slurm jobs find their class: submitit pickles a job's callable by its import path, and jobs
submitted before memsweep's packages were laid out by layer name `memsweep.launch.TrainJob`. Such a job must
still start (and requeue) after an upgrade, so this name stays."""
from memsweep.sweeps.jobs import TrainJob  # noqa: F401  (re-exported on purpose)

__all__ = ["TrainJob"]
