"""Modules memsweep loads when it needs them rather than when it starts: torch takes seconds to import, and so
do matplotlib, pandas and wandb, while the commands a researcher runs every few minutes (`--help`, `status`,
`--cfg job`, a planned dry run) need none of them. The one place memsweep imports a module by name at run time:
the command table of memsweep.cli, the device groups of a local sweep of runs on several processes
(sweeps.groups: torch counts the GPUs), a user's network named by `_target_` (its own import loads torch anyway), a
FLOP count not yet kept (sweeps.cost), torchvision for the count of the Inception network (sweeps.flops), the
modules of data sources read from files (data.sources: PIL and numpy, for data=folder or npz only), and, in
modules that load torch or pandas anyway, what is slow to import on top of them and only some runs use:
torchmetrics' image metrics (~2 s; metrics.kid, metrics.mifid: runs with eval.kid_features or mifid_features),
torchvision (~1 s; eval.evaluator's sample grid, which `memsweep eval` never saves, and data.datasets' CIFAR-10
download, data.download=true only) and wandb (~0.3 s; train.wandb_logger with logger=wandb,
report.wandb_report when `memsweep report` logs to wandb).
"""
from __future__ import annotations

import importlib
from types import ModuleType


def load(module: str) -> ModuleType:
    """The module `module` (a dotted name), imported on first use."""
    return importlib.import_module(module)
