"""The closed-form empirical velocity as a reference model, and the distance of a learned field to it.

u*(x, t | y) is the minimizer of the flow-matching loss over the empirical measure of the training images of
class y (science.md section 2, restricted to the class: the models are class-conditional). Sampling it only
copies training images; a learned field that approaches it on points it was not trained at is memorizing at
the level of the field, which can show before the samples become copies.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from memsweep.science.flow import closed_form_velocity, interpolate


def conditional_closed_form_velocity(x, t, labels, train_x, train_y) -> torch.Tensor:
    """u*(x, t | y) for each row: the closed-form velocity over the training images of the row's class.
    A row whose class has no training image (or the null label) uses the whole training set."""
    out = torch.empty_like(x)
    for c in labels.unique().tolist():
        rows = labels == c
        members = train_y == c
        ref = train_x[members] if members.any() else train_x
        out[rows] = closed_form_velocity(x[rows], t[rows], ref)
    return out


@dataclass
class FieldProbe:
    """Fixed probe points x_t = (1 - t) x0 + t x1 at each t of `ts`, x1 drawn from the test images (points the
    model was not trained at, where a memorizing and a generalizing field differ), with the images' labels
    and the closed-form velocity there, computed once."""
    ts: list[float]
    x: torch.Tensor          # (len(ts) * points, C, H, W)
    t: torch.Tensor
    labels: torch.Tensor
    target: torch.Tensor     # u*(x, t | label)

    @classmethod
    def make(cls, data, points: int, ts, seed: int) -> "FieldProbe":
        g = torch.Generator().manual_seed(seed)
        dev = data.test_x.device
        idx = torch.randperm(len(data.test_x), generator=g)[:points].to(dev)
        x1, labels = data.test_x[idx], data.test_y[idx]
        x0 = torch.randn(x1.shape, generator=g).to(dev)
        ts = [float(v) for v in ts]
        t = torch.tensor(ts, device=dev).repeat_interleave(len(idx))
        x = interpolate(x0.repeat(len(ts), 1, 1, 1), x1.repeat(len(ts), 1, 1, 1), t)
        lab = labels.repeat(len(ts))
        target = conditional_closed_form_velocity(x, t, lab, data.train_x, data.train_y)
        return cls(ts, x, t, lab, target)

    @torch.no_grad()
    def distance(self, model) -> tuple[float, list[float]]:
        """Relative squared distance ||u_theta - u*||^2 / ||u*||^2 (sums over probe points) at each t, and
        its mean over t: 0 for the perfect memorizer, about 1 or more for a field unrelated to it."""
        u = model(self.x, self.t, self.labels).float()
        err = (u - self.target).pow(2).flatten(1).sum(1)
        ref = self.target.pow(2).flatten(1).sum(1)
        k = len(self.ts)
        by_t = (err.view(k, -1).sum(1) / ref.view(k, -1).sum(1).clamp_min(1e-12)).tolist()
        return sum(by_t) / k, by_t
