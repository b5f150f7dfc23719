"""Numbers as a reader wants them (the report's one formatter, for Markdown and figures alike), intervals in
words, and Markdown tables."""
from __future__ import annotations

import numpy as np
import pandas as pd


def fmt(v, digits: int = 3, setting: bool = False) -> str:
    """– for a missing or non-finite number, a whole number as such (below 1e7), else `digits` significant
    digits. `setting`: a swept setting's value (n, lr, a parameter count), to 6 significant digits so that close
    settings stay apart, counts from 1e5 on as 350k and 1.2M."""
    if v is None:
        return "–"
    number = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    if number and not np.isfinite(v):
        return "–"
    if setting and number and abs(v) >= 1e5:
        return f"{v / 1e6:.3g}M" if abs(v) >= 1e6 else f"{v / 1e3:.3g}k"
    if isinstance(v, (float, np.floating)):
        if (float(v).is_integer() or abs(v) >= 1000) and abs(v) < 1e7:
            return f"{v:.0f}"
        return f"{v:.{6 if setting else digits}g}"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(v)


def has_interval(lo) -> bool:
    """Whether a fit has a 95% interval (it needs at least one degree of freedom: 3 points for a power law)."""
    return bool(np.isfinite(lo))


def interval_text(value, lo, hi, n_points, digits: int = 2) -> str:
    """An estimate with its 95% interval, `0.80 [0.53, 1.07]`, or why it has none."""
    if not np.isfinite(value):
        return "no fit"
    if has_interval(lo):
        return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
    return f"{value:.{digits}f} (no interval: {int(n_points)} points)"


def ci_text(fit) -> str:
    """A fitted exponent with its interval (a row of science.fits.scaling_fits)."""
    return interval_text(fit["exponent"], fit["exponent_lo"], fit["exponent_hi"], fit["n_points"])


def markdown_table(df: pd.DataFrame, formats: dict | None = None) -> str:
    formats = formats or {}
    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    lines = [head, sep]
    for _, row in df.iterrows():
        cells = [formats.get(c, fmt)(row[c]) for c in df.columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
