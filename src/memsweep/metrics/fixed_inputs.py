"""The fixed draws of every evaluation, in one place: the loss triples of the training and test splits, then the
initial noise of the eval.num_samples samples, all from one generator seeded by eval.noise_seed (in that order),
and the samples' labels (the training labels, in order). The Evaluator and the report's probes both read them
here, so a probe computed at report time samples from the same noise as the evaluation did."""
from __future__ import annotations

import torch

from memsweep.metrics.loss import FixedLossBatch


def fixed_inputs(data, ev_cfg) -> tuple[FixedLossBatch, FixedLossBatch, torch.Tensor]:
    """(train loss batch, test loss batch, sample noise) on the data's device."""
    g = torch.Generator().manual_seed(int(ev_cfg.noise_seed))
    train = FixedLossBatch.make(data.train_x, data.train_y, int(ev_cfg.loss_points), g)
    test = FixedLossBatch.make(data.test_x, data.test_y, int(ev_cfg.loss_points), g)
    noise = torch.randn((int(ev_cfg.num_samples), *data.train_x.shape[1:]), generator=g)
    return train, test, noise.to(data.train_x.device)


def sample_labels(train_y: torch.Tensor, start: int, count: int) -> torch.Tensor:
    """Labels of samples start..start+count-1: the training labels in order, cycled (their class proportions)."""
    return train_y[torch.arange(start, start + count, device=train_y.device) % len(train_y)]
