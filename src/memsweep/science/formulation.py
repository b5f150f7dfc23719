"""What a diffusion formulation decides, behind one small interface (torchcfm-style: small pure methods).

The training loop, the evaluator and the report call only these methods, so another formulation (VP/DDPM,
EDM) is another subclass. Shared conventions:

- t in [0, 1] is the time axis every formulation exposes: t = 0 is pure noise, t = 1 is data. A formulation
  maps t to its own noise level inside its methods; `log_snr(t)` puts any formulation's t on a common axis.
- x1 is a clean batch, x0 standard Gaussian noise of its shape, labels the class (num_classes = no label).
- The network's raw output is mapped to the formulation's prediction by `predict`; the loss, the sampler,
  guidance and the field probe all go through it, so a formulation may precondition the network. A callable
  marked `is_prediction = True` (a closed form, see `memorizer`) already returns the prediction.
- Shapes: t is (B,), or (B, K) for K packed models (x (B, K, C, H, W), unet.UNet(copies=K)).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from memsweep.science.objective_settings import sampler_problem


class Formulation(ABC):
    name: str = ""
    samplers: tuple[str, ...] = ()   # the values eval.sampler may take

    # -- training ------------------------------------------------------------------------------------
    def draw(self, x1: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Training noise x0 ~ N(0, I) shaped like x1, then a time per image, from `generator` in that order."""
        x0 = torch.randn(x1.shape, device=x1.device, generator=generator)
        return x0, self.draw_t(len(x1), x1.device, generator)

    @abstractmethod
    def draw_t(self, count: int, device, generator: torch.Generator) -> torch.Tensor:
        """`count` training times in [0, 1]: the formulation's distribution of noise levels."""

    @abstractmethod
    def noise(self, x1: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t: the clean batch x1 noised with x0 to time t."""

    @abstractmethod
    def target(self, x1: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What `predict` regresses onto at x_t = noise(x1, x0, t)."""

    def predict(self, model, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The formulation's prediction from the network at (x, t, labels); by default its raw output."""
        return model(x, t, labels)

    @abstractmethod
    def denoised(self, x: torch.Tensor, t: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """The clean-image estimate E[x1 | x_t = x] that the prediction `pred` at (x, t) stands for: the one
        quantity every formulation's prediction converts to (for comparing them at matched noise levels)."""

    def loss_per_sample(self, model, x1, labels, x0, t) -> torch.Tensor:
        """|| predict(x_t, t, y) - target ||^2, averaged over pixels (so losses compare across image sizes).
        One loss per entry of t: (B,), or (B, K) for K packed models."""
        pred = self.predict(model, self.noise(x1, x0, t), t, labels)
        return (pred.float() - self.target(x1, x0, t)).pow(2).flatten(t.dim()).mean(-1)

    # -- sampling ------------------------------------------------------------------------------------
    def guided(self, model, x, t, labels, null_label: int | None, cfg_weight: float = 0.0) -> torch.Tensor:
        """The conditional prediction, with classifier-free guidance p_c + w (p_c - p_uncond) when w != 0
        (Ho & Salimans 2022)."""
        p = self.predict(model, x, t, labels)
        if cfg_weight:
            p = p + cfg_weight * (p - self.predict(model, x, t, torch.full_like(labels, null_label)))
        return p

    def sample(self, model, x0: torch.Tensor, labels: torch.Tensor, steps: int, method: str,
               cfg_weight: float = 0.0, null_label: int | None = None) -> torch.Tensor:
        """Images generated from the noise x0 with `steps` steps of the sampler `method` (one of `samplers`),
        the field being the network's guided prediction. `model` is anything called as model(x, t, labels)."""
        def field(x, t, y):
            return self.guided(model, x, t, y, null_label, cfg_weight)
        return self.sample_field(field, x0, labels, steps, method)

    def sample_field(self, field, x0: torch.Tensor, labels: torch.Tensor, steps: int, method: str,
                     record=None) -> torch.Tensor:
        """The sampler with any field: field(x, t, labels) returns a prediction in the parametrization of
        `predict` (the network's, a closed form's, or one chosen by t, as the hybrid sampler of Bertrand et al.
        2025 does). `record(x, t)`, if given, sees the state before each step (the points where the sampler
        evaluates the field, t < 1). Subclasses implement this; `sample` follows."""
        raise NotImplementedError(f"{self.name}: sample_field is not implemented")

    def scales(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a(t), s(t)) with x_t = a(t) x1 + s(t) x0: the signal and noise scales, read off `noise` (linear in
        x1 and x0 for every Gaussian formulation). t is (B,); both are (B,)."""
        one, zero = torch.ones_like(t), torch.zeros_like(t)
        return self.noise(one, zero, t), self.noise(zero, one, t)

    def check_sampler(self, method: str) -> None:
        problem = sampler_problem(self.name, method)
        if problem:
            raise ValueError(problem)

    # -- the perfect memorizer -----------------------------------------------------------------------
    @abstractmethod
    def closed_form(self, x: torch.Tensor, t: torch.Tensor, train_x: torch.Tensor) -> torch.Tensor:
        """The minimizer of the loss over the empirical measure of `train_x` (the perfect memorizer), in the
        parametrization of `predict`. x is (batch, ...), t is (batch,)."""

    def memorizer(self, train_x: torch.Tensor, train_y: torch.Tensor | None = None):
        """The closed form as a model for `sample` and `predict`: over `train_x`, or given the class when
        `train_y` is given (labels equal to no class, e.g. the null label, use the whole set)."""
        return Memorizer(self, train_x, train_y)

    def conditional_closed_form(self, x, t, labels, train_x, train_y) -> torch.Tensor:
        """The closed form given the class, for each row: over the training images of the row's class. A row
        whose class has no training image (or the null label) uses the whole training set."""
        out = torch.empty_like(x)
        for c in labels.unique().tolist():
            rows = labels == c
            members = train_y == c
            ref = train_x[members] if members.any() else train_x
            out[rows] = self.closed_form(x[rows], t[rows], ref)
        return out

    # -- the noise-level axis ------------------------------------------------------------------------
    @abstractmethod
    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """log(signal^2 / noise^2) of x_t at time t: increasing in t. Losses by t (stored by t bins) read on this
        axis compare across formulations (Kingma et al. 2021, variational diffusion models)."""


class Memorizer:
    """The closed form of a formulation over a training set, called as model(x, t, labels); it returns the
    formulation's prediction itself (is_prediction), so predict does not precondition it."""
    is_prediction = True

    def __init__(self, formulation: Formulation, train_x: torch.Tensor, train_y: torch.Tensor | None = None):
        self.formulation, self.train_x, self.train_y = formulation, train_x, train_y

    def __call__(self, x, t, labels):
        if self.train_y is None:
            return self.formulation.closed_form(x, t, self.train_x)
        return self.formulation.conditional_closed_form(x, t, labels, self.train_x, self.train_y)


def expand(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-image quantity v (shaped like t) viewed so that it broadcasts against the images x."""
    return v.view(*v.shape, *([1] * (x.dim() - v.dim())))


def softmax_mean(x: torch.Tensor, scale: torch.Tensor, var: torch.Tensor, train_x: torch.Tensor) -> torch.Tensor:
    """sum_i softmax_i(-||x - scale y_i||^2 / (2 var)) y_i over the rows y_i of train_x: the posterior mean
    E[y | x] of the empirical measure under x = scale y + sqrt(var) noise. x (batch, ...), scale, var (batch,)."""
    flat_x, flat_d = x.flatten(1), train_x.flatten(1)
    s, v = scale.view(-1, 1), var.view(-1, 1)
    # ||x - s y_i||^2 expanded, so memory is batch x n rather than batch x n x pixels
    dist2 = (flat_x.pow(2).sum(1, keepdim=True) - 2 * s * (flat_x @ flat_d.T)
             + s.pow(2) * flat_d.pow(2).sum(1)[None]).clamp_min(0)
    return (torch.softmax(-dist2 / (2 * v), dim=1) @ flat_d).view_as(x)
