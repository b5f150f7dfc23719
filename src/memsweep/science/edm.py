"""EDM (Karras et al. 2022, "Elucidating the design space of diffusion-based generative models").

x = x1 + sigma eps; the network F is preconditioned into the denoiser D(x; sigma) = c_skip x + c_out F(c_in x,
c_noise) with c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2),
c_in = 1 / sqrt(sigma^2 + sd^2), c_noise = ln(sigma) / 4 (table 1, sd = sigma_data = 0.5); training draws
ln sigma ~ N(P_mean, P_std^2) = N(-1.2, 1.2^2) and weights ||D - x1||^2 by (sigma^2 + sd^2) / (sigma sd)^2;
sampling is Heun's method (algorithm 1, S_churn = 0) on the rho = 7 schedule from sigma_max = 80 to
sigma_min = 0.002, N steps (2N - 1 network evaluations).

memsweep's t in [0, 1] is the position on that schedule: sigma(t) = (sigma_max^(1/rho) + t (sigma_min^(1/rho)
- sigma_max^(1/rho)))^rho, so t = 0 is sigma_max (noise) and t = 1 sigma_min (data), and the sampler's N
steps are t = i / (N - 1). Training sigmas are clamped to [sigma_min, sigma_max] (a 2e-5 probability mass).
"""
from __future__ import annotations

import torch

from memsweep.science.formulation import Formulation, expand, softmax_mean
from memsweep.science.objective_settings import SAMPLERS


class EDM(Formulation):
    name = "edm"
    samplers = SAMPLERS[name]

    def __init__(self, sigma_data: float = 0.5, p_mean: float = -1.2, p_std: float = 1.2,
                 sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
        self.sd, self.p_mean, self.p_std = float(sigma_data), float(p_mean), float(p_std)
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)

    # -- t <-> sigma -----------------------------------------------------------------------------------
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (hi + t.float() * (lo - hi)) ** self.rho

    def t_of(self, sigma: torch.Tensor) -> torch.Tensor:
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (sigma ** (1 / self.rho) - hi) / (lo - hi)

    # -- training ------------------------------------------------------------------------------------
    def draw_t(self, count, device, generator):
        """ln sigma ~ N(P_mean, P_std^2) (Karras et al. 2022, table 1), as t."""
        z = torch.randn(count, device=device, generator=generator)
        sigma = (self.p_mean + self.p_std * z).exp().clamp(self.sigma_min, self.sigma_max)
        return self.t_of(sigma)

    def noise(self, x1, x0, t):
        return x1 + expand(self.sigma(t), x1) * x0

    def target(self, x1, x0, t):
        return x1

    def predict(self, model, x, t, labels):
        """D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) (Karras et al. 2022, eq. 7 and table 1)."""
        if getattr(model, "is_prediction", False):
            return model(x, t, labels)
        s = self.sigma(t)
        se, sd2 = expand(s, x), self.sd ** 2
        c_skip, c_out = sd2 / (se ** 2 + sd2), se * self.sd / (se ** 2 + sd2).sqrt()
        c_in = 1 / (se ** 2 + sd2).sqrt()
        return c_skip * x + c_out * model(c_in * x, s.log() / 4, labels)

    def loss_per_sample(self, model, x1, labels, x0, t):
        """lambda(sigma) ||D(x; sigma) - x1||^2 with lambda = (sigma^2 + sd^2) / (sigma sd)^2 (Karras et al.
        2022, table 1): the network's own target has unit variance."""
        s = self.sigma(t)
        weight = (s ** 2 + self.sd ** 2) / (s * self.sd) ** 2
        return weight * super().loss_per_sample(model, x1, labels, x0, t)

    def denoised(self, x, t, pred):
        return pred

    # -- sampling ------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_field(self, field, x0, labels, steps, method="heun", record=None):
        """Heun's second-order method on dx/dsigma = (x - D(x; sigma)) / sigma (Karras et al. 2022, algorithm
        1, deterministic), from x = sigma_max x0; the last step, to sigma = 0, is Euler."""
        self.check_sampler(method)
        n = int(steps)
        ts = torch.linspace(0, 1, n, device=x0.device) if n > 1 else torch.zeros(1, device=x0.device)
        sigmas = torch.cat([self.sigma(ts), torch.zeros(1, device=x0.device)])
        x = x0 * sigmas[0]
        for i in range(n):
            s, s_next = sigmas[i], sigmas[i + 1]
            if record is not None:
                record(x, ts[i].expand(len(x)))
            d = (x - field(x, ts[i].expand(len(x)), labels).float()) / s
            x_next = x + (s_next - s) * d
            if i < n - 1:
                t_next = ts[i + 1].expand(len(x))
                d2 = (x_next - field(x_next, t_next, labels).float()) / s_next
                x_next = x + (s_next - s) * (d + d2) / 2
            x = x_next
        return x

    # -- the perfect memorizer, the noise-level axis -----------------------------------------------------
    def closed_form(self, x, t, train_x):
        """D*(x; sigma) = sum_i softmax_i(-||x - y_i||^2 / (2 sigma^2)) y_i (the ideal denoiser of a finite
        training set, Karras et al. 2022, appendix B.3)."""
        s = self.sigma(t)
        return softmax_mean(x, torch.ones_like(s), s ** 2, train_x)

    def log_snr(self, t):
        """x = x1 + sigma eps: SNR = 1 / sigma^2."""
        return -2 * self.sigma(t).log()
