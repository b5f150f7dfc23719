"""Blocked passes over the pixel L2 distances between two sets of images, for the report's sample analyses.

One pass over (query block, reference block) pairs gives, from the same distance block, everything an
evaluation needs against one reference set: the k nearest references of each query (mem_ratio, authenticity,
copies), whether each query lies in some reference's ball (precision, Kynkäänniemi et al. 2019) and whether
each reference lies in some query's ball (recall). Computing them in one pass rather than one search each
divides the matrix products by three against the training set. A set's k-NN radii within itself
(self_knn) visit each unordered pair of blocks once: the distance matrix is symmetric.

Memory: block x ref_block floats for distances, whatever the sizes; the sets themselves are moved to `device`
whole (CIFAR-10: 50,000 x 3,072 floats, 0.6 GB). The same code runs on the CPU and on a GPU.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

CANDIDATES_EXTRA = 2  # candidates kept beyond k, re-ranked with exact distances
RERANK_ROWS = 64      # queries per slice of the exact re-ranking
BLOCK = {"cpu": (1024, 8192), "cuda": (8192, 32768)}   # (query rows, reference rows) per distance block


def blocks_for(device) -> tuple[int, int]:
    return BLOCK.get(torch.device(device).type, BLOCK["cpu"])


@dataclass
class Scan:
    dist: torch.Tensor | None       # (queries, k) exact distances of the k nearest references, ascending
    index: torch.Tensor | None      # (queries, k) their indices
    query_inside: torch.Tensor | None   # (queries,) bool: within ref_radii of some reference
    ref_inside: torch.Tensor | None     # (refs,) bool: within query_radii of some query


@contextlib.contextmanager
def _float32(dev: torch.device):
    """Plain float32 products on a GPU even where TF32 is allowed (an opt-in for training speed, which moves
    distances in the fourth digit): the same results as on the CPU."""
    if dev.type != "cuda":
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def _flat(x: torch.Tensor, device) -> torch.Tensor:
    return x.flatten(1).to(device=device, dtype=torch.float32)


def _merge(best_d, best_i, d2, offset: int, c: int):
    """Running top-c (smallest) of each row: the block's own top-c merged with the best so far."""
    d, i = torch.topk(d2, min(c, d2.shape[1]), dim=1, largest=False)
    i = i + offset
    if best_d is None:
        return d, i
    both = torch.cat([best_d, d], 1)
    d, pos = torch.topk(both, min(c, both.shape[1]), dim=1, largest=False)
    return d, torch.cat([best_i, i], 1).gather(1, pos)


def _rerank(q: torch.Tensor, r: torch.Tensor, cand: torch.Tensor, k: int):
    """The k nearest of each query's candidates by exact distances ||q - r|| (differences, so without the
    cancellation of the expansion ||q||^2 - 2 q.r + ||r||^2 for near-copies), sorted. In slices of
    RERANK_ROWS queries, the gathered candidates overwritten by the differences: the gather is memory-bound,
    and a slice that stays in cache is 3x faster here than one (queries, candidates, values) temporary."""
    exact = torch.empty(cand.shape, dtype=q.dtype, device=q.device)
    for s in range(0, len(q), RERANK_ROWS):
        c = cand[s:s + RERANK_ROWS]
        diff = r.index_select(0, c.flatten()).view(*c.shape, -1)
        diff.sub_(q[s:s + RERANK_ROWS, None, :])
        exact[s:s + RERANK_ROWS] = torch.linalg.vector_norm(diff, dim=2)
    d, pos = torch.topk(exact, k, dim=1, largest=False)
    return d, cand.gather(1, pos)


def scan(queries, refs, k: int = 0, ref_radii=None, query_radii=None, device="cpu", block: int | None = None,
         ref_block: int | None = None) -> Scan:
    """k nearest refs of each query (k = 0: none), and the ball memberships whose radii are given."""
    dev = torch.device(device)
    q, r = _flat(queries, dev), _flat(refs, dev)
    if k > len(r):
        raise ValueError(f"{k} nearest neighbours asked among {len(r)} references")
    block, ref_block = block or blocks_for(dev)[0], ref_block or blocks_for(dev)[1]
    rr2 = None if ref_radii is None else ref_radii.to(dev, torch.float32).pow(2)
    qr2 = None if query_radii is None else query_radii.to(dev, torch.float32).pow(2)
    with _float32(dev):
        return _scan(q, r, k, rr2, qr2, block, ref_block)


def _scan(q, r, k, rr2, qr2, block, ref_block) -> Scan:
    c = min(k + CANDIDATES_EXTRA, len(r))
    r_norm = r.pow(2).sum(1)
    q_in = torch.zeros(len(q), dtype=torch.bool, device=q.device) if rr2 is not None else None
    r_in = torch.zeros(len(r), dtype=torch.bool, device=q.device) if qr2 is not None else None
    dists, idxs = [], []
    for qs in range(0, len(q), block):
        qb = q[qs:qs + block]
        q_norm = qb.pow(2).sum(1, keepdim=True)
        best_d = best_i = None
        for rs in range(0, len(r), ref_block):
            re = min(rs + ref_block, len(r))
            d2 = torch.addmm(q_norm + r_norm[None, rs:re], qb, r[rs:re].T, alpha=-2)
            if k:
                best_d, best_i = _merge(best_d, best_i, d2, rs, c)
            if rr2 is not None:   # a query is inside the reference manifold: some d^2 <= radius^2
                q_in[qs:qs + block] |= (d2 - rr2[None, rs:re]).amin(1) <= 0
            if qr2 is not None:
                r_in[rs:re] |= (d2 - qr2[qs:qs + block, None]).amin(0) <= 0
        if k:
            d, i = _rerank(qb, r, best_i, k)
            dists.append(d)
            idxs.append(i)
    return Scan(torch.cat(dists) if k else None, torch.cat(idxs) if k else None, q_in, r_in)


def self_knn(points, k: int, device="cpu", block: int | None = None):
    """Distances and indices of the k + 1 nearest points of each point within its own set (the first is
    itself, or an exact duplicate of it), sorted. Each unordered pair of blocks is computed once and serves
    the rows of both (the matrix is symmetric), half the products of a search of the set against itself."""
    dev = torch.device(device)
    x = _flat(points, dev)
    n, kk = len(x), k + 1
    if kk > n:
        raise ValueError(f"{k} nearest other points asked among {n} points")
    block = block or blocks_for(dev)[0]
    c = min(kk + CANDIDATES_EXTRA, n)
    starts = list(range(0, n, block))
    with _float32(dev):
        best = _self_blocks(x, starts, block, c)
        out = [_rerank(x[s:s + block], x, best[s][1], kk) for s in starts]
    return torch.cat([d for d, _ in out]), torch.cat([i for _, i in out])


def _self_blocks(x, starts, block, c) -> dict:
    """self_knn's loop over the unordered pairs of blocks: each block's rows' running top-c (distances^2, indices)."""
    norm = x.pow(2).sum(1)
    best = {s: (None, None) for s in starts}
    for a, s in enumerate(starts):
        xs = x[s:s + block]
        for t in starts[a:]:
            d2 = torch.addmm(norm[s:s + block, None] + norm[None, t:t + block], xs, x[t:t + block].T, alpha=-2)
            best[s] = _merge(*best[s], d2, t, c)
            if t != s:
                best[t] = _merge(*best[t], d2.T, s, c)
    return best
