"""Memorization by copy detection (Somepalli et al. 2023; Marion & Wu 2026).

A generated sample counts as a copy when its maximum cosine similarity to the training set, in a copy-detection
feature space (SSCD in those papers), exceeds a threshold (0.5 is common). The search is blocked like the
nearest-neighbour search: never a samples x training-set matrix in memory.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def max_cosine(queries: torch.Tensor, refs: torch.Tensor, block: int = 1024, ref_block: int = 16384):
    """For every query, the maximum cosine similarity to `refs` and the index of the most similar one."""
    q = F.normalize(queries.flatten(1).float(), dim=1)
    r = F.normalize(refs.flatten(1).float().to(q.device), dim=1)
    sims, idxs = [], []
    for qs in range(0, len(q), block):
        qb = q[qs:qs + block]
        best_s = best_i = None
        for rs in range(0, len(r), ref_block):
            s, i = (qb @ r[rs:rs + ref_block].T).max(1)
            i = i + rs
            if best_s is None:
                best_s, best_i = s, i
            else:
                better = s > best_s
                best_s, best_i = torch.where(better, s, best_s), torch.where(better, i, best_i)
        sims.append(best_s)
        idxs.append(best_i)
    return torch.cat(sims), torch.cat(idxs)


def copies(sample_features: torch.Tensor, train_features: torch.Tensor, threshold: float = 0.5,
           block: int = 1024) -> torch.Tensor:
    """Boolean per sample: is its maximum cosine similarity to the training set above `threshold`?"""
    return max_cosine(sample_features, train_features, block=block)[0] > threshold


def copy_fraction(sample_features: torch.Tensor, train_features: torch.Tensor, threshold: float = 0.5) -> float:
    return copies(sample_features, train_features, threshold).float().mean().item()
