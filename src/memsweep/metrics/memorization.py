"""The nearest-neighbour memorization ratio (Yoon et al. 2023; Bonnaire et al. 2025; Gu et al. 2023).

A generated sample x counts as memorized when ||x - NN1(x)|| < threshold * ||x - NN2(x)||, with NN1 and NN2
its nearest and second-nearest training samples (threshold 1/3, pixel L2 in those papers).

The search is blocked over queries and over references, so memory stays at block x ref_block floats whatever
the sizes (CIFAR-10: 50,000 x 3,072 references, 10,000 queries, never a 10,000 x 50,000 matrix).
"""
from __future__ import annotations

import torch

from memsweep.metrics.scan import scan


def nearest_neighbours(queries: torch.Tensor, refs: torch.Tensor, k: int = 2, block: int = 1024,
                       ref_block: int = 16384):
    """Distances and indices of the k nearest `refs` of every query (L2 over flattened features), sorted: the
    blocked search of metrics.scan (squared distances by one matrix product per block pair, a running top-(k + 2)
    re-ranked by exact distances), on the queries' device."""
    found = scan(queries, refs, k, device=queries.device, block=block, ref_block=ref_block)
    return found.dist, found.index


MEM_THRESHOLD = 1 / 3  # Yoon et al. 2023; the papers' value, and eval.mem_threshold's default


def ratio_of(dist: torch.Tensor) -> torch.Tensor:
    """||x - NN1|| / ||x - NN2|| from the (N, 2) distances of nearest_neighbours. The second distance is
    clamped at 1e-12, so a sample equal to two identical training images has ratio 0."""
    return dist[:, 0] / dist[:, 1].clamp_min(1e-12)


def is_copy(dist: torch.Tensor, threshold: float = MEM_THRESHOLD) -> torch.Tensor:
    """The 1/3 rule, the one place memsweep decides what a copy is: ||x - NN1|| < threshold ||x - NN2||, from
    (N, 2) distances to the nearest and second-nearest reference. Zero distances to both (duplicated training
    images) count as a copy; a tie (NN1 as far as NN2) does not."""
    return ratio_of(dist) < threshold


def nn_ratio(samples: torch.Tensor, train: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """||x - NN1|| / ||x - NN2|| per sample (needs at least two training samples)."""
    if len(train) < 2:
        raise ValueError("the nearest-neighbour ratio needs at least two training samples")
    d, _ = nearest_neighbours(samples, train, k=2, block=block)
    return ratio_of(d)


def mem_ratio(samples: torch.Tensor, train: torch.Tensor, threshold: float = MEM_THRESHOLD) -> float:
    """Fraction of samples that are copies by the 1/3 rule (is_copy)."""
    d, _ = nearest_neighbours(samples, train, k=2)
    return is_copy(d, threshold).float().mean().item()
