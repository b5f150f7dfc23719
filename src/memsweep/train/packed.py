"""Packed training: K runs that share an architecture and a batch size, trained as one network in one process.

A sweep over n (or seeds) trains many copies of one small U-Net, and one such model cannot keep a CPU core
busy: its convolutions have 12-48 channels on 8x8 images, so a step is mostly small kernels and per-op
overhead. A pack builds the K models as one `unet.UNet(copies=K)` (grouped convolutions, channels-last, which
measured fastest on CPU), so each kernel does K models' work. Only the step differs from training alone
(`train.SoloStep`): each run keeps its own data, random stream (its batches are drawn by `train.Run.batch`),
Adam state and step count, EMA, evaluations, checkpoints and run directory, and `train.Run` does all of that
for both paths. Before anything reads a run's model, EMA or optimizer (a checkpoint, an evaluation), the
pack copies the run's slice back into them (`Run.sync`), so a packed run writes the files a run trained
alone writes (same checkpoint format: either path resumes the other) with the same numbers within float
tolerance (grouped kernels sum in another order).

Runs of different lengths pack: a run that finishes (or diverges) leaves the pack, which is rebuilt with the
others. Which runs can share a pack (`pack_key`): the same model config, image shape and classes, batch size,
precision, device and runtime options, formulation, and no dropout (dropout draws from the global random stream, which K
runs cannot share), and memsweep's U-Net (a network named by `_target_`, science.networks, trains alone). Data, seed,
optimizer settings, EMA decay, label dropout, evaluation settings and length may differ. Runtime options:
train.dtype=bfloat16 (autocast), runtime.fused_adam and runtime.compile apply to the pack as to one run (compile
again whenever a run leaves); runtime.channels_last does not matter, a pack is always channels-last.
"""
from __future__ import annotations

import math

import torch
from torch.optim.adam import adam

from memsweep.science import networks
from memsweep.store.files import failpoint
from memsweep.train.active_run import Run
from memsweep.train.packing import pack_key
from memsweep.train.solo import compiled


def rows(t: torch.Tensor, copies: int) -> torch.Tensor:
    """A packed parameter (K * d0, ...) seen as (K, d0, ...): entry k is copy k's parameter."""
    return t.unflatten(0, (copies, -1))


class PackedStep:
    """One training step of every run of a pack; `leave` takes a finished run out."""

    def __init__(self, runs: list[Run]):
        self.runs = list(runs)
        cfg = runs[0].cfg
        if pack_key(cfg) is None or len({pack_key(r.cfg) for r in runs}) > 1:
            raise ValueError("these runs cannot share a pack (architecture, batch size, precision, device or "
                             "runtime options differ, or dropout > 0); see memsweep.train.packing.pack_key")
        self.autocast = torch.autocast(runs[0].device.type, dtype=torch.bfloat16, enabled=cfg.train.dtype == "bfloat16")
        self.fused = bool(cfg.runtime.fused_adam)
        self.formulation = runs[0].formulation  # one per pack (pack_key)
        self._pack()

    def _pack(self) -> None:
        """Build the packed network, EMA and Adam state from the runs' own (the state of a run, resumed or not)."""
        runs, K, first = self.runs, len(self.runs), self.runs[0]
        model = networks.build(first.cfg.model, first.cfg.data.image_size, first.cfg.data.channels,
                           first.data.num_classes, copies=K)
        self.model = model.to(first.device, memory_format=torch.channels_last)
        self.net = compiled(self.model, first.cfg)
        self.params = list(self.model.parameters())
        self.ema = [torch.zeros_like(p) for p in self.params]
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        with torch.no_grad():
            for k, run in enumerate(runs):
                for i, (own, own_ema) in enumerate(zip(run.model.parameters(), run.ema.parameters())):
                    rows(self.params[i], K)[k].copy_(own)
                    rows(self.ema[i], K)[k].copy_(own_ema)
                    state = run.opt.state.get(own, {})
                    if "exp_avg" in state:
                        rows(self.exp_avg[i], K)[k].copy_(state["exp_avg"])
                        rows(self.exp_avg_sq[i], K)[k].copy_(state["exp_avg_sq"])
                run.sync = lambda run=run: self._sync(self.runs.index(run))

    def _sync(self, k: int) -> None:
        """Copy run k's slice of the pack into its own model, EMA and Adam state (as torch.optim.Adam keeps it)."""
        run, K = self.runs[k], len(self.runs)
        with torch.no_grad():
            for i, (own, own_ema) in enumerate(zip(run.model.parameters(), run.ema.parameters())):
                own.copy_(rows(self.params[i], K)[k])
                own_ema.copy_(rows(self.ema[i], K)[k])
                if run.step:
                    run.opt.state[own] = {
                        "step": torch.tensor(float(run.step), device=own.device if self.fused else "cpu"),
                        "exp_avg": torch.empty_like(own).copy_(rows(self.exp_avg[i], K)[k]),
                        "exp_avg_sq": torch.empty_like(own).copy_(rows(self.exp_avg_sq[i], K)[k])}

    def leave(self, run: Run) -> None:
        for k in range(len(self.runs)):
            self._sync(k)
        run.sync = lambda: None
        self.runs.remove(run)
        if self.runs:
            self._pack()

    def checkpoint(self) -> None:  # from a signal handler, between two steps
        for run in self.runs:
            run.checkpoint()

    def step(self) -> torch.Tensor:
        """Each run's batch from its own stream, one forward and backward of the pack, each run's Adam and EMA.
        Returns the K losses."""
        x1, labels, x0, t = (torch.stack(parts, dim=1) for parts in zip(*[run.batch() for run in self.runs]))
        with self.autocast:
            losses = self.formulation.loss_per_sample(self.net, x1, labels, x0, t).mean(0)  # (K,): each run's mean loss
        for p in self.params:
            p.grad = None
        losses.sum().backward()  # copy k's gradient is that of its own loss
        with torch.no_grad():
            self._clip()
            self._adam()
            failpoint("step")
            self._ema()
        return losses.detach()

    def _clip(self) -> None:
        """torch.nn.utils.clip_grad_norm_ of each run that asks for it, on its own gradient."""
        clips = [r.cfg.optim.grad_clip or math.inf for r in self.runs]
        if all(c == math.inf for c in clips):
            return
        K, grads = len(self.runs), [p.grad for p in self.params]
        norms = torch.stack([rows(g, K).flatten(1).norm(dim=1) for g in grads], dim=1).norm(dim=1)  # (K,)
        coef = (torch.tensor(clips, device=norms.device) / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            rows(g, K).mul_(coef.view(-1, *[1] * g.dim()))

    def _adam(self) -> None:
        """torch.optim.Adam's update (its functional form, fused or not as runtime.fused_adam says): one call on
        the packed tensors when all runs share settings and step count (the usual case), else one per run."""
        K, grads = len(self.runs), [p.grad for p in self.params]
        settings = [(float(r.cfg.optim.lr), tuple(map(float, r.cfg.optim.betas)), float(r.cfg.optim.eps),
                     float(r.cfg.optim.weight_decay), r.step) for r in self.runs]
        if len(set(settings)) == 1:
            calls = [(settings[0], self.params, grads, self.exp_avg, self.exp_avg_sq, self.fused)]
        else:  # slices of the packed tensors; the unfused kernel takes any strides
            calls = [(settings[k], *([rows(t, K)[k] for t in ts] for ts in (self.params, grads, self.exp_avg,
                                                                             self.exp_avg_sq)), False)
                     for k in range(K)]
        for (lr, (beta1, beta2), eps, weight_decay, step), params, g, m, v, fused in calls:
            device = params[0].device if fused else "cpu"
            steps = list(torch.full((len(params),), float(step), device=device).unbind(0))  # Adam counts them up
            adam([p.detach() for p in params], g, m, v, [], steps, foreach=False, fused=fused, amsgrad=False,
                 beta1=beta1, beta2=beta2, lr=lr, weight_decay=weight_decay, eps=eps, maximize=False)

    def _ema(self) -> None:
        weights = [r.ema_weight() for r in self.runs]
        params = [p.detach() for p in self.params]
        if len(set(weights)) == 1:
            torch._foreach_lerp_(self.ema, params, weights[0])
            return
        K, w = len(self.runs), torch.tensor(weights, device=params[0].device)
        for e, p in zip(self.ema, params):
            rows(e, K).lerp_(rows(p, K), w.view(-1, *[1] * p.dim()))
