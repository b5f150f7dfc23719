"""The denoising loss on fixed (image, noise, t) triples, so that evaluations differ only by the model.

t is the time axis every formulation shares (science.formulation: t = 0 noise, t = 1 data); the losses by t
are stored by bins of t, which a formulation's log_snr(t) maps onto a noise-level axis."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from memsweep.science.formulation import Formulation


@dataclass
class FixedLossBatch:
    x1: torch.Tensor
    labels: torch.Tensor
    x0: torch.Tensor
    t: torch.Tensor

    @classmethod
    def make(cls, images, labels, points: int, generator: torch.Generator) -> "FixedLossBatch":
        """`points` triples: images cycled in order (each of a small set gets several noises), fresh
        Gaussian noise, and t on a stratified grid (i + 1/2) / points shuffled across images."""
        idx = torch.arange(points) % len(images)
        t = (torch.randperm(points, generator=generator).float() + 0.5) / points
        x0 = torch.randn((points, *images.shape[1:]), generator=generator)
        dev = images.device
        return cls(images[idx.to(dev)], labels[idx.to(dev)], x0.to(dev), t.to(dev))


    def rows(self, lo: int, hi: int) -> "FixedLossBatch":
        """Triples lo..hi-1 (a rank's share of an evaluation on several processes)."""
        return FixedLossBatch(self.x1[lo:hi], self.labels[lo:hi], self.x0[lo:hi], self.t[lo:hi])


@torch.no_grad()
def per_sample_loss(formulation: Formulation, model, batch: FixedLossBatch, chunk: int = 1024) -> torch.Tensor:
    """The formulation's loss of each triple, in chunks of `chunk`."""
    return torch.cat([formulation.loss_per_sample(model, batch.x1[i:i + chunk], batch.labels[i:i + chunk],
                                                  batch.x0[i:i + chunk], batch.t[i:i + chunk])
                      for i in range(0, len(batch.t), chunk)])


def loss_by_t(losses: torch.Tensor, t: torch.Tensor, t_bins: int) -> tuple[float, list[float]]:
    """Mean loss, and mean loss in each of `t_bins` equal bins of t over [0, 1]."""
    bins = (t * t_bins).long().clamp_max(t_bins - 1)
    sums = torch.zeros(t_bins, device=losses.device, dtype=losses.dtype).index_add_(0, bins, losses)
    counts = torch.bincount(bins, minlength=t_bins).clamp_min(1)
    return losses.mean().item(), (sums / counts).tolist()


def fixed_loss(formulation: Formulation, model, batch: FixedLossBatch, t_bins: int, chunk: int = 1024):
    """Mean loss of the formulation, and mean loss in each of `t_bins` equal bins of t over [0, 1]."""
    return loss_by_t(per_sample_loss(formulation, model, batch, chunk), batch.t, t_bins)
