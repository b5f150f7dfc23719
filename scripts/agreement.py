"""Each metric against an independent implementation on random data, as a table.

    python scripts/agreement.py

Sliced Wasserstein vs POT (same projections), the Frechet distance vs the scipy.linalg.sqrtm formula, the
1/3 rule, nearest-neighbour distances and cosine copy detection vs brute force (torch.cdist / a full
similarity matrix, float64), bootstrap intervals vs the normal approximation of the binomial. Prints the
largest absolute and relative differences over a few random draws.
"""
from __future__ import annotations

import numpy as np
import ot
import scipy.linalg
import torch
import torch.nn.functional as F

from memsweep.metrics.bootstrap import bootstrap_ci
from memsweep.metrics.copy_detection import max_cosine
from memsweep.metrics.fid import frechet_distance, gaussian_stats
from memsweep.metrics.memorization import nearest_neighbours, ratio_of
from memsweep.metrics.sliced_wasserstein import projections, sliced_wasserstein


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def main(draws: int = 5) -> None:
    worst: dict[str, list[float]] = {}

    def record(name, ours, ref):
        ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
        a = float(np.max(np.abs(ours - ref)))
        r = float(np.max(np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-300)))
        w = worst.setdefault(name, [0.0, 0.0])
        w[0], w[1] = max(w[0], a), max(w[1], r)

    for seed in range(draws):
        g = torch.Generator().manual_seed(seed)
        a, b = torch.randn(700, 32, generator=g), 1.3 * torch.randn(450, 32, generator=g) + 0.2
        proj = projections(32, 500, seed=seed)
        record("sliced Wasserstein-2 vs ot.sliced_wasserstein_distance", sliced_wasserstein(a, b, proj),
               ot.sliced_wasserstein_distance(a.double().numpy(), b.double().numpy(),
                                              projections=proj.double().numpy(), p=2))
        sa, sb = gaussian_stats(a.numpy()), gaussian_stats(b.numpy())
        ref = np.sum((sa[0] - sb[0]) ** 2) + np.trace(sa[1] + sb[1] - 2 * scipy.linalg.sqrtm(sa[1] @ sb[1]).real)
        record("Frechet distance vs scipy.linalg.sqrtm formula", frechet_distance(sa, sb), ref)
        record("mean, covariance (chunked) vs numpy", np.concatenate([sa[0], sa[1].ravel()]),
               np.concatenate([a.double().numpy().mean(0), np.cov(a.double().numpy(), rowvar=False).ravel()]))
        r = torch.rand(3000, 192, generator=g) * 2 - 1
        q = torch.rand(1000, 192, generator=g) * 2 - 1
        q[:300] = r[torch.randperm(3000, generator=g)[:300]] + 0.02 * torch.randn(300, 192, generator=g)
        d, i = nearest_neighbours(q, r, k=2, block=128, ref_block=512)
        full_d, full_i = torch.cdist(q.double(), r.double()).topk(2, largest=False)
        record("NN distances (blocked) vs torch.cdist float64", d.double().numpy(), full_d.numpy())
        assert torch.equal(i, full_i), "nearest-neighbour indices differ"
        record("1/3 rule fraction vs brute force", (ratio_of(d) < 1 / 3).double().mean().item(),
               (full_d[:, 0] < full_d[:, 1] / 3).double().mean().item())
        sim, idx = max_cosine(q, r, block=128, ref_block=512)
        full = F.normalize(q.double(), dim=1) @ F.normalize(r.double(), dim=1).T
        ref_sim, ref_idx = full.max(1)
        assert torch.equal(idx, ref_idx), "copy-detection indices differ"
        record("max cosine similarity (blocked) vs full matrix", sim.double().numpy(), ref_sim.numpy())
        record("copy fraction (> 0.5) vs brute force", (sim > 0.5).double().mean().item(),
               (ref_sim > 0.5).double().mean().item())
        values = (torch.rand(500, generator=g) < 0.3).double()
        lo, hi = bootstrap_ci(values, 2000, seed=seed)
        m = values.mean().item()
        record("bootstrap 95% half-width vs binomial normal approx.", (hi - lo) / 2, 1.96 * (m * (1 - m) / 500) ** 0.5)

    print(f"{'metric vs independent implementation':58s} {'max abs diff':>13s} {'max rel diff':>13s}")
    for name, (a, r) in worst.items():
        print(f"{name:58s} {a:13.2e} {r:13.2e}")
    print(f"({draws} random draws; nearest-neighbour and copy indices identical to brute force in every draw)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
