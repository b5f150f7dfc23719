"""Normalized time (Marion & Wu 2026, section 4): s_norm = s * (B / B0) * (lr / lr0) / (n / n0), with n0, B0, lr0
the smallest values in the sweep. Under it, curves collapse across n and batch size (not across lr)."""
from __future__ import annotations

import math

import numpy as np


# The exponent of the onset in each variable of the normalized step when the curves collapse under it:
# tau ∝ n / (B lr). The paper claims it for n and B; for lr it is the reference the paper's claim departs from.
COLLAPSE_EXPONENT = {"n": 1.0, "batch_size": -1.0, "lr": -1.0}


def normalization_factor(n, batch_size, lr, n0, b0, lr0):
    """(B / B0) * (lr / lr0) / (n / n0): multiply a step by this to get the normalized step."""
    return (np.asarray(batch_size, float) / b0) * (np.asarray(lr, float) / lr0) / (np.asarray(n, float) / n0)

def normalized_step(step, n, batch_size, lr, n0, b0, lr0):
    """s_norm = s * (B / B0) * (lr / lr0) / (n / n0)."""
    return np.asarray(step, float) * normalization_factor(n, batch_size, lr, n0, b0, lr0)

def reference_values(n, batch_size, lr) -> dict:
    """n0, B0, lr0: the smallest values in the sweep (non-numbers ignored; NaN if none), as given (an int stays
    an int)."""
    def smallest(values):
        values = list(values)
        v = np.array([_number(x) for x in values], dtype=float)
        if not np.isfinite(v).any():
            return float("nan")
        i = int(np.nanargmin(np.where(np.isfinite(v), v, np.nan)))
        given = values[i]
        return given if isinstance(given, (int, float)) and not isinstance(given, bool) else float(v[i])
    return {"n0": smallest(n), "b0": smallest(batch_size), "lr0": smallest(lr)}


def _number(value) -> float:
    """A value as a number (a numeric string too), NaN when it is none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
