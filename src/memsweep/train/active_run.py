"""One run in progress (class Run): its data, model, EMA, optimizer, random stream, evaluations, checkpoints and status.

"To resume, run the same command again": the run directory holds the latest checkpoint (model, EMA,
optimizer, RNG state, step), and a resumed run produces exactly the rows an uninterrupted run would.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import socket
import time

import torch

from memsweep.data.datasets import load_for_model
from memsweep.errors import ConfigError
from memsweep.eval.evaluator import Evaluator
from memsweep.science import objective, networks, unet
from memsweep.science.curves import analyze_run, metrics_frame
from memsweep.store.cache import data_cache
from memsweep.store.files import failpoint
from memsweep.store.run import RunStore
from memsweep.train import distributed
from memsweep.train.schedule import eval_steps
from memsweep.train.wandb_logger import NullLogger, make_logger
from memsweep.states import State

log = logging.getLogger("memsweep")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"runtime.device={name}: CUDA is not available on {socket.gethostname()}")
    return torch.device(name)


def run_summary(rows: list[dict], norm_factor: float = 1.0) -> dict:
    """The run's quantities of interest (tau_mem, crossings, mem_rate, best fidelity) for wandb's summary."""
    out = analyze_run(metrics_frame(rows), norm_factor)
    return {k: v for k, v in out.items() if isinstance(v, (int, float)) and math.isfinite(v)}


class Run:
    """One run in progress: its config, store, data, model, EMA, optimizer, random stream, step, evaluator and
    logger. `checkpoint()` may be called from a signal handler between steps. In a pack (memsweep.train.packed) the
    weights being trained live in the pack: `sync` copies them back into model, EMA and optimizer before
    anything reads those, so checkpoints and evaluations are the same whichever way the run is trained."""

    def __init__(self, cfg, store: RunStore, status: dict, device: torch.device, job_id: str | None):
        self.cfg, self.store, self.device = cfg, store, device
        # on several ranks (train.distributed) rank 0 alone evaluates and logs; the others' store writes nothing
        self.rank, self.world = distributed.rank_and_size()
        self.total = cfg.train.total_steps
        self.schedule = set(eval_steps(self.total, cfg.eval.first_step, cfg.eval.num_points))
        self.keep_steps = set()  # checkpoints kept for `memsweep eval`
        self.sync = lambda: None
        self.last_row, self.result = None, None  # the latest metrics row; the final status once done

        # -- data, model, optimizer, random stream ---------------------------------------------------
        torch.manual_seed(cfg.seed)
        self.data = load_for_model(cfg.data, data_cache(cfg)).to(device)   # unconditional (data.conditional=false): no classes
        # what the batches and the loss follow (the training target may need the training set)
        self.formulation = objective.of_config(cfg, self.data)
        self.model = networks.build(cfg.model, cfg.data.image_size, cfg.data.channels, self.data.num_classes).to(device)
        if cfg.runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                    eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay,
                                    fused=bool(cfg.runtime.fused_adam))
        self.gen = torch.Generator(device).manual_seed(cfg.seed)
        self.step = 0
        # seconds spent in training steps and in evaluations (status.json: where a run's time goes)
        self.seconds = {"train": 0.0, "eval": 0.0}

        ckpt = store.load_latest_checkpoint(map_location=device)
        if ckpt is not None:  # resume: restore everything, and forget rows written after this checkpoint
            self.model.load_state_dict(ckpt["model"])
            self.ema.load_state_dict(ckpt["ema"])
            self.opt.load_state_dict(ckpt["optimizer"])
            self.gen.set_state(ckpt["generator"].cpu())  # generator states are CPU byte tensors
            self.step = ckpt["step"]
            store.keep_metrics_until(self.step)
            self.seconds = {k: float(status.get(f"{k}_seconds") or 0.0) for k in self.seconds}
            log.info("run %s: resuming from step %d", store.run_id, self.step)
        else:
            store.write_config(cfg)
            store.keep_metrics_until(0)
        self.evaluator = Evaluator(cfg, self.data, device, eager=self.rank == 0)
        if ckpt is not None:   # the evaluation's parts accumulate across resumes, like train/eval seconds
            self.evaluator.seconds = {k: float(v) for k, v in (status.get("eval_seconds_by_part") or {}).items()}
        self.logger = make_logger(cfg, store.run_id, store.dir) if self.rank == 0 else NullLogger()
        self.running_loss = torch.zeros((), device=device)
        store.set_status(state=State.RUNNING, step=self.step, total_steps=self.total, run_id=store.run_id,
                         host=socket.gethostname(), pid=os.getpid(), job_id=job_id or status.get("job_id"),
                         started=status.get("started", time.time()), error=None, stopped_by=None,
                         parameters=unet.count_parameters(self.model), **self.timing())

    def state(self) -> dict:
        self.sync()
        return {"step": self.step, "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.opt.state_dict(), "generator": self.gen.get_state()}

    def checkpoint(self) -> None:
        self.store.save_checkpoint(self.state(), self.step, self.cfg.runtime.keep_checkpoints, self.keep_steps)

    def batch(self):
        """The next training batch from the run's own random stream: images, labels, noise, t (the noise and t
        as the run's formulation draws them)."""
        cfg, data, gen, device = self.cfg, self.data, self.gen, self.device
        batch_size = cfg.train.batch_size
        idx = torch.randint(len(data.train_x), (batch_size,), device=device, generator=gen)
        x1, labels = data.train_x[idx], data.train_y[idx]
        x0, t = self.formulation.draw(x1, gen)
        if not data.num_classes:   # unconditional: every label is already the null label
            return x1, labels, x0, t
        drop = torch.rand(batch_size, device=device, generator=gen) < cfg.train.label_dropout
        labels = torch.where(drop, torch.full_like(labels, data.num_classes), labels)
        return x1, labels, x0, t

    def ema_weight(self) -> float:
        """The EMA's lerp weight at this step: 1 - min(decay, (1 + s) / (10 + s)) (a warm-up)."""
        return 1 - min(self.cfg.train.ema_decay, (1 + self.step) / (10 + self.step))

    def advance(self, loss: torch.Tensor, seconds: float = 0.0) -> dict | None:
        """Count one training step (its loss and its share of the step's time), then evaluate, checkpoint or
        finish as the schedule says; the final status once the run is done."""
        self.seconds["train"] += seconds
        self.step += 1
        self.running_loss += loss
        return self.after_step()

    def after_step(self) -> dict | None:
        """Divergence check, evaluation and checkpoint after a step; the final status once the run is done."""
        cfg, store, step = self.cfg, self.store, self.step
        if step in self.schedule or step % 50 == 0:  # a sync, so only now and then
            if not math.isfinite(distributed.summed(self.running_loss).item()):  # every rank decides alike
                log.error("run %s diverged (non-finite loss) by step %d", store.run_id, step)
                self.logger.summary({"diverged_step": step})
                self.logger.finish()
                self.result = store.set_status(state=State.DIVERGED, step=step, diverged_step=step)
                return self.result
            self.running_loss.zero_()
        if step in self.schedule:  # -- evaluation: every rank takes its share, rank 0 writes the row -----------
            started = time.perf_counter()
            self.sync()
            eval_model = self.ema if cfg.eval.use_ema else self.model
            evaluated = self.evaluator(eval_model, step)
            if evaluated is not None:
                row, samples, nn_idx = evaluated
                failpoint("eval")
                with self.evaluator.timed("saving"):
                    self.evaluator.save_grid(store.path("grid", step), samples, nn_idx)
                    if cfg.eval.save_samples:  # for metrics computed after the fact (memsweep eval)
                        store.save_samples(step, samples, self.evaluator.sample_labels)
                    if cfg.eval.save_weights:
                        store.save_eval_weights(step, eval_model.state_dict())
                store.append_metrics(row)
                self.logger.log(row)
                self.last_row = row
            self.seconds["eval"] += time.perf_counter() - started
        if step in self.schedule or step % cfg.runtime.checkpoint_every == 0:
            self.checkpoint()
            store.set_status(step=step, **self.timing())
        return self.finish() if step >= self.total else None

    def timing(self) -> dict:
        """status.json's record of where the run's time went: train_seconds, eval_seconds, and the evaluations'
        seconds by part (losses, field_dist, sampling, mem_ratio, copy, sw, fd, saving)."""
        return {**{f"{k}_seconds": round(v, 3) for k, v in self.seconds.items()},
                "eval_seconds_by_part": {k: round(v, 3) for k, v in self.evaluator.seconds.items()}}

    def finish(self) -> dict:
        rows = self.store.read_metrics()
        if self.rank == 0:
            self.logger.summary({**{k: v for k, v in rows[-1].items() if not isinstance(v, list)},
                                 **run_summary(rows, getattr(self.logger, "norm", 1.0))})
        self.logger.finish()
        self.result = self.store.set_status(state=State.FINISHED, step=self.step, finished=time.time(), **self.timing())
        return self.result


