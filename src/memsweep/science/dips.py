"""Double descent: the dips of a distance curve (SW, FID) over training, found robustly against noise.

A dip is a local minimum of the curve in log scale, lightly smoothed (running median of 3 evaluations, Tukey's rule at the ends, so one
noisy evaluation neither makes nor hides a dip), whose prominence is at least `min_depth`: the curve must be
at least `min_depth` (relative) higher on both sides before it gets lower, i.e. it fell by that much into the
dip and rose by that much after it. The last evaluation can be a dip (a descent still going on when training
stopped; `at_end` says so); the first cannot (nothing is known before it).

depth = 1 - value / (the lower of the two maxima that bound the dip), on the smoothed curve: the relative
drop into the dip that is matched by a rise after it (at the end, the drop alone). A second descent is a
second dip: the curve fell, rose by at least min_depth, and fell again by at least min_depth.
"""
from __future__ import annotations

import numpy as np

from memsweep.science.series import finite

DEFAULT_MIN_DEPTH = 0.1
CURVES = ("sw_train", "sw_test", "fid_train", "fid_test")


def _median3(y: np.ndarray) -> np.ndarray:
    """Running median of 3 with Tukey's end-point rule (each end is the median of itself, its neighbour and
    the value extrapolated from the next two), so a curve still falling at the end keeps its last point low."""
    out = y.copy()
    out[1:-1] = np.median(np.stack([y[:-2], y[1:-1], y[2:]]), axis=0)
    out[0] = np.median([y[0], out[1], 3 * out[1] - 2 * out[2]])
    out[-1] = np.median([y[-1], out[-2], 3 * out[-2] - 2 * out[-3]])
    return out


def find_dips(steps, values, min_depth: float = DEFAULT_MIN_DEPTH) -> list[dict]:
    """The dips of a positive curve, in order of step: [{step, value, depth, at_end}] (value is the raw
    curve's at that step). Empty with fewer than 4 finite points or non-positive values."""
    s, v = finite(steps, values)
    if len(s) < 4 or (v <= 0).any():
        return []
    y = _median3(np.log(v))
    # a high sentinel after the last point lets a descent still going on at the end count as a dip
    padded = np.append(y, y.max() + 10)
    return [{"step": float(s[i]), "value": float(v[i]), "depth": float(1 - np.exp(-p)),
             "at_end": bool(i == len(s) - 1)}
            for i, p in prominent_peaks(-padded, -np.log1p(-min_depth)) if i < len(s)]


def prominent_peaks(x: np.ndarray, min_prominence: float) -> list[tuple[int, float]]:
    """(index, prominence) of each local maximum of x whose prominence is at least `min_prominence`, in
    order: scipy.signal.find_peaks(x, prominence=min_prominence) (tested against it). Not scipy's own:
    importing scipy.signal costs 1.3 s here, most of a report that reads stored analyses (0.4 s without it).
    A flat top counts once, at its middle; the ends are never peaks. Prominence: the height of the peak
    above the higher of the lowest points on each side before the curve rises above the peak or ends."""
    def lowest(side):   # side starts at the peak
        above = np.flatnonzero(side > side[0])
        return side[:above[0] if len(above) else len(side)].min()
    out, i, last = [], 1, len(x) - 1
    while i < last:
        if x[i - 1] < x[i]:
            j = i + 1
            while j < last and x[j] == x[i]:
                j += 1
            if x[j] < x[i]:
                peak = (i + j - 1) // 2
                prominence = float(x[peak] - max(lowest(x[peak::-1]), lowest(x[peak:])))
                if prominence >= min_prominence:
                    out.append((peak, prominence))
                i = j
        i += 1
    return out


def dip_columns(frame, min_depth: float = DEFAULT_MIN_DEPTH) -> dict:
    """Summary columns for each curve c of CURVES: c_dips (how many), c_dip1_step, c_dip1_depth, c_dip2_step,
    c_dip2_depth (NaN when absent; a curve with no data gives NaN everywhere, not 0 dips)."""
    out = {}
    for c in CURVES:
        has = c in frame and len(frame) and np.isfinite(frame[c].to_numpy(float)).sum() >= 4
        dips = find_dips(frame["step"], frame[c], min_depth) if has else []
        out[f"{c}_dips"] = float(len(dips)) if has else np.nan
        for k in (1, 2):
            d = dips[k - 1] if len(dips) >= k else None
            out[f"{c}_dip{k}_step"] = d["step"] if d else np.nan
            out[f"{c}_dip{k}_depth"] = d["depth"] if d else np.nan
    return out
