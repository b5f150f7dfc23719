"""memsweep.science.curves and science.fits on synthetic curves with known answers."""
import math

import numpy as np
import pandas as pd
import pytest

from memsweep.science.curves import (analyze_run, mem_crossing_step, mem_rate, metrics_frame, tau_gap, tau_gen, tau_mem,
                                     tau_test_min, tau_test_min_by_t)
from memsweep.science.fits import POOLED, linear_fit, numeric_axis_column, pooled_power_law_fit, power_law_fit, scaling_fits
from memsweep.science.normalized_time import normalized_step, reference_values
from memsweep.science.series import argmin_step, best_before, first_crossing, last_value, running_median, smooth_121, sustained_crossing
from memsweep.report.summary import RunData, SUMMARY_COLUMNS, summary_table

STEPS = np.geomspace(10, 10_000, 31)          # log-spaced evaluations, ratio 10^0.1 = 1.259 between two
RATIO = STEPS[1] / STEPS[0]


def within_one_interval(value, target, ratio=RATIO):
    return abs(math.log(value / target)) <= math.log(ratio)


# -- normalized step ---------------------------------------------------------------------------------------------
def test_normalized_step_arithmetic():
    ref = dict(n0=16, b0=32, lr0=1e-3)
    assert normalized_step(100, 16, 32, 1e-3, **ref) == pytest.approx(100)
    assert normalized_step(100, 64, 32, 1e-3, **ref) == pytest.approx(25)          # / (n/n0) = /4
    assert normalized_step(100, 16, 128, 1e-3, **ref) == pytest.approx(400)        # * B/B0 = *4
    assert normalized_step(100, 16, 32, 4e-3, **ref) == pytest.approx(400)         # * lr/lr0 = *4
    assert normalized_step(100, 64, 64, 2e-3, **ref) == pytest.approx(100)         # 2 * 2 / 4
    np.testing.assert_allclose(normalized_step([10, 20], 32, 32, 1e-3, **ref), [5, 10])
    assert reference_values([64, 16, 32], [128, 64, 64], [1e-3, 2e-4, 5e-4]) == {"n0": 16, "b0": 64, "lr0": 2e-4}


# -- crossings -------------------------------------------------------------------------------------------------------
def test_first_crossing_is_log_interpolated():
    assert first_crossing([10, 100], [0.0, 1.0], 0.5) == pytest.approx(math.sqrt(10 * 100))
    assert first_crossing([10, 100, 1000], [0.6, 0.7, 0.8], 0.5) == 10            # there from the start
    assert math.isnan(first_crossing([10, 100, 1000], [0.0, 0.1, 0.2], 0.5))       # never
    assert math.isnan(first_crossing([], [], 0.5))


def test_sustained_crossing_ignores_spikes_and_needs_two_points():
    s = [10, 20, 40, 80, 160, 320, 640]
    v = [0.0, 0.5, 0.0, 0.0, 0.4, 0.6, 0.9]             # a spike at 20 does not count
    assert sustained_crossing(s, v, 0.2) == pytest.approx(10 ** (math.log10(80) + 0.5 * math.log10(2)))
    assert math.isnan(sustained_crossing(s, [0, 0, 0, 0, 0, 0, 0.9], 0.2))         # one point above: not yet
    assert math.isnan(sustained_crossing(s, [0, 0, 0, 0.5, 0.6, 0.7, 0.1], 0.2))  # back below at the end
    assert sustained_crossing(s, [0.5] * 7, 0.2) == 10


def test_running_median_and_smoothing():
    np.testing.assert_allclose(running_median([0, 0, 5, 0, 0]), [0, 0, 0, 0, 0])
    np.testing.assert_allclose(running_median([1, 2, 3, 4]), [2, 2, 3, 3])      # ends: first / last 3
    np.testing.assert_allclose(smooth_121([0, 4, 0, 4]), [4 / 3, 2, 2, 8 / 3])


# -- tau_gap (the relative-gap crossing) ------------------------------------------------------------------------
def gap_curve(steps, onset=500.0, growth=1.5, top=0.9):
    """A relative gap exactly 0 until `onset`, then rising to `top` over a factor `growth` of steps."""
    return np.where(steps <= onset, 0.0, top * np.clip(np.log(steps / onset) / np.log(growth), 0, 1))


def losses_from_gap(gap, test=1.0):
    test = np.full_like(gap, test)
    return test * (1 - gap), test


@pytest.mark.parametrize("seed", range(5))
def test_tau_gap_found_within_one_interval_despite_noise(seed):
    rng = np.random.default_rng(seed)
    gap = gap_curve(STEPS) + rng.normal(0, 0.03, len(STEPS))
    gap[5] = 0.6                                         # an early one-off spike (step ~32)
    late = np.nonzero(STEPS > 2000)[0][0]
    gap[late] = 0.05                                     # and one dip after the onset
    train, test = losses_from_gap(gap)
    tau = tau_gap(STEPS, train, test, threshold=0.2)
    assert within_one_interval(tau, 500), tau


def test_tau_gap_nan_without_memorization():
    # n=1024-like: the gap grows slowly to ~0.1 (relative) and the run never copies
    rng = np.random.default_rng(0)
    gap = np.linspace(0.005, 0.11, len(STEPS)) + rng.normal(0, 0.01, len(STEPS))
    train, test = losses_from_gap(gap, test=0.4)
    assert math.isnan(tau_gap(STEPS, train, test))
    assert math.isnan(tau_gap([], [], []))
    assert math.isnan(tau_gap([10, 20], [np.nan, np.nan], [1.0, 1.0]))   # a diverged run's non-finite losses


def test_tau_gap_threshold_is_a_parameter():
    gap = np.clip(np.log10(STEPS / 100), 0, 1)          # 0 at 100, 0.5 at ~316, 1 at 1000
    train, test = losses_from_gap(gap)
    assert tau_gap(STEPS, train, test, threshold=0.5) == pytest.approx(100 * 10 ** 0.5, rel=1e-6)
    assert tau_gap(STEPS, train, test, threshold=0.2) == pytest.approx(100 * 10 ** 0.2, rel=1e-6)


# -- tau_mem (the primary onset: the test loss turns up while the train loss keeps falling) ----------------------
def turning_losses(onset, steps=STEPS, rise=0.1):
    """A test loss with its minimum at `onset` (a parabola in log step) and a train loss falling throughout."""
    x = np.log10(steps / onset)
    test = 0.7 + rise * x ** 2
    train = 0.7 * (steps / steps[0]) ** -0.3
    return train, test


@pytest.mark.parametrize("onset", [120.0, 500.0, 2500.0])
@pytest.mark.parametrize("seed", range(3))
def test_tau_mem_is_the_test_loss_turning_point_despite_noise(onset, seed):
    train, test = turning_losses(onset)
    rng = np.random.default_rng(seed)
    noisy = test * (1 + rng.normal(0, 0.004, len(STEPS)))
    assert tau_mem(STEPS, train, test) == pytest.approx(onset, rel=1e-6)    # exact without noise
    assert within_one_interval(tau_mem(STEPS, train, noisy), onset)


def test_tau_mem_needs_a_turn_and_a_falling_train_loss():
    train, test = turning_losses(500)
    assert math.isnan(tau_mem(STEPS, train, 1 / np.sqrt(STEPS)))           # the test loss still falls
    both_up = np.where(STEPS < 500, train, train[STEPS < 500][-1] * (STEPS / 500) ** 0.2)
    assert math.isnan(tau_mem(STEPS, both_up, test))                       # both rise: instability, not memorization
    assert math.isnan(tau_mem([], [], []))
    assert math.isnan(tau_mem([10, 20], [1.0, 0.5], [np.nan, np.nan]))


def test_tau_mem_orders_onsets_where_a_gap_threshold_does_not():
    # two runs whose test losses turn up at 200 and 800, the later one with a larger generalization gap (0.25)
    # before its turn: the relative-gap crossing at 0.2 puts it first, the turning point does not
    _, early_test = turning_losses(200)
    early_train = early_test * (1 - gap_curve(STEPS, onset=200, growth=3))
    _, late_test = turning_losses(800)
    late_train = late_test * (1 - np.maximum(0.25, gap_curve(STEPS, onset=800, growth=3)))
    assert tau_mem(STEPS, early_train, early_test) == pytest.approx(200, rel=1e-6)
    assert tau_mem(STEPS, late_train, late_test) == pytest.approx(800, rel=1e-6)
    assert tau_gap(STEPS, late_train, late_test) < tau_gap(STEPS, early_train, early_test)


def test_tau_test_min_by_t_finds_each_noise_levels_turn():
    onsets = [100.0, 400.0, 1600.0]
    table = np.column_stack([turning_losses(o)[1] for o in onsets]).tolist()
    found = tau_test_min_by_t(STEPS, table)
    assert found == pytest.approx(onsets, rel=1e-6)
    assert tau_test_min_by_t(STEPS, [None] * len(STEPS)) == []             # no per-bin losses logged
    assert tau_test_min_by_t(STEPS[:3], table) == []


# -- tau_gen (the start of the generalization window) ------------------------------------------------------------
def test_tau_gen_first_step_within_tolerance_of_the_best():
    x = np.log10(STEPS)
    sw = 0.2 * (1 + 2 * np.clip(2.5 - x, 0, None))                          # falls to 0.2 at step ~316, then flat
    # within 10% of 0.2: 2 * (2.5 - x) <= 0.1, i.e. x >= 2.45
    assert tau_gen(STEPS, sw) == pytest.approx(10 ** 2.45, rel=1e-6)
    assert tau_gen(STEPS, sw, tolerance=0.5) == pytest.approx(10 ** 2.25, rel=1e-6)
    spiky = sw.copy()
    spiky[3] = 0.19                                                        # one low outlier early on
    assert tau_gen(STEPS, spiky) == pytest.approx(10 ** 2.45, rel=1e-6)
    late_best = np.where(x > 3.5, 0.1, sw)                                  # a second, deeper descent late
    assert tau_gen(STEPS, late_best) > 10 ** 3.4
    assert math.isnan(tau_gen(STEPS, np.full(len(STEPS), np.nan)))


def test_tau_test_min():
    x = np.log10(STEPS)
    test = 0.7 + 0.1 * (x - math.log10(300)) ** 2
    assert tau_test_min(STEPS, test) == pytest.approx(300, rel=1e-6)      # exact for a parabola in log step
    rng = np.random.default_rng(1)
    noisy = test + rng.normal(0, 0.003, len(STEPS))
    assert within_one_interval(tau_test_min(STEPS, noisy), 300)
    assert math.isnan(tau_test_min(STEPS, 1 / np.sqrt(STEPS)))            # still falling: not reached
    flat_end = np.where(STEPS < 5000, 1 / np.sqrt(STEPS), 1 / np.sqrt(5000) * 1.001)
    assert math.isnan(tau_test_min(STEPS, flat_end))                      # a hair's rise is not a turn


# -- mem_ratio -----------------------------------------------------------------------------------------------------
def test_mem_crossings_of_a_sigmoid_in_log_step():
    width = 0.15
    mem = 1 / (1 + np.exp(-(np.log10(STEPS) - math.log10(800)) / width))
    assert mem_crossing_step(STEPS, mem, 0.5) == pytest.approx(800, rel=0.01)
    expected_01 = 10 ** (math.log10(800) + width * math.log(0.1 / 0.9))
    assert mem_crossing_step(STEPS, mem, 0.1) == pytest.approx(expected_01, rel=0.03)
    assert math.isnan(mem_crossing_step(STEPS, 0.4 * mem, 0.5))


def test_mem_rate_is_the_slope_per_decade_after_tau():
    steps = np.geomspace(10, 1e5, 41)                  # log10 steps 1.0, 1.1, ..., 5.0
    mem = np.clip(0.5 * (np.log10(steps) - 2), 0, 1)   # 0.5 per decade from step 100, saturates at 10^4
    mem[3] = 0.3                                       # a blip before tau_mem is ignored
    assert mem_rate(steps, mem, tau=50) == pytest.approx(0.5, rel=1e-9)
    assert mem_rate(steps * 7.0, mem, tau=50 * 7.0) == pytest.approx(0.5, rel=1e-9)   # normalized: same slope
    assert math.isnan(mem_rate(steps, np.zeros_like(steps), tau=50))
    clean = np.clip(0.5 * (np.log10(steps) - 2), 0, 1)
    assert mem_rate(steps, clean, tau=float("nan")) == pytest.approx(0.5, rel=1e-9)   # whole curve


def test_best_before_tau():
    steps = [10, 20, 40, 80, 160]
    sw = [0.5, 0.3, 0.2, 0.1, 0.4]
    assert best_before(steps, sw, 50) == 0.2
    assert best_before(steps, sw, float("nan")) == 0.1
    assert math.isnan(best_before(steps, [np.nan] * 5, 50))
    assert argmin_step(steps, sw) == 80
    assert last_value([0.1, 0.5, np.nan]) == 0.5


# -- a run's frame and the summary ---------------------------------------------------------------------------------
def synthetic_rows(onset, steps=STEPS, fid=True):
    gap = gap_curve(steps, onset=onset, growth=3)
    test = 0.8 + 0.1 * np.log10(steps / onset) ** 2                        # turns up at the onset
    train = test * (1 - gap)
    mem = 1 / (1 + np.exp(-(np.log10(steps) - math.log10(onset * 4)) / 0.15))
    rows = []
    for i, s in enumerate(steps):
        row = {"step": int(round(s)), "train_loss": train[i], "test_loss": test[i], "loss_gap": test[i] - train[i],
               "train_loss_by_t": [train[i]] * 4, "test_loss_by_t": [test[i]] * 4, "mem_ratio": mem[i],
               "nn_dist": 1.0, "sw_train": 0.2 + abs(math.log10(s / onset)) * 0.05,
               "sw_test": 0.21 + abs(math.log10(s / onset)) * 0.05}
        if fid:
            row.update(fid_train=5.0, fid_test=6.0)
        rows.append(row)
    return rows


def test_metrics_frame_sorts_dedups_and_fills_missing_keys():
    rows = [{"step": 20, "train_loss": 1.0, "test_loss": 2.0}, {"step": 10, "train_loss": 1.0, "test_loss": 1.0},
            {"step": 20, "train_loss": 0.5, "test_loss": 1.0}]
    f = metrics_frame(rows)
    assert f["step"].tolist() == [10, 20]
    assert f["train_loss"].tolist() == [1.0, 0.5]        # the last row written for a step wins
    assert f["rel_gap"].tolist() == [0.0, 0.5]
    assert f["fid_test"].isna().all() and f["mem_ratio"].isna().all()
    assert len(metrics_frame([])) == 0


def test_analyze_run_on_a_synthetic_run():
    f = metrics_frame(synthetic_rows(onset=500, fid=False))
    out = analyze_run(f, norm_factor=2.0)
    assert out["tau_mem"] == pytest.approx(500, rel=0.01)
    assert within_one_interval(out["tau_gap"], 500 * 3 ** (0.2 / 0.9), ratio=RATIO * 1.01)
    # sw_test = 0.21 + 0.05 |log10(s / 500)|: its running median's minimum is 0.215 (one grid step, 0.1 decade,
    # from the vertex), and 1.1 * 0.215 is reached 0.53 decades before 500
    assert out["tau_gen"] == pytest.approx(500 * 10 ** -0.53, rel=0.02)
    assert out["window"] == pytest.approx(out["tau_mem"] / out["tau_gen"])
    assert [out[f"tau_t{k}"] for k in range(4)] == pytest.approx([500] * 4, rel=0.01)
    assert out["tau_mem_norm"] == pytest.approx(2 * out["tau_mem"])
    assert out["step_mem_0.5"] == pytest.approx(2000, rel=0.01)
    assert out["mem_rate"] > 0
    assert out["best_sw"] >= out["best_sw_all"]
    assert math.isnan(out["best_fid"])                   # no FID logged
    assert out["final_step"] == 10000 and out["n_evals"] == len(STEPS)
    assert out["final_mem_ratio"] == pytest.approx(1 / (1 + math.exp(-math.log10(5) / 0.15)))


def make_run(run_id, n, onset, seed=0, state="finished", rows=None, batch_size=32, lr=1e-3):
    rows = synthetic_rows(onset) if rows is None else rows
    return RunData(run_id, state, {"data.n": n, "seed": seed},
                     {"n": n, "model": "tiny", "batch_size": batch_size, "lr": lr, "seed": seed, "total_steps": 10000},
                     metrics_frame(rows))


def test_summary_table_one_row_per_run_with_the_columns():
    runs = [make_run("a", 16, 200), make_run("b", 32, 400), make_run("c", 64, 800, state="diverged", rows=[]),
            make_run("d", 128, 1600, state="pending", rows=synthetic_rows(1600)[:2])]
    df = summary_table(runs)
    assert list(df.columns[:len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    assert df["run_id"].tolist() == ["a", "b", "c", "d"]
    assert df.set_index("run_id").loc["c", "state"] == "diverged"
    assert math.isnan(df.set_index("run_id").loc["c", "tau_mem"])
    assert df.set_index("run_id").loc["b", "norm_factor"] == pytest.approx(0.5)     # n0 = 16
    assert df.set_index("run_id").loc["a", "tau_mem"] < df.set_index("run_id").loc["b", "tau_mem"]


# -- fits -------------------------------------------------------------------------------------------------------------
def test_linear_fit():
    fit = linear_fit([1, 2, 3, 4], [3, 5, 7, 9])
    assert fit["slope"] == pytest.approx(2) and fit["intercept"] == pytest.approx(1) and fit["r2"] == pytest.approx(1)
    assert math.isnan(linear_fit([1], [2])["slope"])


def test_power_law_recovers_exponent_within_ci():
    n = 2.0 ** np.arange(4, 11)
    exact = power_law_fit(n, 3 * n ** 1.5)
    assert exact["exponent"] == pytest.approx(1.5) and exact["prefactor"] == pytest.approx(3)
    rng = np.random.default_rng(0)
    fit = power_law_fit(n, 3 * n ** 1.5 * np.exp(rng.normal(0, 0.1, len(n))))
    assert fit["exponent_lo"] < 1.5 < fit["exponent_hi"]
    assert fit["exponent_hi"] - fit["exponent_lo"] < 0.3
    assert fit["n_points"] == 7


def test_power_law_ci_covers_about_95_percent():
    rng = np.random.default_rng(1)
    n = np.array([16, 32, 64, 128])
    hits = 0
    for _ in range(400):
        fit = power_law_fit(n, 5 * n ** 1.2 * np.exp(rng.normal(0, 0.2, 4)))
        hits += fit["exponent_lo"] <= 1.2 <= fit["exponent_hi"]
    assert 0.92 <= hits / 400 <= 0.98


def test_power_law_needs_three_points_for_a_ci():
    two = power_law_fit([10, 100], [5, 50])
    assert two["exponent"] == pytest.approx(1) and math.isnan(two["exponent_lo"])
    assert math.isnan(power_law_fit([10], [5])["exponent"])
    assert math.isnan(power_law_fit([10, 100, 1000], [np.nan, -1, 5])["exponent"])   # non-positive / NaN dropped


def test_scaling_fits_every_run_a_point_and_count_missing():
    rows = []
    for n in (16, 32, 64, 128):
        for seed in (0, 1):
            tau = 10 * n ** 1.5 * (1.1 if seed else 1 / 1.1)
            rows.append({"run_id": f"{n}-{seed}", "n": n, "seed": seed, "tau_mem": tau, "norm_factor": 1.0})
    rows.append({"run_id": "256-0", "n": 256, "seed": 0, "tau_mem": np.nan, "norm_factor": 1.0})
    summary = pd.DataFrame(rows)
    fits = scaling_fits(summary, ["n", "seed"], metrics=("tau_mem",))
    assert len(fits) == 1
    fit = fits.iloc[0]
    assert fit["exponent"] == pytest.approx(1.5)         # the seeds' +-10% cancel (as many at each n)
    assert fit["n_values"] == 4 and fit["n_points"] == 8 and fit["n_runs"] == 8 and fit["n_missing"] == 1
    means = power_law_fit([16, 32, 64, 128], [10 * n ** 1.5 for n in (16, 32, 64, 128)])
    assert fit["exponent_hi"] - fit["exponent_lo"] > means["exponent_hi"] - means["exponent_lo"]  # replicates' noise
    assert fit["slope"] > 0 and 0 < fit["r2"] <= 1


def test_scaling_fits_slices_crossed_axes_not_zipped_ones():
    rows = []
    for n in (16, 32, 64):
        for b, lr in ((32, 1e-3), (64, 2e-3)):
            rows.append({"run_id": f"{n}-{b}", "n": n, "batch_size": b, "lr": lr, "tau_mem": 10 * n / b,
                         "norm_factor": 1.0})
    summary = pd.DataFrame(rows)
    fits = scaling_fits(summary, ["n", "batch_size", "lr"], metrics=("tau_mem",))
    by_n = fits[fits.axis == "n"]
    assert sorted(by_n["fixed"]) == ["batch_size=32, lr=0.001", "batch_size=64, lr=0.002", POOLED]
    np.testing.assert_allclose(by_n["exponent"], 1.0)
    by_b = fits[(fits.axis == "batch_size") & (fits.fixed != POOLED)]
    assert len(by_b) == 3 and all("lr" not in f for f in by_b["fixed"])   # lr is zipped with B
    np.testing.assert_allclose(by_b["exponent"], -1.0)
    assert numeric_axis_column(pd.DataFrame({"model": ["c32", "c64"], "params": [1e6, 4e6]}), "model") == "params"
    assert numeric_axis_column(pd.DataFrame({"model": ["c32", "c64"]}), "model") is None


def test_pooled_fit_shares_one_exponent_across_slices():
    rng = np.random.default_rng(2)
    n = np.array([16, 32, 64, 128] * 3, float)
    groups = np.repeat(["a", "b", "c"], 4)
    prefactor = {"a": 1.0, "b": 10.0, "c": 100.0}          # very different prefactors, same exponent
    y = np.array([prefactor[g] for g in groups]) * n ** 1.3 * np.exp(rng.normal(0, 0.05, len(n)))
    fit = pooled_power_law_fit(n, y, groups)
    assert fit["exponent_lo"] < 1.3 < fit["exponent_hi"] and fit["n_points"] == 12
    assert math.isnan(pooled_power_law_fit([16, 32], [1, 2], ["a", "b"])["exponent"])   # not identified
    summary = pd.DataFrame({"run_id": [str(i) for i in range(12)], "n": n, "model": groups, "tau_mem": y,
                            "norm_factor": 1.0})
    fits = scaling_fits(summary, ["model", "n"], metrics=("tau_mem",))
    pooled = fits[(fits.axis == "n") & (fits.fixed == POOLED)].iloc[0]
    assert pooled["exponent"] == pytest.approx(fit["exponent"]) and pooled["n_runs"] == 12
    assert len(fits[(fits.axis == "n") & (fits.fixed != POOLED)]) == 3
