"""Every metric against an exact answer or an independent implementation."""
import numpy as np
import pytest
import scipy.linalg
import torch

from memsweep.metrics.fid import frechet_distance, gaussian_stats
from memsweep.metrics.kid import kid
from memsweep.metrics.memorization import mem_ratio, nearest_neighbours, nn_ratio
from memsweep.metrics.mifid import mifid
from memsweep.metrics.sliced_wasserstein import projections, sliced_wasserstein, wasserstein_1d_squared
from memsweep.data.datasets import load
from omegaconf import OmegaConf

pytestmark = pytest.mark.usefixtures("one_thread")


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
    (m1, c1), (m2, c2) = [[x.numpy() for x in s] for s in (sa, sb)]
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


# -- at full strength: blocked searches, copy detection, bootstrap, each against brute force -----------------
from memsweep.metrics.bootstrap import bootstrap_ci
from memsweep.metrics.copy_detection import copy_fraction, max_cosine
from memsweep.metrics.memorization import ratio_of


def near_copies(g, n_refs=300, n_queries=200, dim=48, copied=60):
    """References, and queries of which the first `copied` are references plus small noise."""
    r = torch.randn(n_refs, dim, generator=g)
    q = torch.randn(n_queries, dim, generator=g)
    pick = torch.randperm(n_refs, generator=g)[:copied]
    q[:copied] = r[pick] + 0.05 * torch.randn(copied, dim, generator=g)
    return q, r


def test_nearest_neighbours_blocked_over_references_equals_brute_force_with_near_copies():
    g = torch.Generator().manual_seed(2)
    q, r = near_copies(g)
    d, i = nearest_neighbours(q, r, k=2, block=17, ref_block=23)  # blocks that do not divide the sizes
    ref_d, ref_i = torch.cdist(q.double(), r.double()).topk(2, largest=False)
    assert torch.equal(i, ref_i)
    assert torch.allclose(d.double(), ref_d, rtol=1e-5, atol=1e-6)


def test_one_third_rule_equals_brute_force():
    g = torch.Generator().manual_seed(3)
    q, r = near_copies(g)
    full = torch.cdist(q.double(), r.double()).sort(1).values
    expected = (full[:, 0] < full[:, 1] / 3).double().mean().item()
    d, _ = nearest_neighbours(q, r, k=2, block=32, ref_block=50)
    assert (ratio_of(d) < 1 / 3).double().mean().item() == expected
    assert mem_ratio(q, r) == pytest.approx(expected)
    assert 0.2 < expected < 0.4  # the 60 near-copies of 200 queries, and none of the random ones


def test_copy_detection_equals_brute_force_cosine():
    g = torch.Generator().manual_seed(4)
    q, r = near_copies(g)
    q[60:80] = -q[60:80]  # anti-correlated: the largest |cosine| would be wrong, the largest cosine is right
    sim, idx = max_cosine(q, r, block=19, ref_block=41)
    full = torch.nn.functional.normalize(q.double(), dim=1) @ torch.nn.functional.normalize(r.double(), dim=1).T
    ref_sim, ref_idx = full.max(1)
    assert torch.equal(idx, ref_idx)
    assert torch.allclose(sim.double(), ref_sim, atol=1e-6)
    for threshold in (0.3, 0.5, 0.9):
        assert copy_fraction(q, r, threshold) == pytest.approx((ref_sim > threshold).double().mean().item())


def test_gaussian_stats_in_chunks_equal_numpy():
    x = torch.randn(1001, 12, dtype=torch.float64)
    mu, cov = gaussian_stats(x.float(), chunk=64)
    assert np.allclose(mu, x.float().double().numpy().mean(0), atol=1e-12)
    assert np.allclose(cov, np.cov(x.float().double().numpy(), rowvar=False), atol=1e-12)


def test_bootstrap_interval_is_reproducible_and_matches_the_binomial_width():
    g = torch.Generator().manual_seed(5)
    p, n = 0.3, 400
    values = (torch.rand(n, generator=g) < p).float()
    lo, hi = bootstrap_ci(values, 2000, seed=1)
    assert (lo, hi) == bootstrap_ci(values, 2000, seed=1)
    mean = values.mean().item()
    assert lo < mean < hi
    normal_half_width = 1.96 * (mean * (1 - mean) / n) ** 0.5  # the normal approximation of the binomial
    assert (hi - lo) / 2 == pytest.approx(normal_half_width, rel=0.15)
    assert bootstrap_ci(torch.ones(50), 500) == (1.0, 1.0)  # nothing to resample from
    assert all(np.isnan(bootstrap_ci(values, 0)))


def test_bootstrap_interval_covers_the_true_fraction_about_95_percent_of_the_time():
    g = torch.Generator().manual_seed(6)
    p, n, trials = 0.2, 200, 200
    covered = 0
    for t in range(trials):
        lo, hi = bootstrap_ci((torch.rand(n, generator=g) < p).float(), 400, seed=t)
        covered += lo <= p <= hi
    assert 0.88 <= covered / trials <= 0.99


def mmd2_unbiased_cubic(x: np.ndarray, y: np.ndarray) -> float:
    """KID by hand (Bińkowski et al. 2018, eq. 4): the unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * k(x, y).mean())


def test_kid_equals_the_unbiased_mmd_by_hand():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 6, generator=g), torch.randn(40, 6, generator=g) * 1.3 + 0.4
    mean, std = kid(x, y, subsets=1, subset_size=1000)  # one subset of every row: the plain estimator
    assert mean == pytest.approx(mmd2_unbiased_cubic(x.double().numpy(), y.double().numpy()), rel=1e-9)
    assert std == 0.0
    # subsets of 20: their mean estimates the same quantity; fixed by the seed, the global stream untouched
    state = torch.random.get_rng_state()
    a, b = kid(x, y, subsets=50, subset_size=20, seed=3), kid(x, y, subsets=50, subset_size=20, seed=3)
    assert a == b and a[1] > 0 and torch.equal(state, torch.random.get_rng_state())
    assert a[0] == pytest.approx(mean, rel=0.5)
    # unbiased: for two samples of one distribution it averages to 0 (FID's Gaussian fit does not)
    same = [kid(torch.randn(16, 6, generator=g), torch.randn(16, 6, generator=g))[0] for _ in range(200)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))


def test_mifid_equals_fid_over_the_samples_mean_minimum_cosine_distance():
    g = torch.Generator().manual_seed(1)
    train = torch.randn(30, 5, generator=g)
    near_copies = train[:12] + 0.05 * torch.randn(12, 5, generator=g)  # samples that copy 12 training points
    fresh = torch.randn(25, 5, generator=g) + 0.3

    def by_hand(fake, eps):
        f, t = fake.double().numpy(), train.double().numpy()
        fid = frechet_distance(gaussian_stats(fake), gaussian_stats(train))
        cos = (f / np.linalg.norm(f, axis=1, keepdims=True)) @ (t / np.linalg.norm(t, axis=1, keepdims=True)).T
        distance = (1 - np.abs(cos)).min(axis=1).mean()  # per generated sample, its nearest training image
        return fid / (distance if distance < eps else 1.0), distance

    value, distance = by_hand(near_copies, 0.1)
    assert distance < 0.1  # memorized: the penalty applies
    assert mifid(train, near_copies) == pytest.approx(value, rel=1e-6)
    value, distance = by_hand(fresh, 0.1)
    assert distance > 0.01
    assert mifid(train, fresh, epsilon=0.01) == pytest.approx(value, rel=1e-6)  # above epsilon: MiFID = FID
    assert mifid(train, fresh, epsilon=0.01) == pytest.approx(frechet_distance(gaussian_stats(fresh),
                                                                               gaussian_stats(train)), rel=1e-6)
