"""An evaluation on K processes (issue 31): each rank computes a contiguous share of the rows (fixed-noise
samples, loss triples, probe points) and every rank gathers them in order, so the metrics rank 0 computes from
them are one process's up to the order of float sums (10,000 samples on 8 ranks: 1,250 each)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist


def rank_and_size() -> tuple[int, int]:
    """This process's rank and the world's size once the process group is up; (0, 1) otherwise."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


def bounds(count: int, rank: int, size: int) -> tuple[int, int]:
    """Rank `rank`'s rows [lo, hi) of `count`: ceil(count / size) each, the last ranks short (or empty)."""
    share = -(-count // size)
    lo = min(rank * share, count)
    return lo, min(lo + share, count)


def gathered(count: int, compute: Callable[[int, int], torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Rows 0..count-1 on every rank, each rank computing compute(lo, hi) for its bounds; `like` gives the
    rows' trailing shape, dtype and device. One process: compute(0, count), nothing else."""
    rank, size = rank_and_size()
    if size == 1 or count == 0:
        return compute(0, count)
    lo, hi = bounds(count, rank, size)
    share = -(-count // size)
    padded = like.new_zeros((share, *like.shape[1:]))
    if hi > lo:
        padded[:hi - lo] = compute(lo, hi)
    # only the last ranks are short, so every padding row comes after the last real one: cut after the gather
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    return torch.cat(parts)[:count]
