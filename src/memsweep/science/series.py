"""Small tools on a curve sampled at evaluation steps: finite points, smoothing, crossings, extrema."""
from __future__ import annotations

import math

import numpy as np


def finite(steps, values):
    steps = np.asarray(steps, float)
    values = np.asarray(values, float)
    ok = np.isfinite(steps) & np.isfinite(values) & (steps > 0)
    order = np.argsort(steps[ok], kind="stable")
    return steps[ok][order], values[ok][order]

def log_interp(s_a, s_b, y_a, y_b, level) -> float:
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
    s, v = finite(steps, values)
    above = np.nonzero(v >= level)[0]
    if len(above) == 0:
        return float("nan")
    i = above[0]
    return float(s[0]) if i == 0 else log_interp(s[i - 1], s[i], v[i - 1], v[i], level)

def sustained_crossing(steps, values, level, min_points: int = 2) -> float:
    """First step after which `values` stays >= `level` at every later point (log-interpolated from the last
    point below), with at least `min_points` points at or above; NaN otherwise. The first step if every point
    is above (the crossing happened at or before it)."""
    s, v = finite(steps, values)
    if len(v) == 0 or v[-1] < level:
        return float("nan")
    below = np.nonzero(v < level)[0]
    k = below[-1] if len(below) else -1
    if len(v) - (k + 1) < min_points:
        return float("nan")
    return float(s[0]) if k < 0 else log_interp(s[k], s[k + 1], v[k], v[k + 1], level)

def best_before(steps, values, tau: float) -> float:
    """Minimum of `values` over the evaluations at or before `tau` (all of them if tau is NaN)."""
    s, v = finite(steps, values)
    if not math.isnan(tau):
        v = v[s <= tau * (1 + 1e-9)]
    return float(np.min(v)) if len(v) else float("nan")

def argmin_step(steps, values) -> float:
    """The step of the minimum of `values` (NaN if none)."""
    s, v = finite(steps, values)
    return float(s[np.argmin(v)]) if len(v) else float("nan")

def last_value(values) -> float:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(v[-1]) if len(v) else float("nan")
