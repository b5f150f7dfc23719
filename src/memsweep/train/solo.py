"""One training step of one run: the run's formulation's loss, Adam, EMA (a pack of runs steps in
memsweep.train.packed)."""
from __future__ import annotations

import torch

from memsweep.store.files import failpoint
from memsweep.train import distributed
from memsweep.train.active_run import Run


def compiled(model, cfg):
    """The callable that trains: `model`, or torch.compile(model) (model keeps the plain names for checkpoints)."""
    if not cfg.runtime.compile:
        return model
    return torch.compile(model, **({} if cfg.runtime.compile is True else {"backend": cfg.runtime.compile}))


class SoloStep:
    """One training step of one run: the formulation's loss, Adam, EMA."""

    def __init__(self, run: Run):
        self.runs, self.run = [run], run
        self.net = compiled(distributed.wrap(run.model, run.device), run.cfg)  # DDP on several ranks
        self.autocast = torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.cfg.train.dtype == "bfloat16")
        self.ema_params, self.params = list(run.ema.parameters()), list(run.model.parameters())  # once, not per step

    def step(self) -> torch.Tensor:
        run, cfg = self.run, self.run.cfg
        # the global batch as one process draws it; on several ranks this rank's slice of it (its mean loss:
        # DDP averages the slices' gradients into the global batch's)
        x1, labels, x0, t = distributed.shard(*run.batch())
        if cfg.runtime.channels_last:
            x1 = x1.contiguous(memory_format=torch.channels_last)
        with self.autocast:
            loss = run.formulation.loss_per_sample(self.net, x1, labels, x0, t).mean()
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


