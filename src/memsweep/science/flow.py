"""Rectified flow: the loss, the sampler, and the closed-form velocity of the empirical measure.

Convention (shared/science.md): t = 0 is noise, t = 1 is data, x_t = (1 - t) x0 + t x1, target x1 - x0.
"""
from __future__ import annotations

import torch


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.view(*t.shape, *([1] * (x1.dim() - t.dim())))
    return (1 - t) * x0 + t * x1


def loss_per_sample(model, x1, labels, x0, t) -> torch.Tensor:
    """|| u(x_t, t, y) - (x1 - x0) ||^2, averaged over pixels (so losses compare across image sizes).
    One loss per entry of t: (B,), or (B, K) for K packed models (x (B, K, C, H, W), unet.UNet(copies=K))."""
    pred = model(interpolate(x0, x1, t), t, labels)
    return (pred.float() - (x1 - x0)).pow(2).flatten(t.dim()).mean(-1)


def velocity(model, x, t, labels, null_label: int, cfg_weight: float = 0.0):
    """Conditional velocity, with classifier-free guidance u_c + w (u_c - u_uncond) when w != 0."""
    u = model(x, t, labels)
    if cfg_weight:
        u = u + cfg_weight * (u - model(x, t, torch.full_like(labels, null_label)))
    return u


@torch.no_grad()
def sample(field, x0: torch.Tensor, steps: int, method: str = "euler") -> torch.Tensor:
    """Integrate dx/dt = field(x, t) from t = 0 (x0, noise) to t = 1 with a fixed number of steps.

    Heun's last step stays Euler so the field is never evaluated at t = 1, where the closed-form
    field is singular."""
    x = x0
    ts = torch.linspace(0, 1, steps + 1, device=x0.device)
    for i in range(steps):
        t, dt = ts[i].expand(len(x)), ts[i + 1] - ts[i]
        u = field(x, t)
        if method == "heun" and i < steps - 1:
            u = 0.5 * (u + field(x + dt * u, ts[i + 1].expand(len(x))))
        elif method not in ("euler", "heun"):
            raise ValueError(f"eval.sampler={method!r}: use euler or heun")
        x = x + dt * u
    return x


def closed_form_velocity(x: torch.Tensor, t: torch.Tensor, train_x: torch.Tensor) -> torch.Tensor:
    """The minimizer of the flow-matching loss over the empirical measure of `train_x` (the perfect memorizer):
    u*(x, t) = sum_i softmax_i(-||x - t x_i||^2 / (2 (1 - t)^2)) (x_i - x) / (1 - t)."""
    flat_x, flat_d = x.flatten(1), train_x.flatten(1)
    tt = t.view(-1, 1)
    # ||x - t x_i||^2 expanded, so memory is batch x n rather than batch x n x pixels
    dist2 = (flat_x.pow(2).sum(1, keepdim=True) - 2 * tt * (flat_x @ flat_d.T)
             + tt.pow(2) * flat_d.pow(2).sum(1)[None]).clamp_min(0)
    weights = torch.softmax(-dist2 / (2 * (1 - tt) ** 2), dim=1)          # (batch, n)
    target = weights @ flat_d                                             # E[x1 | x_t = x]
    return ((target - flat_x) / (1 - tt)).view_as(x)
