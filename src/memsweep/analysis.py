"""Analysis of a sweep: when each run starts to memorize, how fast, how good it got before, and how these
quantities scale with the swept axes.

Everything here is a pure function of numpy arrays / pandas frames (the run store is read in report.py), so
each quantity is unit-tested on synthetic curves with known answers.

Definitions (also stated in every report):

* normalized step: s_norm = s * (B / B0) * (lr / lr0) / (n / n0), with n0, B0, lr0 the smallest values in the
  sweep (science.md section 4). Curves should collapse in n and B under this rescaling.
* relative loss gap: g(s) = (test_loss - train_loss) / test_loss, 0 while the model does as well on unseen
  images as on its training images, -> 1 when it fits its training images far better than unseen ones.
* tau_mem (onset of memorization, "the step at which the test loss begins to diverge from the train loss"):
  the first step after which the relative gap, lightly smoothed (running median of 3 evaluations), stays at or
  above `threshold` (default 0.2) at every later evaluation, with at least `min_points` (2) evaluations above.
  The crossing step is interpolated linearly in log(step) between the two evaluations around it. NaN if the
  gap never crosses for good (e.g. a large-n run whose gap grows slowly to ~0.1 without memorizing); the first
  evaluated step (an upper bound) if the gap is above the threshold from the first evaluation on.
  Why this definition: the absolute gap depends on the loss scale (dataset, t grid), the relative gap does not;
  a small generalization gap (~0.1) appears in every run, memorizing or not, while memorizing runs go to ~0.9,
  so 0.2 separates the two regimes; requiring the gap to *stay* above makes one noisy evaluation irrelevant,
  and the running median removes single dips and spikes. The exponent of tau_mem against n does depend on the
  threshold (the report shows 0.1, 0.2 and 0.4 side by side).
* tau_test_min (second onset estimate, threshold-free): the step of the minimum of the test loss (smoothed with
  (1, 2, 1)/4 weights over neighbouring evaluations, refined by a parabola in log(step) through the minimum and
  its two neighbours), i.e. where the test loss turns up while the train loss keeps falling (Bonnaire et al.).
  NaN if the minimum is at the last evaluation or the test loss has not risen by `min_rise` (1%) above it.
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

DEFAULT_GAP_THRESHOLD = 0.2
MEM_LEVELS = (0.1, 0.5)
SATURATION = 0.95

# swept config keys -> summary columns
AXIS_COLUMNS = {"data.n": "n", "model": "model", "model.name": "model", "train.batch_size": "batch_size",
                "optim.lr": "lr", "seed": "seed"}
ONSET_METRICS = ("tau_mem", "tau_test_min", "step_mem_0.1", "step_mem_0.5")
FIT_METRICS = ONSET_METRICS + ("mem_rate", "best_sw", "best_sw_all")
SUMMARY_COLUMNS = ["run_id", "state", "n", "model", "batch_size", "lr", "seed", "tau_mem", "tau_test_min",
                   "step_mem_0.1", "step_mem_0.5", "mem_rate", "best_sw", "best_sw_train", "best_fid",
                   "best_fid_train", "best_sw_all", "step_best_sw", "final_mem_ratio", "final_step", "total_steps",
                   "n_evals", "norm_factor", "tau_mem_norm", "params"]


def axis_column(key: str) -> str:
    """The summary column of a swept config key (data.n -> n, ...); other keys keep their name."""
    return AXIS_COLUMNS.get(key, key)


# -- normalized time ------------------------------------------------------------------------------------------
def normalization_factor(n, batch_size, lr, n0, b0, lr0):
    """(B / B0) * (lr / lr0) / (n / n0): multiply a step by this to get the normalized step."""
    return (np.asarray(batch_size, float) / b0) * (np.asarray(lr, float) / lr0) / (np.asarray(n, float) / n0)


def normalized_step(step, n, batch_size, lr, n0, b0, lr0):
    """s_norm = s * (B / B0) * (lr / lr0) / (n / n0)."""
    return np.asarray(step, float) * normalization_factor(n, batch_size, lr, n0, b0, lr0)


def reference_values(n, batch_size, lr) -> dict:
    """n0, B0, lr0: the smallest values in the sweep."""
    def smallest(values):
        v = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(float)
        v = v[np.isfinite(v)]
        return float(v.min()) if len(v) else float("nan")
    return {"n0": smallest(n), "b0": smallest(batch_size), "lr0": smallest(lr)}


# -- small curve tools ----------------------------------------------------------------------------------------
def _finite(steps, values):
    steps = np.asarray(steps, float)
    values = np.asarray(values, float)
    ok = np.isfinite(steps) & np.isfinite(values) & (steps > 0)
    order = np.argsort(steps[ok], kind="stable")
    return steps[ok][order], values[ok][order]


def _log_interp(s_a, s_b, y_a, y_b, level) -> float:
    """The step between s_a and s_b at which the line through (log s, y) reaches `level`."""
    if y_b == y_a:
        return float(s_b)
    frac = float(np.clip((level - y_a) / (y_b - y_a), 0.0, 1.0))
    return float(10 ** (math.log10(s_a) + frac * (math.log10(s_b) - math.log10(s_a))))


def running_median(values, window: int = 3) -> np.ndarray:
    """Median over `window` consecutive points; at the ends, the first / last `window` points."""
    values = np.asarray(values, float)
    m = len(values)
    if window <= 1 or m < window:
        return values.copy()
    out = np.empty(m)
    half = window // 2
    for i in range(m):
        lo = min(max(i - half, 0), m - window)
        out[i] = np.median(values[lo:lo + window])
    return out


def smooth_121(values) -> np.ndarray:
    """(1, 2, 1)/4 weights over neighbouring points; (2, 1)/3 at the ends."""
    v = np.asarray(values, float)
    if len(v) < 3:
        return v.copy()
    out = v.copy()
    out[1:-1] = (v[:-2] + 2 * v[1:-1] + v[2:]) / 4
    out[0] = (2 * v[0] + v[1]) / 3
    out[-1] = (2 * v[-1] + v[-2]) / 3
    return out


def first_crossing(steps, values, level) -> float:
    """First step at which `values` reaches `level` (>=), log-interpolated from the evaluation before; the
    first step if it is there already; NaN if never."""
    s, v = _finite(steps, values)
    above = np.nonzero(v >= level)[0]
    if len(above) == 0:
        return float("nan")
    i = above[0]
    return float(s[0]) if i == 0 else _log_interp(s[i - 1], s[i], v[i - 1], v[i], level)


def sustained_crossing(steps, values, level, min_points: int = 2) -> float:
    """First step after which `values` stays >= `level` at every later point (log-interpolated from the last
    point below), with at least `min_points` points at or above; NaN otherwise. The first step if every point
    is above (the crossing happened at or before it)."""
    s, v = _finite(steps, values)
    if len(v) == 0 or v[-1] < level:
        return float("nan")
    below = np.nonzero(v < level)[0]
    k = below[-1] if len(below) else -1
    if len(v) - (k + 1) < min_points:
        return float("nan")
    return float(s[0]) if k < 0 else _log_interp(s[k], s[k + 1], v[k], v[k + 1], level)


# -- per-run quantities ---------------------------------------------------------------------------------------
def relative_gap(train_loss, test_loss) -> np.ndarray:
    """(test - train) / test."""
    train = np.asarray(train_loss, float)
    test = np.asarray(test_loss, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (test - train) / test


def tau_mem(steps, train_loss, test_loss, threshold: float = DEFAULT_GAP_THRESHOLD, window: int = 3,
            min_points: int = 2) -> float:
    """Onset of memorization: the first step after which the relative gap (test - train) / test, smoothed by
    a running median of `window` evaluations, stays >= `threshold` at every later evaluation (at least
    `min_points` of them); log-interpolated between evaluations. NaN if that never happens."""
    s, g = _finite(steps, relative_gap(train_loss, test_loss))
    if len(s) == 0:
        return float("nan")
    return sustained_crossing(s, running_median(g, window), threshold, min_points)


def tau_test_min(steps, test_loss, min_rise: float = 0.01) -> float:
    """Step of the minimum of the lightly smoothed test loss, refined by a parabola in log(step) through the
    minimum and its neighbours. NaN if the minimum is at the last evaluation, or the test loss at the end is
    not at least `min_rise` (relative) above the minimum (it has not turned up yet)."""
    s, y = _finite(steps, test_loss)
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


def mem_crossing_step(steps, mem_ratio, level) -> float:
    """First step at which mem_ratio reaches `level` (log-interpolated; NaN if never)."""
    return first_crossing(steps, mem_ratio, level)


def mem_rate(steps, mem_ratio, tau: float, saturation: float = SATURATION, min_level: float = MEM_LEVELS[0]
             ) -> float:
    """Slope of mem_ratio per decade of `steps` (pass normalized steps) over the rising part after `tau` (in
    the same units as `steps`): from the last evaluation at or after tau where mem_ratio is 0, up to and
    including the first where it reaches `saturation`. The whole curve if tau is NaN. NaN if mem_ratio does
    not reach `min_level` there (no memorization phase to measure)."""
    s, m = _finite(steps, mem_ratio)
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


def best_before(steps, values, tau: float) -> float:
    """Minimum of `values` over the evaluations at or before `tau` (all of them if tau is NaN)."""
    s, v = _finite(steps, values)
    if not math.isnan(tau):
        v = v[s <= tau * (1 + 1e-9)]
    return float(np.min(v)) if len(v) else float("nan")


def argmin_step(steps, values) -> float:
    """The step of the minimum of `values` (NaN if none)."""
    s, v = _finite(steps, values)
    return float(s[np.argmin(v)]) if len(v) else float("nan")


def last_value(values) -> float:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(v[-1]) if len(v) else float("nan")


# -- a run's metrics ------------------------------------------------------------------------------------------
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


@dataclass
class RunData:
    """One run of a sweep, as read from the store."""
    run_id: str
    state: str
    axes: dict                       # swept key -> value for this run
    params: dict                     # n, model, batch_size, lr, seed, total_steps, params, ...
    frame: pd.DataFrame              # metrics_frame(...)
    status: dict = field(default_factory=dict)
    dir: Path | None = None

    @property
    def samples_dir(self) -> Path | None:
        return None if self.dir is None else Path(self.dir) / "samples"


def analyze_run(frame: pd.DataFrame, norm_factor: float = 1.0, threshold: float = DEFAULT_GAP_THRESHOLD) -> dict:
    """The per-run quantities (see the module docstring) from a metrics_frame."""
    s = frame["step"].to_numpy(float) if len(frame) else np.array([])
    col = (lambda k: frame[k].to_numpy(float)) if len(frame) else (lambda k: np.array([]))
    tau = tau_mem(s, col("train_loss"), col("test_loss"), threshold) if len(s) else float("nan")
    out = {"tau_mem": tau,
           "tau_test_min": tau_test_min(s, col("test_loss")),
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
           "tau_mem_norm": tau * norm_factor}
    for level in MEM_LEVELS:
        out[f"step_mem_{level}"] = mem_crossing_step(s, col("mem_ratio"), level)
    out["final_field_dist"] = last_value(col("field_dist"))
    from .dips import dip_columns   # double descent of SW and FID (dips.py imports this module's helpers)
    out.update(dip_columns(frame))
    return out


def summary_table(runs: list[RunData], threshold: float = DEFAULT_GAP_THRESHOLD, reference: dict | None = None
                  ) -> pd.DataFrame:
    """One row per run: identity, state, and the per-run quantities. `reference` (n0, b0, lr0) defaults to the
    smallest values among the runs."""
    if reference is None and runs:
        reference = reference_values([r.params.get("n", np.nan) for r in runs],
                                     [r.params.get("batch_size", np.nan) for r in runs],
                                     [r.params.get("lr", np.nan) for r in runs])
    records = []
    for r in runs:
        p = r.params
        factor = float(normalization_factor(p.get("n", np.nan), p.get("batch_size", np.nan), p.get("lr", np.nan),
                                            reference["n0"], reference["b0"], reference["lr0"]))
        if not np.isfinite(factor):
            factor = 1.0
        row = {"run_id": r.run_id, "state": r.state,
               **{k: p.get(k) for k in ("n", "model", "batch_size", "lr", "seed")}}
        row.update(analyze_run(r.frame, factor, threshold))
        row["total_steps"] = p.get("total_steps")
        row["params"] = p.get("params")
        for key, value in r.axes.items():
            row.setdefault(axis_column(key), value)
        records.append(row)
    df = pd.DataFrame(records)
    for c in SUMMARY_COLUMNS:
        if c not in df:
            df[c] = np.nan
    extra = [c for c in df.columns if c not in SUMMARY_COLUMNS]
    return df[SUMMARY_COLUMNS + extra]


# -- fits across runs -----------------------------------------------------------------------------------------
def linear_fit(x, y) -> dict:
    """Least-squares y = slope * x + intercept, with r^2 (NaN with fewer than 2 distinct x)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    nan = {"slope": np.nan, "intercept": np.nan, "r2": np.nan}
    if len(x) < 2 or np.ptp(x) == 0:
        return nan
    slope, intercept = np.polyfit(x, y, 1)
    ss_tot = np.sum((y - y.mean()) ** 2)
    r2 = 1 - np.sum((y - (slope * x + intercept)) ** 2) / ss_tot if ss_tot > 0 else np.nan
    return {"slope": float(slope), "intercept": float(intercept), "r2": float(r2)}


def power_law_fit(x, y, confidence: float = 0.95) -> dict:
    """y = prefactor * x^exponent by least squares on log10 y against log10 x (positive finite points only).
    The confidence interval of the exponent uses the t distribution with m - 2 degrees of freedom and the
    regression standard error; NaN with fewer than 3 points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[ok], y[ok]
    m = len(x)
    out = {"exponent": np.nan, "exponent_se": np.nan, "exponent_lo": np.nan, "exponent_hi": np.nan,
           "prefactor": np.nan, "r2_loglog": np.nan, "n_points": m}
    if m < 2 or np.ptp(np.log10(x)) == 0:
        return out
    lx, ly = np.log10(x), np.log10(y)
    slope, intercept = np.polyfit(lx, ly, 1)
    resid = ly - (slope * lx + intercept)
    ss_tot = np.sum((ly - ly.mean()) ** 2)
    out.update(exponent=float(slope), prefactor=float(10 ** intercept),
               r2_loglog=float(1 - np.sum(resid ** 2) / ss_tot) if ss_tot > 0 else np.nan)
    if m >= 3:
        sxx = np.sum((lx - lx.mean()) ** 2)
        se = math.sqrt(np.sum(resid ** 2) / (m - 2) / sxx)
        half = stats.t.ppf(0.5 + confidence / 2, m - 2) * se
        out.update(exponent_se=se, exponent_lo=float(slope - half), exponent_hi=float(slope + half))
    return out


def _determined_by(df: pd.DataFrame, col: str, other: str) -> bool:
    """True if each value of `col` goes with a single value of `other` (e.g. zipped axes)."""
    return bool((df.groupby(col, dropna=False)[other].nunique(dropna=False) <= 1).all())


def numeric_axis_column(summary: pd.DataFrame, col: str) -> str | None:
    """The numeric column to fit against for a swept column: itself if numeric; for a model axis the
    parameter count if known; None otherwise."""
    if col not in summary:
        return None
    values = pd.to_numeric(summary[col], errors="coerce")
    if values.notna().all() and (values > 0).all():
        return col
    if col == "model" and "params" in summary and pd.to_numeric(summary["params"], errors="coerce").gt(0).all():
        return "params"
    return None


def slices(summary: pd.DataFrame, col: str, axis_cols: list[str]) -> list[tuple[dict, pd.DataFrame]]:
    """Groups of runs in which only `col` (and axes determined by it, and the seed) varies."""
    others = [c for c in axis_cols if c not in (col, "seed") and c in summary
              and not _determined_by(summary, col, c) and summary[c].nunique(dropna=False) > 1]
    if not others:
        return [({}, summary)]
    return [(dict(zip(others, key if isinstance(key, tuple) else (key,))), group)
            for key, group in summary.groupby(others, dropna=False, sort=True)]


POOLED = "pooled"


def pooled_power_law_fit(x, y, groups, confidence: float = 0.95) -> dict:
    """One exponent shared by several groups (slices of a sweep), each with its own prefactor: least squares
    of log10 y on log10 x plus one intercept per group; CI from the t distribution with m - 1 - G degrees of
    freedom (NaN if none left). prefactor is NaN (there is one per group)."""
    x, y, groups = np.asarray(x, float), np.asarray(y, float), np.asarray(groups, object)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y, groups = x[ok], y[ok], groups[ok]
    out = {"exponent": np.nan, "exponent_se": np.nan, "exponent_lo": np.nan, "exponent_hi": np.nan,
           "prefactor": np.nan, "r2_loglog": np.nan, "n_points": len(x)}
    if len(x) < 2:
        return out
    labels = sorted(set(groups), key=str)
    lx, ly = np.log10(x), np.log10(y)
    design = np.column_stack([lx] + [(groups == g).astype(float) for g in labels])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        return out   # no group with two distinct x values: the exponent is not identified
    coef, *_ = np.linalg.lstsq(design, ly, rcond=None)
    resid = ly - design @ coef
    dof = len(x) - design.shape[1]
    ss_tot = np.sum((ly - ly.mean()) ** 2)
    out.update(exponent=float(coef[0]), r2_loglog=float(1 - np.sum(resid ** 2) / ss_tot) if ss_tot > 0 else np.nan)
    if dof >= 1:
        cov = np.sum(resid ** 2) / dof * np.linalg.inv(design.T @ design)
        se = math.sqrt(cov[0, 0])
        half = stats.t.ppf(0.5 + confidence / 2, dof) * se
        out.update(exponent_se=se, exponent_lo=float(coef[0] - half), exponent_hi=float(coef[0] + half))
    return out


def scaling_fits(summary: pd.DataFrame, axis_cols: list[str], metrics=FIT_METRICS, confidence: float = 0.95
                 ) -> pd.DataFrame:
    """For each swept numeric axis (summary column) and metric: the metric averaged over seeds (runs with the
    same axis value) against the axis value, a linear fit and a log-log power law with its confidence interval.
    With several non-seed axes, one fit per combination of the other axes ('fixed'), plus a row with fixed =
    "pooled": one exponent shared by all those combinations, each with its own prefactor
    (pooled_power_law_fit). Runs where the metric is NaN (not reached) are left out and counted in n_missing.
    An onset step counts from any run that reached it; the other metrics (rate, best fidelity) only from
    finished runs, since a cut-short run's are not comparable."""
    out = []
    for col in axis_cols:
        if col == "seed":
            continue
        xcol = numeric_axis_column(summary, col)
        if xcol is None:
            continue
        groups = slices(summary, col, axis_cols)
        for metric in metrics:
            if metric not in summary:
                continue
            pooled = []
            for fixed, group in groups:
                y = pd.to_numeric(group[metric], errors="coerce")
                if metric not in ONSET_METRICS and "state" in group:
                    y = y.where(group["state"] == "finished")
                x = pd.to_numeric(group[xcol], errors="coerce")
                means = pd.DataFrame({"x": x, "y": y}).dropna().groupby("x")["y"].agg(["mean", "count"])
                label = ", ".join(f"{k}={v}" for k, v in fixed.items())
                row = {"axis": col, "x": xcol, "metric": metric, "fixed": label,
                       "n_runs": int(y.notna().sum()), "n_missing": int(y.isna().sum()),
                       "x_values": " ".join(f"{v:g}" for v in means.index),
                       "y_values": " ".join(f"{v:.4g}" for v in means["mean"])}
                row.update(linear_fit(means.index.to_numpy(float), means["mean"].to_numpy(float)))
                row.update(power_law_fit(means.index.to_numpy(float), means["mean"].to_numpy(float), confidence))
                out.append(row)
                pooled += [(xv, yv, label) for xv, yv in zip(means.index, means["mean"])]
            if len(groups) > 1:
                xs, ys, gs = zip(*pooled) if pooled else ((), (), ())
                row = {"axis": col, "x": xcol, "metric": metric, "fixed": POOLED,
                       "n_runs": sum(r["n_runs"] for r in out[-len(groups):]),
                       "n_missing": sum(r["n_missing"] for r in out[-len(groups):]),
                       "x_values": "", "y_values": "", "slope": np.nan, "intercept": np.nan, "r2": np.nan}
                row.update(pooled_power_law_fit(xs, ys, gs, confidence))
                out.append(row)
    cols = ["axis", "x", "metric", "fixed", "n_points", "n_runs", "n_missing", "exponent", "exponent_lo",
            "exponent_hi", "exponent_se", "prefactor", "r2_loglog", "slope", "intercept", "r2", "x_values", "y_values"]
    return pd.DataFrame(out, columns=cols)
