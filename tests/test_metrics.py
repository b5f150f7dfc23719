"""Every metric against an exact answer or an independent implementation."""
import numpy as np
import pytest
import scipy.linalg
import torch

from memsweep.metrics.fid import frechet_distance, gaussian_stats
from memsweep.metrics.memorization import mem_ratio, nearest_neighbours, nn_ratio
from memsweep.metrics.sliced_wasserstein import projections, sliced_wasserstein, wasserstein_1d_squared
from memsweep.data import load
from omegaconf import OmegaConf


def digits(n=64, test_size=500):
    return load(OmegaConf.create({"name": "digits", "n": n, "offset": 0, "test_size": test_size}))


def test_sliced_wasserstein_zero_for_identical_sets():
    x = torch.randn(100, 16)
    assert sliced_wasserstein(x, x.clone(), projections(16, 200)) == pytest.approx(0.0, abs=1e-6)
    # the same set repeated is the same measure
    assert sliced_wasserstein(x, torch.cat([x, x]), projections(16, 200)) == pytest.approx(0.0, abs=1e-6)


def test_sliced_wasserstein_matches_pot_with_the_same_projections():
    ot = pytest.importorskip("ot")
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(70, 10, generator=g), torch.randn(45, 10, generator=g) + 0.5
    proj = projections(10, 300, seed=3)
    ours = sliced_wasserstein(a, b, proj)
    ref = ot.sliced_wasserstein_distance(a.double().numpy(), b.double().numpy(), projections=proj.double().numpy(), p=2)
    assert ours == pytest.approx(float(ref), rel=1e-6)


def test_wasserstein_1d_shift_is_exact():
    a = torch.randn(33, 1)
    assert wasserstein_1d_squared(a, a + 2.0).item() == pytest.approx(4.0, rel=1e-6)


def test_projections_are_fixed_unit_vectors():
    p = projections(64, 100, seed=7)
    assert torch.equal(p, projections(64, 100, seed=7))
    assert torch.allclose(p.norm(dim=0), torch.ones(100), atol=1e-6)


def test_frechet_distance_zero_for_identical_sets_and_matches_scipy():
    g = np.random.default_rng(0)
    a = torch.tensor(g.standard_normal((400, 8)))
    b = torch.tensor(g.standard_normal((300, 8)) * 1.5 + 0.3)
    sa, sb = gaussian_stats(a), gaussian_stats(b)
    assert frechet_distance(sa, sa) == pytest.approx(0.0, abs=1e-6)
    (m1, c1), (m2, c2) = sa, sb
    ref = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    assert frechet_distance(sa, sb) == pytest.approx(ref, rel=1e-6)


def test_nearest_neighbours_blocked_equals_brute_force():
    g = torch.Generator().manual_seed(1)
    q, r = torch.randn(130, 20, generator=g), torch.randn(57, 20, generator=g)
    d, i = nearest_neighbours(q, r, k=2, block=16)
    full = torch.cdist(q, r)
    ref_d, ref_i = full.topk(2, largest=False)
    assert torch.equal(i, ref_i)
    assert torch.allclose(d, ref_d, atol=1e-4)


def test_mem_ratio_is_one_for_copies_and_near_zero_for_held_out_images():
    data = digits(n=256)
    copies = data.train_x[torch.arange(100) % 256] + 0.01 * torch.randn(100, 1, 8, 8)
    assert mem_ratio(copies, data.train_x) == 1.0
    assert mem_ratio(data.test_x, data.train_x) < 0.05


def test_nn_ratio_by_hand():
    train = torch.tensor([[0.0], [1.0], [10.0]])
    r = nn_ratio(torch.tensor([[0.1], [0.5]]), train)
    assert torch.allclose(r, torch.tensor([0.1 / 0.9, 1.0]))
