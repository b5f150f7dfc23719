"""Effective model memorization (Gu et al. 2023): the largest training-set size n at which a model trained
(for a budget proportional to n) still memorizes, i.e. its final memorization ratio is at least 0.9.

Between the largest n whose ratio is >= level and the next larger n (ratio below), the crossing is
interpolated linearly in log n. If even the largest n memorizes, EMM is only known to be at least that n
(`bound` = "lower"); if the smallest n does not, it is below the smallest n and not given (NaN, "upper").
The ratio is averaged over seeds at each n first.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

EMM_LEVEL = 0.9


def effective_memorization(n, mem_ratio, level: float = EMM_LEVEL) -> dict:
    """{'emm', 'bound' ('' exact, 'lower': >= emm, 'upper': < emm), 'n_below', 'n_above'} from final
    mem_ratio values against n (NaN ones left out)."""
    df = pd.DataFrame({"n": pd.to_numeric(pd.Series(list(n)), errors="coerce"),
                       "m": pd.to_numeric(pd.Series(list(mem_ratio)), errors="coerce")}).dropna()
    df = df[df["n"] > 0]
    out = {"emm": float("nan"), "bound": "", "n_below": float("nan"), "n_above": float("nan")}
    if df.empty:
        return out
    means = df.groupby("n")["m"].mean().sort_index()
    ns, ms = means.index.to_numpy(float), means.to_numpy(float)
    above = np.nonzero(ms >= level)[0]
    if len(above) == 0:
        out.update(emm=float(ns[0]), bound="upper", n_above=float(ns[0]))
        out["emm"] = float("nan")      # below the smallest n: no value, only that bound
        return out
    i = above[-1]
    if i == len(ns) - 1:
        out.update(emm=float(ns[i]), bound="lower", n_below=float(ns[i]))
        return out
    frac = (ms[i] - level) / (ms[i] - ms[i + 1])
    emm = math.exp(math.log(ns[i]) + frac * (math.log(ns[i + 1]) - math.log(ns[i])))
    out.update(emm=float(emm), n_below=float(ns[i]), n_above=float(ns[i + 1]))
    return out
