"""When a run evaluates: its steps, from eval.first_step, eval.num_points and the run's total steps (no torch: a
dry run counts a run's evaluations with it)."""
from __future__ import annotations

import numpy as np


def eval_steps(total: int, first: int, num: int) -> list[int]:
    """`num` log-spaced steps from `first` to `total`, rounded and deduplicated; `total` always included."""
    first = min(max(1, first), total)
    steps = np.unique(np.round(np.geomspace(first, total, num)).astype(int)).tolist()
    return sorted(set(steps) | {total})
