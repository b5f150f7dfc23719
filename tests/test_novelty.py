"""Novelty metrics against brute force and exact cases."""
import itertools

import torch

from memsweep.metrics.novelty import authenticity, novelty_row, precision_recall


def brute_authenticity(g, x):
    out = []
    for gi in g:
        d = [float((gi - xi).norm()) for xi in x]
        i = min(range(len(x)), key=d.__getitem__)
        own = min(float((x[i] - x[j]).norm()) for j in range(len(x)) if j != i)
        out.append(d[i] > own)
    return sum(out) / len(out)


def brute_pr(g, x, k=3):
    def radii(p):
        return [sorted(float((a - b).norm()) for j, b in enumerate(p) if j != i)[k - 1] for i, a in enumerate(p)]
    rx, rg = radii(x), radii(g)
    prec = sum(any(float((a - b).norm()) <= r for b, r in zip(x, rx)) for a in g) / len(g)
    rec = sum(any(float((a - b).norm()) <= r for b, r in zip(g, rg)) for a in x) / len(x)
    return prec, rec


def test_against_brute_force():
    g = torch.Generator().manual_seed(0)
    for n_gen, n_real in itertools.product((7, 30), (9, 25)):
        gen = torch.randn(n_gen, 1, 3, 3, generator=g) * 1.3 + 0.4
        real = torch.randn(n_real, 1, 3, 3, generator=g)
        assert abs(authenticity(gen, real) - brute_authenticity(gen.flatten(1), real.flatten(1))) < 1e-6
        p, r = precision_recall(gen, real)
        bp, br = brute_pr(gen.flatten(1), real.flatten(1))
        assert abs(p - bp) < 1e-6 and abs(r - br) < 1e-6


def test_exact_cases():
    g = torch.Generator().manual_seed(1)
    train = torch.randn(20, 1, 4, 4, generator=g)
    copies = train[torch.arange(60) % 20] + 1e-4 * torch.randn(60, 1, 4, 4, generator=g)
    far = torch.randn(60, 1, 4, 4, generator=g) + 50
    assert authenticity(copies, train) == 0.0 and authenticity(far, train) == 1.0
    assert precision_recall(copies, train) == (1.0, 1.0)           # copies of every image: the same manifold
    assert precision_recall(far, train) == (0.0, 0.0)
    row = novelty_row(copies, train, far)
    assert row["mem_ratio"] == 1.0 and row["precision_train"] == 1.0 and row["precision_test"] == 0.0
    hist = row["nn_ratio_hist"]
    assert len(hist) == 20 and abs(sum(hist) - 1) < 1e-6 and hist[0] == 1.0    # every ratio near 0
