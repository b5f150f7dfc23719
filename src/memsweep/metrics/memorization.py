"""The nearest-neighbour memorization ratio (Yoon et al. 2023; Bonnaire et al. 2025; Gu et al. 2023).

A generated sample x counts as memorized when ||x - NN1(x)|| < threshold * ||x - NN2(x)||, with NN1 and NN2
its nearest and second-nearest training samples (threshold 1/3, pixel L2 in those papers).
"""
from __future__ import annotations

import torch


def nearest_neighbours(queries: torch.Tensor, refs: torch.Tensor, k: int = 2, block: int = 1024):
    """Distances and indices of the k nearest `refs` of every query (L2 over flattened features).

    Queries are taken in blocks and the distances through ||q||^2 - 2 q.r + ||r||^2, so memory stays at
    block x len(refs) however large the sets are."""
    q, r = queries.flatten(1).float(), refs.flatten(1).float()
    r_norm = r.pow(2).sum(1)
    dists, idxs = [], []
    for start in range(0, len(q), block):
        qb = q[start:start + block]
        d2 = (qb.pow(2).sum(1, keepdim=True) - 2 * qb @ r.T + r_norm[None]).clamp_min_(0)
        d, i = torch.topk(d2, k, dim=1, largest=False)
        dists.append(d.sqrt())
        idxs.append(i)
    return torch.cat(dists), torch.cat(idxs)


def nn_ratio(samples: torch.Tensor, train: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """||x - NN1|| / ||x - NN2|| per sample (needs at least two training samples)."""
    if len(train) < 2:
        raise ValueError("the nearest-neighbour ratio needs at least two training samples")
    d, _ = nearest_neighbours(samples, train, k=2, block=block)
    return d[:, 0] / d[:, 1].clamp_min(1e-12)


def mem_ratio(samples: torch.Tensor, train: torch.Tensor, threshold: float = 1 / 3) -> float:
    """Fraction of samples whose nearest training sample is closer than `threshold` x the second-nearest."""
    return (nn_ratio(samples, train) < threshold).float().mean().item()
