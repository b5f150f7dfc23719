"""Weights & Biases logging (or none). The local run store is the record; wandb mirrors it.

The wandb run id is memsweep's run id and runs are resumed with resume="allow", so a resumed or requeued run
continues the same wandb run. Metrics use `step` as their x axis (define_metric) instead of wandb's internal
step, so re-logging an evaluation after a resume is harmless.
"""
from __future__ import annotations

import os

from omegaconf import OmegaConf

from memsweep import lazy
from memsweep.science.normalized_time import normalization_factor


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def loggable(row: dict) -> dict:
    """Lists (the loss per t bin) become one scalar per bin."""
    out = {}
    for k, v in row.items():
        if isinstance(v, (list, tuple)):
            out.update({f"{k}/{i}": x for i, x in enumerate(v)})
        else:
            out[k] = v
    return out


class NullLogger:
    def log(self, row: dict) -> None: ...
    def summary(self, values: dict) -> None: ...
    def finish(self) -> None: ...


class WandbLogger:
    def __init__(self, cfg, run_id: str, run_dir, extra_config: dict | None = None):
        wandb = lazy.load("wandb")  # loaded here: ~0.3 s of import that runs with logger=none skip

        lg = cfg.logger
        os.environ.setdefault("WANDB_SILENT", "true")
        # A run owns its wandb service. One inherited from the launching process (WANDB_SERVICE, e.g. a
        # notebook or test that used wandb, exported to every Slurm job) outlives a killed attempt with its
        # stream still open, and the requeued attempt's init then fails with "run ID ... is in use".
        os.environ.pop("WANDB_SERVICE", None)
        config = flatten(OmegaConf.to_container(cfg, resolve=True))
        config.update({f"axis.{k}": v for k, v in (lg.get("axes") or {}).items()})  # the swept values, flat
        config.update(extra_config or {})
        self.run = wandb.init(project=lg.project, entity=lg.entity, group=lg.group, tags=list(lg.tags),
                              id=run_id, name=run_id, resume="allow", mode=lg.mode, dir=str(run_dir),
                              config=config, settings=wandb.Settings(console="off", reinit="create_new"))  # a pack logs K runs at once
        self.run.define_metric("step")
        self.run.define_metric("norm_step")  # pick it as the x axis in the UI for the collapse plots
        self.run.define_metric("*", step_metric="step")
        ref = lg.get("reference")   # the sweep's smallest n, B, lr (sweeps.spec)
        self.norm = 1.0 if not ref else float(normalization_factor(cfg.data.n, cfg.train.batch_size, cfg.optim.lr,
                                                                   ref["n"], ref["batch_size"], ref["lr"]))

    def log(self, row: dict) -> None:
        self.run.log({**loggable(row), "norm_step": row["step"] * self.norm})

    def summary(self, values: dict) -> None:
        for k, v in values.items():
            self.run.summary[k] = v

    def finish(self) -> None:
        self.run.finish()


def make_logger(cfg, run_id: str, run_dir, extra_config: dict | None = None):
    if cfg.logger.name == "none" or cfg.logger.get("mode") == "disabled":
        return NullLogger()
    return WandbLogger(cfg, run_id, run_dir, extra_config)
