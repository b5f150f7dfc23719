"""How a quantity scales with a swept axis: linear and log-log (power-law) fits with confidence intervals,
pooled over the other axes' slices."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import special

from memsweep.science.curves import FIT_METRICS, ONSET_METRICS
from memsweep.states import State


# Student's t from scipy.special, not scipy.stats: importing scipy.stats costs ~0.75 s here (0.15 s for
# scipy.special), half of a report that reads stored analyses; the functions are the ones scipy.stats.t calls.
def t_quantile(q: float, dof: int) -> float:
    """Student's t quantile, for the intervals of the fitted exponents (scipy.stats.t.ppf)."""
    return float(special.stdtrit(dof, q))


def rank_correlation(x, y) -> tuple[float, float]:
    """Spearman's rho (ranks with ties averaged) and its two-sided p-value from the t approximation with
    n - 2 degrees of freedom: scipy.stats.spearmanr's defaults."""
    rx, ry = (pd.Series(np.asarray(v, float)).rank().to_numpy() for v in (x, y))
    rho = np.corrcoef(rx, ry)[0, 1]
    dof = len(rx) - 2
    with np.errstate(divide="ignore"):   # |rho| = 1: t is infinite, p is 0
        t = rho * np.sqrt(max(dof / ((rho + 1.0) * (1.0 - rho)), 0.0))
    return float(rho), float(2 * special.stdtr(dof, -abs(t)))


def mean_interval(values, confidence: float = 0.95) -> dict:
    """The mean of the finite values with its t interval (NaN bounds with fewer than 2 values)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    out = {"mean": float(v.mean()) if len(v) else np.nan, "lo": np.nan, "hi": np.nan, "n_points": len(v)}
    if len(v) >= 2:
        half = t_quantile(0.5 + confidence / 2, len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))
        out.update(lo=out["mean"] - half, hi=out["mean"] + half)
    return out


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
        half = t_quantile(0.5 + confidence / 2, m - 2) * se
        out.update(exponent_se=se, exponent_lo=float(slope - half), exponent_hi=float(slope + half))
    return out

def determined_by(df: pd.DataFrame, col: str, other: str) -> bool:
    """True if each value of `col` goes with a single value of `other` (e.g. zipped axes)."""
    return bool((df.groupby(col, dropna=False)[other].nunique(dropna=False) <= 1).all())

def numeric_axis_column(summary: pd.DataFrame, col: str) -> str | None:
    """The numeric column to fit against for a swept column: for a model axis (a model option, or a setting of
    the architecture such as model.channels) the parameter count when every run has one, the model's size;
    else the column itself if numeric; None otherwise."""
    if col not in summary:
        return None
    if ((col == "model" or col.startswith("model.")) and "params" in summary
            and pd.to_numeric(summary["params"], errors="coerce").gt(0).all()):
        return "params"
    values = pd.to_numeric(summary[col], errors="coerce")
    if values.notna().all() and (values > 0).all():
        return col
    return None

def slices(summary: pd.DataFrame, col: str, axis_cols: list[str]) -> list[tuple[dict, pd.DataFrame]]:
    """Groups of runs in which only `col` (and axes determined by it, and the seed) varies."""
    others = [c for c in axis_cols if c not in (col, "seed") and c in summary
              and not determined_by(summary, col, c) and summary[c].nunique(dropna=False) > 1]
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
        half = t_quantile(0.5 + confidence / 2, dof) * se
        out.update(exponent_se=se, exponent_lo=float(coef[0] - half), exponent_hi=float(coef[0] + half))
    return out

def scaling_fits(summary: pd.DataFrame, axis_cols: list[str], metrics=FIT_METRICS, confidence: float = 0.95
                 ) -> pd.DataFrame:
    """For each swept numeric axis (summary column) and metric: the metric of each run against the axis value (the
    seeds of one value are replicates), a linear fit and a log-log power law with its confidence interval;
    x_values and y_values list the seed means.
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
                    y = y.where(group["state"] == State.FINISHED)
                x = pd.to_numeric(group[xcol], errors="coerce")
                points = pd.DataFrame({"x": x, "y": y}).dropna()
                means = points.groupby("x")["y"].agg(["mean", "count"])
                label = ", ".join(f"{k}={v}" for k, v in fixed.items())
                row = {"axis": col, "x": xcol, "metric": metric, "fixed": label, "n_values": len(means),
                       "n_runs": int(y.notna().sum()), "n_missing": int(y.isna().sum()),
                       "x_values": " ".join(f"{v:g}" for v in means.index),
                       "y_values": " ".join(f"{v:.4g}" for v in means["mean"])}
                # each run is a point: seeds at one value are replicates, so they add degrees of freedom to the
                # interval (the same line as through the seed means when every value has as many seeds)
                row.update(linear_fit(points["x"].to_numpy(float), points["y"].to_numpy(float)))
                row.update(power_law_fit(points["x"].to_numpy(float), points["y"].to_numpy(float), confidence))
                out.append(row)
                pooled += [(xv, yv, label) for xv, yv in zip(points["x"], points["y"])]
            if len(groups) > 1:
                xs, ys, gs = zip(*pooled) if pooled else ((), (), ())
                row = {"axis": col, "x": xcol, "metric": metric, "fixed": POOLED,
                       "n_values": len({xv for xv, _, _ in pooled}), "n_runs": sum(r["n_runs"] for r in out[-len(groups):]),
                       "n_missing": sum(r["n_missing"] for r in out[-len(groups):]),
                       "x_values": "", "y_values": "", "slope": np.nan, "intercept": np.nan, "r2": np.nan}
                row.update(pooled_power_law_fit(xs, ys, gs, confidence))
                out.append(row)
    cols = ["axis", "x", "metric", "fixed", "n_points", "n_values", "n_runs", "n_missing", "exponent", "exponent_lo",
            "exponent_hi", "exponent_se", "prefactor", "r2_loglog", "slope", "intercept", "r2", "x_values", "y_values"]
    return pd.DataFrame(out, columns=cols)
