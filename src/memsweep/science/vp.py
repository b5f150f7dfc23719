"""VP diffusion: DDPM (Ho et al. 2020) with epsilon-prediction, sampled by DDPM's ancestral sampler or by DDIM
(eta = 0, Song et al. 2021, "Denoising diffusion implicit models"), or by DDIM as Bonnaire et al. 2025's code runs it.

The discrete schedule of Ho et al. (2020, section 4): beta_k linear from 1e-4 to 0.02 over T = 1000 steps,
alpha_bar_k = prod_{j <= k} (1 - beta_j), x_k = sqrt(alpha_bar_k) x1 + sqrt(1 - alpha_bar_k) eps. memsweep's
time t in [0, 1] (t = 0 noise, t = 1 data) is t = 1 - k / T; the network sees t. A t between two steps is
rounded to the nearest step k(t) = round((1 - t) T), clamped to 1..T.
"""
from __future__ import annotations

import numpy as np
import torch

from memsweep.science.formulation import Formulation, expand, softmax_mean
from memsweep.science.objective_settings import SAMPLERS, linear_betas

SAMPLER_SEED = 0  # the ancestral sampler's fresh noise: fixed, so every evaluation samples alike


class VP(Formulation):
    name = "vp"
    samplers = SAMPLERS[name]

    def __init__(self, beta_start: float = 1e-4, beta_end: float = 0.02, timesteps: int = 1000):
        self.T = int(timesteps)
        self.beta_start, self.beta_end = float(beta_start), float(beta_end)
        betas = torch.tensor(linear_betas(beta_start, beta_end, self.T), dtype=torch.float64)
        self.alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])  # [0] = data

    # -- the schedule ----------------------------------------------------------------------------------
    def step_of(self, t: torch.Tensor) -> torch.Tensor:
        """The discrete step k(t) = round((1 - t) T) in 1..T."""
        return torch.round((1 - t.double()) * self.T).long().clamp(1, self.T)

    def abar(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_bar at k(t), float32, on t's device."""
        return self.alpha_bar.to(t.device)[self.step_of(t)].float()

    # -- training ------------------------------------------------------------------------------------
    def draw_t(self, count, device, generator):
        """k ~ U{1, ..., T} (Ho et al. 2020, algorithm 1), as t = 1 - k / T."""
        k = torch.randint(1, self.T + 1, (count,), device=device, generator=generator)
        return 1 - k.float() / self.T

    def noise(self, x1, x0, t):
        """x_k = sqrt(alpha_bar) x1 + sqrt(1 - alpha_bar) eps (Ho et al. 2020, eq. 4)."""
        a = expand(self.abar(t), x1)
        return a.sqrt() * x1 + (1 - a).sqrt() * x0

    def target(self, x1, x0, t):
        """The noise eps: the loss is ||eps_theta(x_k, k) - eps||^2 (Ho et al. 2020, eq. 14, L_simple)."""
        return x0

    def denoised(self, x, t, pred):
        """E[x1 | x] = (x - sqrt(1 - alpha_bar) E[eps | x]) / sqrt(alpha_bar) (Ho et al. 2020, eq. 15)."""
        a = expand(self.abar(t), x)
        return (x - (1 - a).sqrt() * pred) / a.sqrt()

    # -- sampling ------------------------------------------------------------------------------------
    def timesteps(self, steps: int, method: str = "ddim") -> list[int]:
        """The steps k the sampler visits, from T down. ddim, ddpm: `steps` steps evenly spaced from T to 1,
        rounded (the sub-sequence tau of Song et al. 2021, section 4.2), each followed by a step to the data.
        ddim_bonnaire: as Bonnaire et al. 2025's code (`sample_diffusion_from_noise_DDIM`), their 0-based index
        np.linspace(0, T - 1, steps, dtype=int) (truncated) read as k = index + 1, from T down to k = 1 where it
        stops: `steps` states, `steps` - 1 network evaluations."""
        steps = min(int(steps), self.T)
        if method == "ddim_bonnaire":
            return [int(i) + 1 for i in np.linspace(0, self.T - 1, steps, dtype=int)[::-1]]
        return torch.linspace(self.T, 1, steps).round().long().unique_consecutive().tolist()

    @torch.no_grad()
    def sample_field(self, field, x0, labels, steps, method="ddim", record=None):
        """From x_T = x0 down the sub-sequence of steps. ddim: the deterministic update (Song et al. 2021,
        eq. 12 with sigma = 0); ddpm: the ancestral step from the posterior q(x_prev | x_k, x1) with variance
        beta_tilde (Ho et al. 2020, eqs. 6-7; on a sub-sequence, beta = 1 - alpha_bar_k / alpha_bar_prev).
        Both clip the clean estimate to the data range [-1, 1], as in Ho et al.'s sampler, and end with a step
        to the clean estimate. ddim_bonnaire: DDIM as Bonnaire et al.'s code runs it, on its truncated steps
        (`timesteps`), with no clipping, and no step from k = 1: the samples keep sqrt(1 - alpha_bar_1) = 0.01
        of noise per pixel."""
        self.check_sampler(method)
        gen = torch.Generator(x0.device).manual_seed(SAMPLER_SEED) if method == "ddpm" else None
        ks = self.timesteps(steps, method)
        if method == "ddim_bonnaire":
            ks, last = ks[:-1], ks[-1]
        else:
            last = 0
        x = x0
        for i, k in enumerate(ks):
            prev = ks[i + 1] if i + 1 < len(ks) else last
            a, ap = float(self.alpha_bar[k]), float(self.alpha_bar[prev])
            t = torch.full((len(x),), 1 - k / self.T, device=x.device)
            if record is not None:
                record(x, t)
            eps = field(x, t, labels).float()
            x1 = (x - (1 - a) ** 0.5 * eps) / a ** 0.5
            if method == "ddim_bonnaire":
                x = ap ** 0.5 * x1 + (1 - ap) ** 0.5 * eps
                continue
            x1 = x1.clamp(-1, 1)
            if prev == 0:
                x = x1
            elif method == "ddim":
                eps = (x - a ** 0.5 * x1) / (1 - a) ** 0.5   # consistent with the clipped estimate
                x = ap ** 0.5 * x1 + (1 - ap) ** 0.5 * eps
            else:
                beta = 1 - a / ap
                mean = (ap ** 0.5 * beta / (1 - a)) * x1 + ((1 - beta) ** 0.5 * (1 - ap) / (1 - a)) * x
                z = torch.randn(x.shape, device=x.device, generator=gen)
                x = mean + (beta * (1 - ap) / (1 - a)) ** 0.5 * z
        return x

    # -- the perfect memorizer, the noise-level axis -----------------------------------------------------
    def closed_form(self, x, t, train_x):
        """eps*(x, k) = (x - sqrt(alpha_bar) D*) / sqrt(1 - alpha_bar), with the empirical posterior mean
        D*(x, k) = sum_i softmax_i(-||x - sqrt(alpha_bar) y_i||^2 / (2 (1 - alpha_bar))) y_i."""
        a = self.abar(t)
        d = softmax_mean(x, a.sqrt(), 1 - a, train_x)
        ae = expand(a, x)
        return (x - ae.sqrt() * d) / (1 - ae).sqrt()

    def log_snr(self, t):
        """SNR = alpha_bar / (1 - alpha_bar) at k(t)."""
        a = self.alpha_bar.to(t.device)[self.step_of(t)]
        return (a.log() - torch.log1p(-a)).float()
