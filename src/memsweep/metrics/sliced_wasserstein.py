"""Sliced Wasserstein distance with projections fixed across evaluations.

SW_2(a, b) = ( mean over directions theta of W_2^2(theta.a, theta.b) )^(1/2), the convention of POT's
`sliced_wasserstein_distance`. The 1-D distances are exact for sets of different sizes: both empirical
quantile functions are step functions, so the integral over quantile levels is a finite sum over the merged
breakpoints.
"""
from __future__ import annotations

import torch


def projections(dim: int, num: int, seed: int = 0) -> torch.Tensor:
    """`num` random unit directions in R^dim, the same for a given seed (fixed across checkpoints)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(dim, num, generator=g, dtype=torch.float64)
    return (p / p.norm(dim=0, keepdim=True)).float()


def wasserstein_1d_squared(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """W_2^2 between the uniform empirical measures of the columns of a (na, P) and b (nb, P)."""
    a, b = a.double().sort(0).values, b.double().sort(0).values
    na, nb = len(a), len(b)
    levels = torch.cat([torch.arange(1, na + 1, dtype=torch.float64) / na,
                        torch.arange(1, nb + 1, dtype=torch.float64) / nb]).unique()  # sorted, ends at 1
    widths = torch.diff(levels, prepend=levels.new_zeros(1))
    mids = levels - widths / 2
    ia = (mids * na).floor().long().clamp_max(na - 1).to(a.device)
    ib = (mids * nb).floor().long().clamp_max(nb - 1).to(b.device)
    return ((a[ia] - b[ib]).pow(2) * widths.to(a.device)[:, None]).sum(0)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, proj: torch.Tensor) -> float:
    """SW_2 between two sets of vectors (rows; images are flattened) along the columns of `proj`."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    proj = proj.to(a.device)
    return wasserstein_1d_squared(a @ proj, b @ proj).mean().sqrt().item()
