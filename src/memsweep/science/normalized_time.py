"""Normalized time (Marion & Wu 2026, section 4): s_norm = s * (B / B0) * (lr / lr0) / (n / n0), with n0, B0, lr0
the smallest values in the sweep. Under it, curves collapse across n and batch size (not across lr)."""
from __future__ import annotations

import math


# The exponent of the onset in each variable of the normalized step when the curves collapse under it:
# tau ∝ n / (B lr). The paper claims it for n and B; for lr it is the reference the paper's claim departs from.
COLLAPSE_EXPONENT = {"n": 1.0, "batch_size": -1.0, "lr": -1.0}


def normalization_factor(n, batch_size, lr, n0, b0, lr0) -> float:
    """(B / B0) * (lr / lr0) / (n / n0): multiply a step by this to get the normalized step. Plain floats, no
    numpy: a sweep's composition reads this module, and numpy's import is a third of a `--cfg job`."""
    return (float(batch_size) / b0) * (float(lr) / lr0) / (float(n) / n0)


def normalized_step(step, n, batch_size, lr, n0, b0, lr0):
    """s_norm = s * (B / B0) * (lr / lr0) / (n / n0), of a step or of a sequence of steps."""
    factor = normalization_factor(n, batch_size, lr, n0, b0, lr0)
    return [s * factor for s in step] if isinstance(step, (list, tuple)) else step * factor

def reference_values(n, batch_size, lr) -> dict:
    """n0, B0, lr0: the smallest values in the sweep (non-numbers ignored; NaN if none), as given (an int stays
    an int)."""
    def smallest(values):
        values = list(values)
        finite = [(v, i) for i, v in enumerate(map(_number, values)) if math.isfinite(v)]
        if not finite:
            return float("nan")
        v, i = min(finite)   # the first of the smallest
        given = values[i]
        return given if isinstance(given, (int, float)) and not isinstance(given, bool) else v
    return {"n0": smallest(n), "b0": smallest(batch_size), "lr0": smallest(lr)}


def _number(value) -> float:
    """A value as a number (a numeric string too), NaN when it is none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
