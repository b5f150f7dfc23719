"""Percentile bootstrap confidence intervals over the generated samples.

The samples are resampled with replacement (`resamples` times, from a fixed seed, so the interval of a given
set of samples is reproducible); the interval is the (1 - level) / 2 and (1 + level) / 2 quantiles of the
resampled means. For a fraction (mem_ratio, copy_*) this is the interval of a Binomial(N, p) / N.
"""
from __future__ import annotations

import torch


def bootstrap_ci(values: torch.Tensor, resamples: int = 1000, level: float = 0.95, seed: int = 0,
                 chunk_elems: int = 2 ** 22) -> tuple[float, float]:
    """(lo, hi) of the mean of `values` (one value per sample, e.g. 0/1 for memorized or not)."""
    v = values.detach().flatten().double().cpu()
    if len(v) == 0 or resamples <= 0:
        return float("nan"), float("nan")
    g = torch.Generator().manual_seed(seed)
    rows = max(1, chunk_elems // len(v))
    means = torch.cat([v[torch.randint(len(v), (min(rows, resamples - s), len(v)), generator=g)].mean(1)
                       for s in range(0, resamples, rows)])
    alpha = (1 - level) / 2
    lo, hi = torch.quantile(means, torch.tensor([alpha, 1 - alpha], dtype=torch.float64)).tolist()
    return lo, hi
