"""The nearest-neighbour memorization ratio (Yoon et al. 2023; Bonnaire et al. 2025; Gu et al. 2023).

A generated sample x counts as memorized when ||x - NN1(x)|| < threshold * ||x - NN2(x)||, with NN1 and NN2
its nearest and second-nearest training samples (threshold 1/3, pixel L2 in those papers).

The search is blocked over queries and over references, so memory stays at block x ref_block floats whatever
the sizes (CIFAR-10: 50,000 x 3,072 references, 10,000 queries, never a 10,000 x 50,000 matrix).
"""
from __future__ import annotations

import torch

CANDIDATES_EXTRA = 2  # candidates kept beyond k, re-ranked with exact distances


def nearest_neighbours(queries: torch.Tensor, refs: torch.Tensor, k: int = 2, block: int = 1024,
                       ref_block: int = 16384):
    """Distances and indices of the k nearest `refs` of every query (L2 over flattened features).

    Each (query block, reference block) pair gives squared distances through ||q||^2 - 2 q.r + ||r||^2 (one
    matrix product); a running top-(k + 2) is merged across reference blocks. The k + 2 candidates are then
    re-ranked by their exact distances ||q - r|| (computed as differences, so without the cancellation of
    the expansion for near-copies), and the k nearest returned, sorted."""
    q, r = queries.flatten(1).float(), refs.flatten(1).float()
    if len(r) < k:
        raise ValueError(f"{k} nearest neighbours asked among {len(r)} references")
    c = min(k + CANDIDATES_EXTRA, len(r))
    r_norm = r.pow(2).sum(1)
    dists, idxs = [], []
    for qs in range(0, len(q), block):
        qb = q[qs:qs + block]
        q_norm = qb.pow(2).sum(1, keepdim=True)
        best_d = best_i = None
        for rs in range(0, len(r), ref_block):
            rb = r[rs:rs + ref_block]
            d2 = torch.addmm(q_norm + r_norm[None, rs:rs + ref_block], qb, rb.T, alpha=-2)
            d, i = torch.topk(d2, min(c, len(rb)), dim=1, largest=False)
            i += rs
            if best_d is not None:
                d, pos = torch.topk(torch.cat([best_d, d], 1), c, dim=1, largest=False)
                i = torch.cat([best_i, i], 1).gather(1, pos)
            best_d, best_i = d, i
        exact = (qb[:, None, :] - r[best_i]).norm(dim=2)  # (block, c): exact distances of the candidates
        d, pos = torch.topk(exact, k, dim=1, largest=False)  # sorted ascending
        dists.append(d)
        idxs.append(best_i.gather(1, pos))
    return torch.cat(dists), torch.cat(idxs)


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
