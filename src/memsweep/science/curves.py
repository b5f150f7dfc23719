"""Analysis of a sweep: when each run starts to memorize, how fast, how good it got before, and how these
quantities scale with the swept axes.

Everything here is a pure function of numpy arrays / pandas frames (the run store is read in report.py), so
each quantity is unit-tested on synthetic curves with known answers.

Definitions (also stated in every report):

* normalized step: s_norm = s * (B / B0) * (lr / lr0) / (n / n0), with n0, B0, lr0 the smallest values in the
  sweep (Marion & Wu 2026, section 4). Curves should collapse in n and B under this rescaling.
* relative loss gap: g(s) = (test_loss - train_loss) / test_loss, 0 while the model does as well on unseen
  images as on its training images, -> 1 when it fits its training images far better than unseen ones.
* tau_mem (onset of memorization, the primary estimate; Bonnaire et al.: "beyond a critical time L_train
  continues to decrease while L_test increases"): the turning point of the test loss, i.e. the step of its
  minimum (smoothed with (1, 2, 1)/4 weights over neighbouring evaluations, refined by a parabola in log(step)
  through the minimum and its two neighbours), provided the test loss has then risen by at least `min_rise` (1%)
  above that minimum by the last evaluation while the train loss kept falling (lower at the end than at the
  turn). NaN if the minimum is at the last evaluation (not turned yet). Why: it is the paper's words; it needs no
  threshold; the losses are computed on fixed (image, noise, t) triples, so the curve is smooth and its minimum
  well defined. On data (scripts/compare_onsets.py): on the demo's grid (n = 12 to 96, 3 seeds) it increased
  with n in every seed, exponent 0.79 [0.57, 1.00] (per seed 0.73 to 0.84), while the relative-gap crossing's
  exponent moved from 0.28 to 0.64 with its threshold (0.1 to 0.4); on the previous demo (n = 16 to 64, 1.33x to
  1.5x apart) the crossing at 0.2 fell from n = 48 to 64 while the turning point still rose.
  tau_test_min is the same function without the train-loss condition (kept for old reports' column name).
* tau_gap (the relative-gap crossing, the previous primary, labelled beside it): the first step after which the
  relative gap, lightly smoothed (running median of 3 evaluations), stays at or above `threshold` (default 0.2)
  at every later evaluation, with at least `min_points` (2) evaluations above; log-interpolated between the two
  evaluations around it. NaN if the gap never crosses for good; the first evaluated step (an upper bound) if it
  is above from the first evaluation on. Its exponent against n depends on the threshold (the report shows 0.1,
  0.2 and 0.4 side by side).
* tau_test_min_by_t (the onset per noise level): tau_test_min of the test loss in each t bin
  (test_loss_by_t), one value per bin; the report fits each bin's against n (which noise levels' onset scales).
* tau_gen (the start of the generalization window, Bonnaire et al.): the first step at which the sample quality,
  sw_test smoothed by a running median of 3 evaluations, comes within `tolerance` (10%) of the run's best
  (smoothed) value: smoothed sw_test <= (1 + tolerance) * min, log-interpolated from the evaluation before.
  tau_gen_fid likewise on fid_test. NaN without such values. The window is tau_mem / tau_gen (> 1: samples were
  good before the loss gap opened; <= 1: no window).
* step_mem_0.1, step_mem_0.5: the first step at which mem_ratio reaches 0.1 / 0.5 (log-interpolated between
  evaluations; NaN if it never does).
* mem_rate: least-squares slope of mem_ratio against log10(normalized step) (per decade of steps; identical
  against log10(step), the normalization only shifts the axis) over the rising part after tau_mem: the
  evaluations at or after tau_mem, starting at the last one where mem_ratio is still 0, up to and including the
  first one where mem_ratio reaches `saturation` (0.95). The whole curve is used when tau_mem is NaN. NaN with
  fewer than 2 such points or if mem_ratio does not reach 0.1 there.
* best_sw, best_sw_train (best_fid, best_fid_train): minimum of sw_test, sw_train (fid_test, fid_train) over the
  evaluations at or before tau_mem (the whole curve if tau_mem is NaN).
  Also reported: best_sw_all, the minimum of sw_test over the whole run, and step_best_sw, where it is reached
  (so the report can say whether the best samples came before or after tau_mem).
* final_mem_ratio: mem_ratio at the last evaluation that has one; final_field_dist likewise for field_dist.
* <curve>_dips, <curve>_dip1_step, _dip1_depth, _dip2_step, _dip2_depth for sw_train, sw_test, fid_train,
  fid_test: the double-descent dips of the curve (dips.py).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from memsweep.science.dips import dip_columns
from memsweep.science.series import (best_before, argmin_step, finite, first_crossing, last_value, running_median,
                                     smooth_121, sustained_crossing)


DEFAULT_GAP_THRESHOLD = 0.2

MEM_LEVELS = (0.1, 0.5)

SATURATION = 0.95

# swept config keys -> summary columns

GEN_TOLERANCE = 0.1

# the onset estimates fitted against the axes: the primary first, then the others, labelled
ONSET_METRICS = ("tau_mem", "tau_gap", "step_mem_0.1", "step_mem_0.5")

FIT_METRICS = ONSET_METRICS + ("tau_gen", "mem_rate", "best_sw", "best_sw_all")

def relative_gap(train_loss, test_loss) -> np.ndarray:
    """(test - train) / test."""
    train = np.asarray(train_loss, float)
    test = np.asarray(test_loss, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (test - train) / test

def tau_gap(steps, train_loss, test_loss, threshold: float = DEFAULT_GAP_THRESHOLD, window: int = 3,
            min_points: int = 2) -> float:
    """The relative-gap onset: the first step after which the relative gap (test - train) / test, smoothed by
    a running median of `window` evaluations, stays >= `threshold` at every later evaluation (at least
    `min_points` of them); log-interpolated between evaluations. NaN if that never happens."""
    s, g = finite(steps, relative_gap(train_loss, test_loss))
    if len(s) == 0:
        return float("nan")
    return sustained_crossing(s, running_median(g, window), threshold, min_points)

def tau_test_min(steps, test_loss, min_rise: float = 0.01) -> float:
    """Step of the minimum of the lightly smoothed test loss, refined by a parabola in log(step) through the
    minimum and its neighbours. NaN if the minimum is at the last evaluation, or the test loss at the end is
    not at least `min_rise` (relative) above the minimum (it has not turned up yet)."""
    s, y = finite(steps, test_loss)
    if len(s) < 3:
        return float("nan")
    ys = smooth_121(y)
    i = int(np.argmin(ys))
    if i == len(ys) - 1 or ys[-1] < ys[i] * (1 + min_rise):
        return float("nan")
    if i == 0:
        return float(s[0])
    x = np.log10(s[i - 1:i + 2])
    a, b, _ = np.polyfit(x, ys[i - 1:i + 2], 2)
    xv = -b / (2 * a) if a > 0 else x[1]
    return float(10 ** np.clip(xv, x[0], x[2]))

def tau_mem(steps, train_loss, test_loss, min_rise: float = 0.01) -> float:
    """The primary onset of memorization: the turning point of the test loss (tau_test_min), provided the train
    loss kept falling after it (lower at the last evaluation than at the turn). NaN otherwise."""
    tau = tau_test_min(steps, test_loss, min_rise)
    s, y = finite(steps, train_loss)
    if math.isnan(tau) or len(s) < 2:
        return float("nan")
    if not y[-1] < np.interp(math.log10(tau), np.log10(s), smooth_121(y)):
        return float("nan")
    return tau

def tau_test_min_by_t(steps, test_loss_by_t, min_rise: float = 0.01) -> list[float]:
    """tau_test_min of each noise level's test loss (rows: evaluations, columns: t bins); [] without data."""
    rows = [r for r in test_loss_by_t if isinstance(r, (list, tuple, np.ndarray))]
    if not rows or len(rows) != len(steps) or len({len(r) for r in rows}) != 1:
        return []
    table = np.asarray(rows, float)
    return [tau_test_min(steps, table[:, k], min_rise) for k in range(table.shape[1])]

def tau_gen(steps, quality, tolerance: float = GEN_TOLERANCE, window: int = 3) -> float:
    """Start of the generalization window: the first step at which `quality` (a distance, lower is better:
    sw_test, fid_test), smoothed by a running median of `window` evaluations, is within `tolerance` (relative)
    of its smoothed minimum; log-interpolated from the evaluation before. NaN without finite values."""
    s, q = finite(steps, quality)
    if len(s) == 0:
        return float("nan")
    sm = running_median(q, window)
    return first_crossing(s, -sm, -(1 + tolerance) * float(np.min(sm)))

def mem_crossing_step(steps, mem_ratio, level) -> float:
    """First step at which mem_ratio reaches `level` (log-interpolated; NaN if never)."""
    return first_crossing(steps, mem_ratio, level)

def mem_rate(steps, mem_ratio, tau: float, saturation: float = SATURATION, min_level: float = MEM_LEVELS[0]
             ) -> float:
    """Slope of mem_ratio per decade of `steps` (pass normalized steps) over the rising part after `tau` (in
    the same units as `steps`): from the last evaluation at or after tau where mem_ratio is 0, up to and
    including the first where it reaches `saturation`. The whole curve if tau is NaN. NaN if mem_ratio does
    not reach `min_level` there (no memorization phase to measure)."""
    s, m = finite(steps, mem_ratio)
    if not math.isnan(tau):
        keep = s >= tau * (1 - 1e-9)
        s, m = s[keep], m[keep]
    nonzero = np.nonzero(m > 0)[0]
    if len(nonzero) == 0:
        return float("nan")
    start = max(nonzero[0] - 1, 0)
    sat = np.nonzero(m[start:] >= saturation)[0]
    end = start + sat[0] if len(sat) else len(m) - 1
    x, y = np.log10(s[start:end + 1]), m[start:end + 1]
    if len(x) < 2 or np.ptp(x) == 0 or y.max() < min_level:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])

SCALAR_KEYS = ("step", "train_loss", "test_loss", "loss_gap", "mem_ratio", "nn_dist", "sw_train", "sw_test",
               "fid_train", "fid_test", "field_dist")

def metrics_frame(rows: list[dict]) -> pd.DataFrame:
    """metrics.jsonl rows as a frame sorted by step (one row per step, the last written wins), with every
    scalar key present (NaN where missing) and rel_gap added."""
    rows = [r for r in rows if isinstance(r, dict) and r.get("step") is not None]
    df = pd.DataFrame(rows)
    for key in SCALAR_KEYS:
        if key not in df:
            df[key] = np.nan
        else:
            df[key] = pd.to_numeric(df[key], errors="coerce")
    for key in ("train_loss_by_t", "test_loss_by_t"):
        if key not in df:
            df[key] = None
    if len(df):
        df = df.drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)
    df["rel_gap"] = relative_gap(df["train_loss"], df["test_loss"])
    return df

def analyze_run(frame: pd.DataFrame, norm_factor: float = 1.0, threshold: float = DEFAULT_GAP_THRESHOLD) -> dict:
    """The per-run quantities (see the module docstring) from a metrics_frame."""
    s = frame["step"].to_numpy(float) if len(frame) else np.array([])
    col = (lambda k: frame[k].to_numpy(float)) if len(frame) else (lambda k: np.array([]))
    tau = tau_mem(s, col("train_loss"), col("test_loss")) if len(s) else float("nan")
    gen = tau_gen(s, col("sw_test"))
    out = {"tau_mem": tau,
           "tau_gap": tau_gap(s, col("train_loss"), col("test_loss"), threshold) if len(s) else float("nan"),
           "tau_test_min": tau_test_min(s, col("test_loss")),
           "tau_gen": gen,
           "tau_gen_fid": tau_gen(s, col("fid_test")),
           "window": tau / gen if gen > 0 else float("nan"),
           "mem_rate": mem_rate(s * norm_factor, col("mem_ratio"), tau * norm_factor),
           "best_sw": best_before(s, col("sw_test"), tau),
           "best_sw_train": best_before(s, col("sw_train"), tau),
           "best_fid": best_before(s, col("fid_test"), tau),
           "best_fid_train": best_before(s, col("fid_train"), tau),
           "best_sw_all": best_before(s, col("sw_test"), float("nan")),
           "step_best_sw": argmin_step(s, col("sw_test")),
           "final_mem_ratio": last_value(col("mem_ratio")),
           "final_step": float(s.max()) if len(s) else float("nan"),
           "n_evals": int(len(s)),
           "norm_factor": float(norm_factor),
           "tau_mem_norm": tau * norm_factor,
           "tau_gen_norm": gen * norm_factor}
    by_t = tau_test_min_by_t(s, frame["test_loss_by_t"].tolist()) if len(frame) else []
    for k, value in enumerate(by_t):
        out[f"tau_t{k}"] = value
    for level in MEM_LEVELS:
        out[f"step_mem_{level}"] = mem_crossing_step(s, col("mem_ratio"), level)
    out["final_field_dist"] = last_value(col("field_dist"))
    out.update(dip_columns(frame))
    return out
