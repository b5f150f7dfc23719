"""Markdown for the report: numbers as a reader wants them, and tables."""
from __future__ import annotations

import numpy as np
import pandas as pd


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "–"
        if (float(v).is_integer() or abs(v) >= 1000) and abs(v) < 1e7:
            return f"{v:.0f}"
        return f"{v:.{digits}g}"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(v)


def interval_text(value, lo, hi, n_points, digits: int = 2) -> str:
    """An estimate with its 95% interval, `0.80 [0.53, 1.07]`, or why it has none."""
    if not np.isfinite(value):
        return "no fit"
    if np.isfinite(lo):
        return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
    return f"{value:.{digits}f} (no CI: {int(n_points)} points)"


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


