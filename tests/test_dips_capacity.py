"""Double-descent dips on synthetic curves with known dips; effective model memorization on exact cases."""
import math

import numpy as np
import pandas as pd
from scipy import stats
from scipy.signal import find_peaks

from memsweep.science.capacity import effective_memorization
from memsweep.science.dips import dip_columns, find_dips, prominent_peaks
from memsweep.science.fits import rank_correlation, t_quantile

STEPS = np.unique(np.geomspace(20, 20000, 24).astype(int))


def curve(dips, noise=0.02, seed=0):
    """A positive curve in log(step): Gaussian wells at log10(step) = centres, with given depths, plus
    multiplicative noise."""
    x = np.log10(STEPS)
    y = np.ones_like(x)
    for centre, depth in dips:
        y = y * (1 - depth * np.exp(-0.5 * ((x - centre) / 0.25) ** 2))
    rng = np.random.default_rng(seed)
    return y * np.exp(rng.normal(0, noise, len(x)))


def test_two_known_dips_are_found_with_their_steps_and_depths():
    for seed in range(5):
        found = find_dips(STEPS, curve([(2.3, 0.5), (3.7, 0.4)], seed=seed))
        assert len(found) == 2, found
        assert abs(math.log10(found[0]["step"]) - 2.3) < 0.15 and abs(math.log10(found[1]["step"]) - 3.7) < 0.15
        assert abs(found[0]["depth"] - 0.4) < 0.12           # bounded by the bump between the dips
        assert abs(found[1]["depth"] - 0.4) < 0.12 and not found[1]["at_end"]


def test_noise_alone_makes_no_second_descent():
    for seed in range(10):
        one = find_dips(STEPS, curve([(2.8, 0.5)], noise=0.04, seed=seed))
        assert len(one) == 1 and abs(math.log10(one[0]["step"]) - 2.8) < 0.2
        assert find_dips(STEPS, curve([], noise=0.03, seed=seed)) == []
    falling = 2.0 / np.log10(STEPS) * np.exp(np.random.default_rng(0).normal(0, 0.02, len(STEPS)))
    dips = find_dips(STEPS, falling)
    assert len(dips) == 1 and dips[0]["at_end"] and dips[0]["step"] == STEPS[-1]   # still falling at the end


def test_a_single_outlier_evaluation_is_not_a_dip():
    y = curve([(2.3, 0.5)], noise=0.0)
    y[18] *= 0.5                                             # one bad evaluation late in training
    assert len(find_dips(STEPS, y)) == 1


def test_dip_columns_give_nan_for_a_curve_without_data():
    frame = pd.DataFrame({"step": STEPS, "sw_test": curve([(2.3, 0.5), (3.7, 0.4)]),
                          "sw_train": np.nan, "fid_train": np.nan, "fid_test": np.nan})
    cols = dip_columns(frame)
    assert cols["sw_test_dips"] == 2 and abs(math.log10(cols["sw_test_dip2_step"]) - 3.7) < 0.15
    assert math.isnan(cols["sw_train_dips"]) and math.isnan(cols["fid_test_dip1_step"])


def test_effective_memorization_interpolates_in_log_n():
    r = effective_memorization([16, 32, 64, 128], [1.0, 0.95, 0.85, 0.1])
    assert r["bound"] == "" and r["n_below"] == 32 and r["n_above"] == 64
    assert math.isclose(r["emm"], 32 * 2 ** 0.5, rel_tol=1e-9)
    # seeds averaged first; a non-monotone dip below 0.9 at small n does not hide a larger n above it
    r = effective_memorization([16, 16, 32, 64, 128], [0.8, 1.0, 0.88, 0.92, 0.5])
    assert r["n_below"] == 64 and math.isclose(r["emm"], 64 * 2 ** (0.02 / 0.42), rel_tol=1e-9)
    lower = effective_memorization([16, 32], [0.95, 0.99])
    assert lower["bound"] == "lower" and lower["emm"] == 32
    upper = effective_memorization([16, 32], [0.5, 0.2])
    assert upper["bound"] == "upper" and math.isnan(upper["emm"]) and upper["n_above"] == 16
    assert math.isnan(effective_memorization([], [])["emm"])


def test_the_peaks_and_statistics_written_here_are_scipys():
    """prominent_peaks, rank_correlation and t_quantile stand in for scipy.signal / scipy.stats (whose imports
    cost a report more than its work): the same answers on random curves with ties and flat tops."""
    rng = np.random.default_rng(1)
    for _ in range(3000):
        n = int(rng.integers(1, 30))
        x = rng.integers(0, rng.integers(2, 8), n).astype(float) if rng.random() < 0.5 else rng.normal(size=n)
        minimum = float(rng.choice([0.0, 0.5, 1.0, 2.0]))
        idx, props = find_peaks(x, prominence=minimum)
        mine = prominent_peaks(x, minimum)
        assert [i for i, _ in mine] == list(idx)
        assert np.allclose([p for _, p in mine], props["prominences"])
        if n >= 4 and np.ptp(x) > 0:
            y = x * rng.choice([1, -1]) + rng.normal(0, rng.uniform(0, 3), n).round(1)
            if np.ptp(y) > 0:
                expect = stats.spearmanr(x, y)
                assert np.allclose(rank_correlation(x, y), (expect.statistic, expect.pvalue), rtol=1e-9, atol=1e-14)
    assert rank_correlation([1, 2, 3, 4], [3, 5, 8, 9]) == (1.0, 0.0)
    for q, dof in ((0.975, 1), (0.975, 3), (0.95, 30), (0.5, 5)):
        assert math.isclose(t_quantile(q, dof), stats.t.ppf(q, dof), rel_tol=1e-12)
