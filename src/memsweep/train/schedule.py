"""When a run evaluates: its steps, from eval.first_step, eval.num_points and the run's total steps (no torch and no
numpy: a dry run counts a run's evaluations with it, and numpy's import is 0.1 s of a `--cfg job` that takes 0.3 s).
"""
from __future__ import annotations

import math


def eval_steps(total: int, first: int, num: int) -> list[int]:
    """`num` log-spaced steps from `first` to `total`, rounded (half to even) and deduplicated; `total` always
    included. The same floats as numpy.geomspace(first, total, num), which memsweep used before: its
    linspace of log10 (i * step + start, both ends set exactly) raised to the power 10 (tests/test_train.py
    compares the two)."""
    first = min(max(1, first), total)
    start, stop = math.log10(first), math.log10(total)
    div = num - 1
    step = (stop - start) / div if div > 0 else 0.0
    points = [10.0 ** (i * step + start) for i in range(num)]
    if num > 0:
        points[0] = first
    if num > 1:
        points[-1] = total
    return sorted({round(p) for p in points} | {total})
