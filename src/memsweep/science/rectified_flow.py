"""Rectified flow (Liu et al. 2023), i.e. flow matching with the straight conditional path (Lipman et al. 2023).

t = 0 is noise, t = 1 is data: x_t = (1 - t) x0 + t x1, and the network predicts the velocity x1 - x0
(objective.target=velocity), or the empirical optimal velocity over the training set (objective.target=
closed_form, Bertrand et al. 2025: EmpiricalTargetFlow).
"""
from __future__ import annotations

import torch

from memsweep.science.formulation import Formulation, expand, softmax_mean
from memsweep.science.objective_settings import SAMPLERS


def integrate(field, x0: torch.Tensor, steps: int, method: str, record=None) -> torch.Tensor:
    """Integrate dx/dt = field(x, t) from t = 0 (x0, noise) to t = 1 with a fixed number of steps;
    record(x, t), if given, sees the state before each step.

    Heun's last step stays Euler so the field is never evaluated at t = 1, where the closed-form
    field is singular."""
    x = x0
    ts = torch.linspace(0, 1, steps + 1, device=x0.device)
    for i in range(steps):
        t, dt = ts[i].expand(len(x)), ts[i + 1] - ts[i]
        if record is not None:
            record(x, t)
        u = field(x, t)
        if method == "heun" and i < steps - 1:
            u = 0.5 * (u + field(x + dt * u, ts[i + 1].expand(len(x))))
        x = x + dt * u
    return x


class RectifiedFlow(Formulation):
    name = "rectified_flow"
    samplers = SAMPLERS[name]

    def draw_t(self, count, device, generator):
        """t ~ U[0, 1] (Liu et al. 2023, eq. 1: the expectation over t is uniform)."""
        return torch.rand(count, device=device, generator=generator)

    def noise(self, x1, x0, t):
        """The straight path x_t = (1 - t) x0 + t x1 (Liu et al. 2023, eq. 1; Lipman et al. 2023, section 4.1,
        the optimal-transport path with sigma_min = 0)."""
        t = t.view(*t.shape, *([1] * (x1.dim() - t.dim())))
        return (1 - t) * x0 + t * x1

    def target(self, x1, x0, t):
        """The conditional velocity d x_t / dt = x1 - x0 (Liu et al. 2023, eq. 1)."""
        return x1 - x0

    @torch.no_grad()
    def sample_field(self, field, x0, labels, steps, method="euler", record=None):
        """Euler or Heun integration of dZ_t = v(Z_t, t) dt (Liu et al. 2023, section 2) with the velocity
        field(x, t, labels), from the noise at t = 0 to t = 1."""
        self.check_sampler(method)
        return integrate(lambda x, t: field(x, t, labels), x0, steps, method, record)

    def closed_form(self, x, t, train_x):
        """The velocity minimizing the loss over the empirical measure of `train_x`, E[x1 - x0 | x_t = x] (the
        minimizer of Liu et al. 2023, eq. 1):
        u*(x, t) = sum_i softmax_i(-||x - t x_i||^2 / (2 (1 - t)^2)) (x_i - x) / (1 - t)."""
        target = softmax_mean(x, t, (1 - t) ** 2, train_x)                   # E[x1 | x_t = x]
        return (target - x) / expand(1 - t, x)

    def denoised(self, x, t, pred):
        """x = t x1 + (1 - t) x0 and u = x1 - x0 give E[x1 | x] = x + (1 - t) E[u | x]."""
        return x + expand(1 - t, x) * pred

    def log_snr(self, t):
        """x_t = t x1 + (1 - t) x0, so SNR = t^2 / (1 - t)^2."""
        return 2 * (torch.log(t) - torch.log1p(-t))


class EmpiricalTargetFlow(RectifiedFlow):
    """Rectified flow regressed onto the empirical optimal velocity u*(x_t, t) over the whole training set (per
    class when the labels say so) instead of the conditional velocity x1 - x0 (Bertrand et al. NeurIPS 2025,
    "On the closed-form of flow matching"): the same minimizer, without the target's variance. Training only:
    the evaluator's losses stay the standard x1 - x0 loss, comparable with every other run."""

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor):
        self.train_x, self.train_y = train_x, train_y

    def loss_per_sample(self, model, x1, labels, x0, t):
        x = self.noise(x1, x0, t)
        target = self.conditional_closed_form(x, t, labels, self.train_x, self.train_y)  # null label: all images
        pred = self.predict(model, x, t, labels)
        return (pred.float() - target).pow(2).flatten(t.dim()).mean(-1)
