"""The closed-form memorizer as a reference model, and the distance of a learned field to it.

The formulation's closed form given the class, u*(x, t | y), minimizes its loss over the empirical measure of
the training images of class y (science.md section 2, restricted to the class: the models are
class-conditional). Sampling it only copies training images; a learned field that approaches it on points it
was not trained at is memorizing at the level of the field, which can show before the samples become copies.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from memsweep.science.formulation import Formulation


@dataclass
class FieldProbe:
    """Fixed probe points x_t = noise(x1, x0, t) at each t of `ts`, x1 drawn from the test images (points the
    model was not trained at, where a memorizing and a generalizing field differ), with the images' labels
    and the formulation's closed form there, computed once."""
    formulation: Formulation
    ts: list[float]
    x: torch.Tensor          # (len(ts) * points, C, H, W)
    t: torch.Tensor
    labels: torch.Tensor
    target: torch.Tensor     # u*(x, t | label)

    @classmethod
    def make(cls, formulation: Formulation, data, points: int, ts, seed: int) -> "FieldProbe":
        g = torch.Generator().manual_seed(seed)
        dev = data.test_x.device
        idx = torch.randperm(len(data.test_x), generator=g)[:points].to(dev)
        x1, labels = data.test_x[idx], data.test_y[idx]
        x0 = torch.randn(x1.shape, generator=g).to(dev)
        ts = [float(v) for v in ts]
        t = torch.tensor(ts, device=dev).repeat_interleave(len(idx))
        x = formulation.noise(x1.repeat(len(ts), 1, 1, 1), x0.repeat(len(ts), 1, 1, 1), t)
        lab = labels.repeat(len(ts))
        target = formulation.conditional_closed_form(x, t, lab, data.train_x, data.train_y)
        return cls(formulation, ts, x, t, lab, target)

    @torch.no_grad()
    def errors(self, model, lo: int = 0, hi: int | None = None) -> torch.Tensor:
        """(points, 2): the squared error ||u_theta - u*||^2 and ||u*||^2 at probe points lo..hi-1 (a rank's
        share of an evaluation on several processes)."""
        sl = slice(lo, len(self.t) if hi is None else hi)
        u = self.formulation.predict(model, self.x[sl], self.t[sl], self.labels[sl]).float()
        target = self.target[sl]
        return torch.stack([(u - target).pow(2).flatten(1).sum(1), target.pow(2).flatten(1).sum(1)], 1)

    def distance_of(self, errors: torch.Tensor) -> tuple[float, list[float]]:
        """Relative squared distance ||u_theta - u*||^2 / ||u*||^2 (sums over probe points) at each t, and
        its mean over t: 0 for the perfect memorizer, about 1 or more for a field unrelated to it."""
        k = len(self.ts)
        err, ref = errors[:, 0], errors[:, 1]
        by_t = (err.view(k, -1).sum(1) / ref.view(k, -1).sum(1).clamp_min(1e-12)).tolist()
        return sum(by_t) / k, by_t

    def distance(self, model) -> tuple[float, list[float]]:
        """distance_of the errors at every probe point."""
        return self.distance_of(self.errors(model))
