"""The training loop: one function, read top to bottom.

Rectified flow on the first n images, Adam, an EMA of the weights, evaluations at log-spaced steps.
"To resume, run the same command again": the run directory holds the latest checkpoint (model, EMA,
optimizer, RNG state, step), and a resumed run produces exactly the rows an uninterrupted run would.
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
from .store import RunStore, failpoint

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


class Session:
    """The state of a run in progress; `checkpoint()` may be called from a signal handler between steps."""

    def __init__(self, cfg, store, model, ema, opt, gen, step):
        self.cfg, self.store, self.model, self.ema, self.opt, self.gen, self.step = cfg, store, model, ema, opt, gen, step
        self.keep_steps = set()  # checkpoints kept for `memsweep eval`

    def state(self) -> dict:
        return {"step": self.step, "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.opt.state_dict(), "generator": self.gen.get_state()}

    def checkpoint(self) -> None:
        self.store.save_checkpoint(self.state(), self.step, self.cfg.runtime.keep_checkpoints, self.keep_steps)


def train(cfg, guard: SignalGuard | None = None, on_session=None, job_id: str | None = None,
          lock_wait_s: float = 0.0) -> dict:
    """Train (or resume, or skip if finished) the run `cfg` describes. Returns its status."""
    guard = guard or SignalGuard()
    store = RunStore(config_mod.run_dir(cfg))
    with store.lock(lock_wait_s):
        status = store.status()
        if status["state"] in ("finished", "diverged"):
            log.info("run %s is already %s; nothing to do", store.run_id, status["state"])
            return status
        try:
            return _train(cfg, store, status, guard, on_session, job_id)
        except BaseException as e:  # anything, setup included: status.json says so (a kill or exit is no failure)
            if not isinstance(e, (KeyboardInterrupt, SystemExit)):
                store.set_status(state="failed", error=f"{type(e).__name__}: {e}")
            raise


def _train(cfg, store: RunStore, status: dict, guard: SignalGuard, on_session, job_id) -> dict:
    """Set the run up (or restore it) and train it; called with the run's lock held."""
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    device = pick_device(cfg.runtime.device)
    total = cfg.train.total_steps
    schedule = set(eval_steps(total, cfg.eval.first_step, cfg.eval.num_points))

    # -- data, model, optimizer, random stream ---------------------------------------------------
    torch.manual_seed(cfg.seed)
    data = data_mod.load(cfg.data).to(device)
    n, batch_size, null_label = len(data.train_x), cfg.train.batch_size, data.num_classes
    model = unet.build(cfg.model, cfg.data.image_size, cfg.data.channels, data.num_classes).to(device)
    if cfg.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).requires_grad_(False)
    # the compiled callable trains; `model` keeps the plain parameter names for checkpoints
    net = model if not cfg.runtime.compile else torch.compile(
        model, **({} if cfg.runtime.compile is True else {"backend": cfg.runtime.compile}))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                           eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay,
                           fused=bool(cfg.runtime.fused_adam))
    gen = torch.Generator(device).manual_seed(cfg.seed)
    session = Session(cfg, store, model, ema, opt, gen, step=0)

    ckpt = store.load_latest_checkpoint(map_location=device)
    if ckpt is not None:  # resume: restore everything, and forget rows written after this checkpoint
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["generator"].cpu())  # generator states are CPU byte tensors
        session.step = ckpt["step"]
        store.keep_metrics_until(session.step)
        log.info("run %s: resuming from step %d", store.run_id, session.step)
    else:
        store.write_config(cfg)
        store.keep_metrics_until(0)
    evaluator = Evaluator(cfg, data, device)
    logger = make_logger(cfg, store.run_id, store.dir)
    store.set_status(state="running", step=session.step, total_steps=total, run_id=store.run_id,
                     host=socket.gethostname(), pid=os.getpid(), job_id=job_id or status.get("job_id"),
                     started=status.get("started", time.time()), error=None,
                     parameters=unet.count_parameters(model))
    if on_session:
        on_session(session)

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.train.dtype == "bfloat16")
    running_loss = torch.zeros((), device=device)
    bar = tqdm(total=total, initial=session.step, disable=not cfg.runtime.progress,
               desc=f"run {store.run_id} n={cfg.data.n}", dynamic_ncols=True, mininterval=1.0)
    try:
        while session.step < total:
            with guard.hold():
                # -- one step of rectified flow ----------------------------------------------
                idx = torch.randint(n, (batch_size,), device=device, generator=gen)
                x1, labels = data.train_x[idx], data.train_y[idx]
                if cfg.runtime.channels_last:
                    x1 = x1.contiguous(memory_format=torch.channels_last)
                x0 = torch.randn(x1.shape, device=device, generator=gen)
                t = torch.rand(batch_size, device=device, generator=gen)
                drop = torch.rand(batch_size, device=device, generator=gen) < cfg.train.label_dropout
                labels = torch.where(drop, torch.full_like(labels, null_label), labels)
                with autocast:
                    loss = loss_per_sample(net, x1, labels, x0, t).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optim.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                opt.step()
                failpoint("step")
                beta = min(cfg.train.ema_decay, (1 + session.step) / (10 + session.step))
                torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - beta)
                session.step += 1
                step = session.step
                running_loss += loss.detach()

                if step in schedule or step % 50 == 0:  # a sync, so only now and then
                    if not math.isfinite(running_loss.item()):
                        log.error("run %s diverged (non-finite loss) by step %d", store.run_id, step)
                        logger.summary({"diverged_step": step})
                        logger.finish()
                        return store.set_status(state="diverged", step=step, diverged_step=step)
                    running_loss.zero_()
                if step in schedule:  # -- evaluation ------------------------------------------
                    eval_model = ema if cfg.eval.use_ema else model
                    row, samples, nn_idx = evaluator(eval_model, step)
                    failpoint("eval")
                    evaluator.save_grid(store.samples_dir / f"step_{step:09d}.png", samples, nn_idx)
                    if cfg.eval.save_samples:  # for metrics computed after the fact (memsweep eval)
                        store.save_samples(step, samples, evaluator.sample_labels)
                    if cfg.eval.save_weights:
                        store.save_eval_weights(step, eval_model.state_dict())
                    store.append_metrics(row)
                    logger.log(row)
                    bar.set_postfix(gap=f"{row['loss_gap']:.4f}", mem=f"{row['mem_ratio']:.2f}", refresh=False)
                if step in schedule or step % cfg.runtime.checkpoint_every == 0:
                    session.checkpoint()
                    store.set_status(step=step)
            bar.update(1)
    finally:
        bar.close()
    rows = store.read_metrics()
    logger.summary({**{k: v for k, v in rows[-1].items() if not isinstance(v, list)},
                    **run_summary(rows, getattr(logger, "norm", 1.0))})
    logger.finish()
    return store.set_status(state="finished", step=session.step, finished=time.time())
