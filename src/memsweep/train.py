"""The training loop: one function, read top to bottom.

Rectified flow on the first n images, Adam, an EMA of the weights, evaluations at log-spaced steps.
"To resume, run the same command again": the run directory holds the latest checkpoint (model, EMA,
optimizer, RNG state, step), and a resumed run produces exactly the rows an uninterrupted run would.

The loop (`_train_loop`) trains one run (`SoloStep`) or a pack of runs that share an architecture
(memsweep.packed.PackedStep, one network for all): only the step differs. Everything else a run does -- its
batches, evaluations, checkpoints, status, divergence check, resuming -- is `Run`'s, the same for both.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import signal
import socket
import time

import numpy as np
import torch
from tqdm import tqdm

from . import config as config_mod
from . import data as data_mod
from . import unet
from .evaluate import Evaluator
from .flow import loss_per_sample
from .analysis import analyze_run, metrics_frame
from .logger import make_logger
from .store import ELSEWHERE, RunLocked, RunStore, failpoint

log = logging.getLogger("memsweep")


def eval_steps(total: int, first: int, num: int) -> list[int]:
    """`num` log-spaced steps from `first` to `total`, rounded and deduplicated; `total` always included."""
    first = min(max(1, first), total)
    steps = np.unique(np.round(np.geomspace(first, total, num)).astype(int)).tolist()
    return sorted(set(steps) | {total})


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise config_mod.ConfigError(f"runtime.device={name}: CUDA is not available on {socket.gethostname()}")
    return torch.device(name)


def run_summary(rows: list[dict], norm_factor: float = 1.0) -> dict:
    """The run's quantities of interest (tau_mem, crossings, mem_rate, best fidelity) for wandb's summary."""
    out = analyze_run(metrics_frame(rows), norm_factor)
    return {k: v for k, v in out.items() if isinstance(v, (int, float)) and math.isfinite(v)}


class SignalGuard:
    """Holds back the handlers of the given signals (e.g. submitit's USR2 checkpoint-and-requeue) while a step
    or an evaluation runs, and runs them right after it, so a checkpoint taken from a signal handler always
    sees a consistent state between two steps.

    This wraps the Python-level handlers rather than masking signals with pthread_sigmask: the OS may deliver
    a process-directed signal to any thread that does not mask it, while Python always runs handlers in the
    main thread, between bytecodes, where a flag can defer them."""

    def __init__(self, signals=()):
        self.handlers, self.pending, self.busy = {}, [], False
        for sig in signals:
            original = signal.getsignal(sig)
            if callable(original):
                self.handlers[sig] = original
                signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.busy:
            self.pending.append(signum)
        else:
            self.handlers[signum](signum, frame)

    @contextlib.contextmanager
    def hold(self):
        self.busy = True
        try:
            yield
        finally:
            self.busy = False
            while self.pending:
                signum = self.pending.pop(0)
                self.handlers[signum](signum, None)


class Run:
    """One run in progress: its config, store, data, model, EMA, optimizer, random stream, step, evaluator and
    logger. `checkpoint()` may be called from a signal handler between steps. In a pack (memsweep.packed) the
    weights being trained live in the pack: `sync` copies them back into model, EMA and optimizer before
    anything reads those, so checkpoints and evaluations are the same whichever way the run is trained."""

    def __init__(self, cfg, store: RunStore, status: dict, device: torch.device, job_id: str | None):
        self.cfg, self.store, self.device = cfg, store, device
        self.total = cfg.train.total_steps
        self.schedule = set(eval_steps(self.total, cfg.eval.first_step, cfg.eval.num_points))
        self.keep_steps = set()  # checkpoints kept for `memsweep eval`
        self.sync = lambda: None
        self.last_row, self.result = None, None  # the latest metrics row; the final status once done

        # -- data, model, optimizer, random stream ---------------------------------------------------
        torch.manual_seed(cfg.seed)
        self.data = data_mod.load(cfg.data).to(device)
        self.model = unet.build(cfg.model, cfg.data.image_size, cfg.data.channels, self.data.num_classes).to(device)
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
        self.evaluator = Evaluator(cfg, self.data, device)
        self.logger = make_logger(cfg, store.run_id, store.dir)
        self.running_loss = torch.zeros((), device=device)
        store.set_status(state="running", step=self.step, total_steps=self.total, run_id=store.run_id,
                         host=socket.gethostname(), pid=os.getpid(), job_id=job_id or status.get("job_id"),
                         started=status.get("started", time.time()), error=None,
                         parameters=unet.count_parameters(self.model), **self.timing())

    def state(self) -> dict:
        self.sync()
        return {"step": self.step, "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.opt.state_dict(), "generator": self.gen.get_state()}

    def checkpoint(self) -> None:
        self.store.save_checkpoint(self.state(), self.step, self.cfg.runtime.keep_checkpoints, self.keep_steps)

    def batch(self):
        """The next training batch from the run's own random stream: images, labels, noise, t."""
        cfg, data, gen, device = self.cfg, self.data, self.gen, self.device
        batch_size = cfg.train.batch_size
        idx = torch.randint(len(data.train_x), (batch_size,), device=device, generator=gen)
        x1, labels = data.train_x[idx], data.train_y[idx]
        x0 = torch.randn(x1.shape, device=device, generator=gen)
        t = torch.rand(batch_size, device=device, generator=gen)
        drop = torch.rand(batch_size, device=device, generator=gen) < cfg.train.label_dropout
        labels = torch.where(drop, torch.full_like(labels, data.num_classes), labels)
        return x1, labels, x0, t

    def ema_weight(self) -> float:
        """The EMA's lerp weight at this step: 1 - min(decay, (1 + s) / (10 + s)) (a warm-up)."""
        return 1 - min(self.cfg.train.ema_decay, (1 + self.step) / (10 + self.step))

    def after_step(self) -> dict | None:
        """Divergence check, evaluation and checkpoint after a step; the final status once the run is done."""
        cfg, store, step = self.cfg, self.store, self.step
        if step in self.schedule or step % 50 == 0:  # a sync, so only now and then
            if not math.isfinite(self.running_loss.item()):
                log.error("run %s diverged (non-finite loss) by step %d", store.run_id, step)
                self.logger.summary({"diverged_step": step})
                self.logger.finish()
                self.result = store.set_status(state="diverged", step=step, diverged_step=step)
                return self.result
            self.running_loss.zero_()
        if step in self.schedule:  # -- evaluation ----------------------------------------------------
            started = time.perf_counter()
            self.sync()
            eval_model = self.ema if cfg.eval.use_ema else self.model
            row, samples, nn_idx = self.evaluator(eval_model, step)
            failpoint("eval")
            self.evaluator.save_grid(store.samples_dir / f"step_{step:09d}.png", samples, nn_idx)
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
        return {f"{k}_seconds": round(v, 3) for k, v in self.seconds.items()}

    def finish(self) -> dict:
        rows = self.store.read_metrics()
        self.logger.summary({**{k: v for k, v in rows[-1].items() if not isinstance(v, list)},
                             **run_summary(rows, getattr(self.logger, "norm", 1.0))})
        self.logger.finish()
        self.result = self.store.set_status(state="finished", step=self.step, finished=time.time(), **self.timing())
        return self.result


def compiled(model, cfg):
    """The callable that trains: `model`, or torch.compile(model) (model keeps the plain names for checkpoints)."""
    if not cfg.runtime.compile:
        return model
    return torch.compile(model, **({} if cfg.runtime.compile is True else {"backend": cfg.runtime.compile}))


class SoloStep:
    """One training step of one run: rectified flow, Adam, EMA."""

    def __init__(self, run: Run):
        self.runs, self.run = [run], run
        self.net = compiled(run.model, run.cfg)
        self.autocast = torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.cfg.train.dtype == "bfloat16")
        self.ema_params, self.params = list(run.ema.parameters()), list(run.model.parameters())  # once, not per step

    def step(self) -> torch.Tensor:
        run, cfg = self.run, self.run.cfg
        x1, labels, x0, t = run.batch()
        if cfg.runtime.channels_last:
            x1 = x1.contiguous(memory_format=torch.channels_last)
        with self.autocast:
            loss = loss_per_sample(self.net, x1, labels, x0, t).mean()
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.optim.grad_clip)
        run.opt.step()
        failpoint("step")
        torch._foreach_lerp_(self.ema_params, self.params, run.ema_weight())
        return loss.detach().view(1)

    def leave(self, run: Run) -> None:
        self.runs = []

    def checkpoint(self) -> None:  # from a signal handler, between two steps
        for run in self.runs:
            run.checkpoint()


def train(cfg, guard: SignalGuard | None = None, on_session=None, job_id: str | None = None,
          lock_wait_s: float = 0.0) -> dict:
    """Train (or resume, or skip if finished) the run `cfg` describes. Returns its status."""
    return train_runs([cfg], guard, on_session, job_id, lock_wait_s)[0]


def train_runs(cfgs, guard: SignalGuard | None = None, on_session=None, job_id: str | None = None,
               lock_wait_s: float = 0.0) -> list[dict]:
    """Train (or resume, or skip if finished) runs in this process: one alone, or several packed into one
    network (memsweep.packed; they must share a pack_key). Returns each run's status, in the order given.
    `on_session` receives the stepper, whose `checkpoint()` saves every run in training (submitit's requeue).
    `lock_wait_s`: how long to wait for a run's lock (a requeued job's previous attempt may still be exiting)."""
    guard = guard or SignalGuard()
    results: list[dict | None] = [None] * len(cfgs)
    with contextlib.ExitStack() as locks:
        todo = []
        for i, cfg in enumerate(cfgs):
            store = RunStore(config_mod.run_dir(cfg))
            try:
                locks.enter_context(store.lock(lock_wait_s))
            except RunLocked as e:
                if len(cfgs) == 1:
                    raise
                log.warning("%s; left to it, the pack trains the others", e)  # another sweep shares this run
                results[i] = {**store.status(), "state": ELSEWHERE}
                continue
            status = store.status()
            if status["state"] in ("finished", "diverged"):
                log.info("run %s is already %s; nothing to do", store.run_id, status["state"])
                results[i] = status
            else:
                todo.append((i, cfg, store, status))
        if not todo:
            return results
        first = todo[0][1]
        if first.runtime.threads:
            torch.set_num_threads(first.runtime.threads)
        device = pick_device(first.runtime.device)
        runs = []
        try:
            for i, cfg, store, status in todo:
                runs.append(Run(cfg, store, status, device, job_id))
            _train_loop(runs, guard, on_session)
        except BaseException as e:
            if not isinstance(e, (KeyboardInterrupt, SystemExit)):  # setup included: status.json says so
                for k, (_, _, store, _) in enumerate(todo):
                    if k >= len(runs) or runs[k].result is None:
                        store.set_status(state="failed", error=f"{type(e).__name__}: {e}")
            raise
        for (i, *_), run in zip(todo, runs):
            results[i] = run.result
    return results


def _train_loop(runs: list[Run], guard: SignalGuard, on_session) -> None:
    if len(runs) == 1:
        stepper = SoloStep(runs[0])
    else:
        from .packed import PackedStep
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
               disable=not cfg.runtime.progress, dynamic_ncols=True, mininterval=1.0)
    with bar:
        while stepper.runs:
            with guard.hold():
                active = list(stepper.runs)
                # on a GPU, kernels run ahead of the clock: their time is counted at the next synchronisation
                # (the loss check every 50 steps, an evaluation), so train_seconds is then approximate
                started = time.perf_counter()
                losses = stepper.step()  # one training step of every run in training
                seconds = (time.perf_counter() - started) / len(active)
                for run, loss in zip(active, losses):
                    run.seconds["train"] += seconds
                    run.step += 1
                    run.running_loss += loss
                    if run.after_step() is not None:
                        stepper.leave(run)
                    elif run.step in run.schedule:
                        bar.set_postfix(gap=f"{run.last_row['loss_gap']:.4f}", mem=f"{run.last_row['mem_ratio']:.2f}",
                                        refresh=False)
            bar.update(len(active))
