"""Collapse in normalized time (Marion & Wu 2026): per swept axis, the curves against the raw step and against the
normalized step side by side, and how far apart the onsets lie on each axis.

Under the paper's claims the curves of different n and B fall on one another against s·(B/B0)·(lr/lr0)/(n/n0),
and those of different lr do not (the normalized onset grows with lr). The spread of tau_mem across an axis's
values, raw and normalized (largest over smallest seed-mean), says the same in one number: collapse shrinks it
towards 1.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from memsweep.report.style import (LABELS, NORM_XLABEL, axis_runs, fixed_text, legend_handles, ordered_values,
                                   plain_log_ticks, save, slug, value_colors)
from memsweep.report.summary import axis_column
from memsweep.science.curves import relative_gap

NORMALIZED = ("n", "batch_size", "lr")   # the axes in the normalized step (model size is not)
COLLAPSED = 1.25   # a normalized spread of tau_mem within 25% counts as collapsed (its seed-to-seed noise is ~10-20%)
PANELS = (("rel_gap", "relative loss gap  (test − train) / test"), ("mem_ratio", "memorization ratio"))


def collapse_figure(runs: list, summary: pd.DataFrame, key: str, keys: list[str], path: Path) -> Path | None:
    """Rows: the relative loss gap and mem_ratio; columns: against the step and against the normalized step;
    one curve per run coloured by its value on axis `key`, ● at its tau_mem."""
    col = axis_column(key)
    chosen, fixed = axis_runs(runs, key, keys)
    chosen = [r for r in chosen if len(r.frame)]
    if not chosen:
        return None
    info = summary.set_index("run_id")
    sub = summary[summary.run_id.isin([r.run_id for r in chosen])]
    values = ordered_values(sub, col)
    colors = value_colors(values)
    fig, axes = plt.subplots(2, 2, figsize=(12.5, 7.6), sharey="row", squeeze=False, layout="constrained")
    for r in chosen:
        row = info.loc[r.run_id]
        color = colors.get(row[col] if col in info else r.axes.get(key), "k")
        f = r.frame
        y = {"rel_gap": relative_gap(f["train_loss"], f["test_loss"]), "mem_ratio": f["mem_ratio"].to_numpy(float)}
        for j, factor in enumerate((1.0, float(row["norm_factor"]))):
            s = f["step"].to_numpy(float) * factor
            for i, (name, _) in enumerate(PANELS):
                axes[i, j].plot(s, y[name], color=color, lw=1.5, marker=".", ms=3)
                tau = row.get("tau_mem", np.nan)
                if np.isfinite(tau) and np.isfinite(y[name]).any():
                    ok = np.isfinite(y[name])
                    at = np.interp(np.log10(tau), np.log10(f["step"].to_numpy(float)[ok]), y[name][ok])
                    axes[i, j].plot(tau * factor, at, marker="o", color=color, mec="k", ms=7, zorder=5)
    for i, (_, ylabel) in enumerate(PANELS):
        axes[i, 0].set_ylabel(ylabel, fontsize=9)
        for j in range(2):
            ax = axes[i, j]
            ax.set_xscale("log")
            plain_log_ticks(ax.xaxis)
            ax.grid(True, alpha=0.3)
            ax.set_xlabel("training step" if j == 0 else NORM_XLABEL, fontsize=9)
    axes[0, 0].set_title("against the training step", fontsize=10)
    axes[0, 1].set_title("against the normalized step (collapse: the curves fall together)", fontsize=10)
    axes[0, 0].text(0.03, 0.96, "● = tau_mem", transform=axes[0, 0].transAxes, va="top", fontsize=8, color="0.25")
    fig.legend(handles=legend_handles(values, colors, col), loc="outside right center",
               title=LABELS.get(col, col), fontsize=9, title_fontsize=9, frameon=False)
    fig.suptitle(f"Collapse across {LABELS.get(col, col)}{fixed_text(fixed)}", fontsize=12)
    return save(fig, path)


def spread(summary: pd.DataFrame, col: str) -> dict | None:
    """tau_mem's largest over smallest seed-mean across the values of `col`, raw and normalized (None with
    fewer than two values that reached it)."""
    if col not in summary or not {"tau_mem", "tau_mem_norm"} <= set(summary):
        return None
    by = summary[[col, "tau_mem", "tau_mem_norm"]].copy()
    by[["tau_mem", "tau_mem_norm"]] = by[["tau_mem", "tau_mem_norm"]].apply(pd.to_numeric, errors="coerce")
    means = by.dropna().groupby(col)[["tau_mem", "tau_mem_norm"]].mean()
    if len(means) < 2:
        return None
    return {"values": len(means), "raw": float(means["tau_mem"].max() / means["tau_mem"].min()),
            "normalized": float(means["tau_mem_norm"].max() / means["tau_mem_norm"].min())}


def section(parts) -> list[str]:
    """How far apart the onsets lie on each axis, raw and normalized, with the figures' reading."""
    lines = []
    for _, keys, part in parts:
        for key in keys:
            col = axis_column(key)
            if col not in NORMALIZED:
                continue
            s = spread(part, col)
            if s is None:
                continue
            verb = ("collapses" if s["normalized"] <= COLLAPSED else
                    "partly collapses (the normalized spread is smaller, not near 1)" if s["normalized"] < s["raw"]
                    else "does not collapse")
            lines.append(f"- {LABELS.get(col, col)}: tau_mem spans ×{s['raw']:.2f} in steps and ×{s['normalized']:.2f} "
                         f"in normalized steps across {s['values']} values: {verb} (figure "
                         f"`collapse_{slug(col)}.png`).")
    if not lines:
        return []
    return ["## Collapse in normalized time", "",
            "The spread of tau_mem (largest seed-mean over smallest) across each axis's values, against the step "
            "and against the normalized step s·(B/B0)·(lr/lr0)/(n/n0). The paper: the curves collapse across n "
            "and B (normalized spread near 1), not across lr; model size is not in the normalization.", ""] + lines + [""]

