"""The Frechet distance (eigendecomposition and low-rank routes) against clean-fid's sqrtm formula."""
import warnings

import numpy as np
import pytest
import torch
from cleanfid.fid import frechet_distance as cleanfid_frechet_distance

from memsweep.metrics.fid import GaussianStats, frechet_distance, gaussian_stats

pytestmark = pytest.mark.usefixtures("one_thread")


def cleanfid(sa, sb) -> float:
    a, b = [[np.asarray(x, dtype=np.float64) for x in s] for s in (sa, sb)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's sqrtm(disp=...) deprecation
        return float(cleanfid_frechet_distance(a[0], a[1], b[0], b[1]))


def samples(n, d, seed, scale=1.0, shift=0.0, rank=None):
    """Correlated Gaussian features (rank `rank` if given), float64."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(rank or d, d, generator=g, dtype=torch.float64) / d ** 0.5
    return (torch.randn(n, rank or d, generator=g, dtype=torch.float64) @ mix) * scale + shift


def full(stats):
    """The same statistics without their factor: the full (eigh) route."""
    return GaussianStats(stats[0], stats[1])


@pytest.mark.parametrize("d", [64, 256])
def test_matches_cleanfid_on_random_covariances(d):
    sa = gaussian_stats(samples(4 * d, d, seed=d))
    sb = gaussian_stats(samples(3 * d, d, seed=d + 1, scale=1.3, shift=0.1))
    assert sa.factor is None and sb.factor is None
    assert frechet_distance(sa, sb) == pytest.approx(cleanfid(sa, sb), rel=1e-6)


def test_matches_cleanfid_on_near_singular_covariances():
    d, rank, jitter = 64, 8, 1e-9
    sa = gaussian_stats(samples(500, d, seed=2, rank=rank))
    sb = gaussian_stats(samples(400, d, seed=3, rank=rank, scale=0.8))
    eye = torch.eye(d, dtype=torch.float64)
    sa, sb = GaussianStats(sa[0], sa[1] + jitter * eye), GaussianStats(sb[0] + 0.05, sb[1] + jitter * eye)
    assert torch.linalg.eigvalsh(sa[1])[:d - rank].max() < 1e-8  # (near) singular
    assert frechet_distance(sa, sb) == pytest.approx(cleanfid(sa, sb), rel=1e-6)
    # exactly singular: clamped eigenvalues, no eps offset needed
    sa, sb = gaussian_stats(samples(300, d, seed=4, rank=rank)), gaussian_stats(samples(300, d, seed=5, rank=rank))
    assert frechet_distance(full(sa), full(sb)) == pytest.approx(cleanfid(sa, sb), rel=1e-6)


def test_fewer_samples_than_dimensions_low_rank_route_equals_full_route_and_cleanfid():
    d = 256
    sa = gaussian_stats(samples(60, d, seed=6))
    sb = gaussian_stats(samples(90, d, seed=7, scale=1.2, shift=0.2))
    assert sa.factor.shape == (60, d) and sb.factor.shape == (90, d)
    assert torch.allclose(sa.factor.T @ sa.factor, sa[1], atol=1e-14)
    ref = cleanfid(sa, sb)
    assert frechet_distance(sa, sb) == pytest.approx(ref, rel=1e-6)  # both: singular values of F_a F_b^T
    assert frechet_distance(sb, sa) == pytest.approx(frechet_distance(sa, sb), rel=1e-9)  # C^T C or C C^T
    assert frechet_distance(full(sa), full(sb)) == pytest.approx(ref, rel=1e-6)  # eigh route
    big = gaussian_stats(samples(400, d, seed=8))  # one factor: eigenvalues of F_a S_b F_a^T
    assert big.factor is None
    for a, b in ((sa, big), (big, sa)):
        assert frechet_distance(a, b) == pytest.approx(cleanfid(a, b), rel=1e-6)
        # the full route's floor: S_a is singular, and the square roots of its rounding-level eigenvalues
        # (clamped at 0 or not) add about sqrt(1e-16) each to the trace
        assert frechet_distance(a, b) == pytest.approx(frechet_distance(full(a), full(b)), rel=1e-7)


def test_scaled_copy_has_the_closed_form_value():
    """S_b = c^2 S_a gives tr sqrt(S_a S_b) = c tr S_a, so the distance is ||mu_a - mu_b||^2 + (1 - c)^2 tr S_a,
    singular S_a (n < d) included, to the floor of sqrt(rounding) per zero eigenvalue of a singular PSD
    matrix (one for the low-rank routes: centring leaves F rank n - 1; d - n + 1 for the full route)."""
    x, c, shift = samples(50, 200, seed=15), 1.5, 0.1
    sa, sb = gaussian_stats(x), gaussian_stats(c * x + shift)
    exact = ((sa[0] - sb[0]) ** 2).sum().item() + (1 - c) ** 2 * sa[1].trace().item()
    assert frechet_distance(sa, sb) == pytest.approx(exact, rel=1e-7)
    assert frechet_distance(sa, full(sb)) == pytest.approx(exact, rel=1e-7)
    assert frechet_distance(full(sa), full(sb)) == pytest.approx(exact, rel=1e-7)
    assert cleanfid(sa, sb) == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize("n", [50, 500])  # low-rank and full route
def test_identical_sets_give_zero(n):
    s = gaussian_stats(samples(n, 128, seed=9, shift=3.0))
    scale = 1e-7 * s[1].trace().item()  # the rounding floor of a singular matrix's eigenvalues (n = 50)
    assert abs(frechet_distance(s, s)) < scale
    assert abs(frechet_distance(s, gaussian_stats(samples(n, 128, seed=9, shift=3.0)))) < scale


def test_float32_features_give_float64_statistics_and_distance():
    x = samples(300, 32, seed=10).float()
    s = gaussian_stats(x, chunk=64)
    assert all(t.dtype == torch.float64 for t in s)
    ref = gaussian_stats(x.double())
    assert torch.equal(s[0], ref[0]) and torch.allclose(s[1], ref[1], rtol=0, atol=1e-14)
    low = gaussian_stats(x[:20], chunk=7)  # the factor too, chunked
    assert low.factor.dtype == torch.float64
    assert torch.allclose(low.factor, gaussian_stats(x[:20].double()).factor, rtol=0, atol=1e-15)
    # float32 statistics are computed on in float64: the same value as the float64 copy of them
    s32 = GaussianStats(s[0].float(), s[1].float())
    assert frechet_distance(s32, ref) == frechet_distance(GaussianStats(s[0].float().double(), s[1].float().double()), ref)


def test_numpy_in_numpy_out_and_plain_pair():
    x = samples(10, 16, seed=11).numpy()
    mu, cov = s = gaussian_stats(x)
    assert isinstance(mu, np.ndarray) and isinstance(cov, np.ndarray) and isinstance(s.factor, np.ndarray)
    assert len(s) == 2 and s[0] is mu and s[1] is cov
    assert np.allclose(cov, np.cov(x, rowvar=False), atol=1e-14)
    assert abs(frechet_distance((mu, cov), s)) < 1e-7 * np.trace(cov)  # a plain tuple works too


def test_non_finite_statistics_give_nan():
    """(clean-fid gives nan or raises scipy's LinAlgError, depending on where the nan is)"""
    s = gaussian_stats(samples(100, 8, seed=12))
    for i in (0, 1):
        bad = [s[0].clone(), s[1].clone()]
        bad[i].view(-1)[0] = float("nan")
        assert np.isnan(frechet_distance(s, bad)) and np.isnan(frechet_distance(bad, s))
    low = gaussian_stats(samples(4, 8, seed=12))
    bad = GaussianStats(low[0], low[1], low.factor.clone())
    bad.factor[0, 0] = float("inf")
    assert np.isnan(frechet_distance(bad, bad))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_statistics_on_the_gpu_stay_there_and_agree():
    x, y = samples(500, 64, seed=13), samples(40, 64, seed=14, shift=0.1)
    sx, sy = gaussian_stats(x.float().cuda()), gaussian_stats(y.float().cuda())
    assert sx[1].is_cuda and sy.factor.is_cuda and sx[1].dtype == torch.float64
    cpu = [GaussianStats(*(None if t is None else t.cpu() for t in (*s, s.factor))) for s in (sx, sy)]
    assert frechet_distance(sx, sy) == pytest.approx(frechet_distance(*cpu), rel=1e-9)
    assert frechet_distance(sx, cpu[1]) == pytest.approx(cleanfid(*cpu), rel=1e-6)  # mixed: on the GPU
