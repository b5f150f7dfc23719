"""Training curves by swept axis (curves_<axis>_step.png, curves_<axis>_normalized.png): losses, gaps, mem_ratio,
SW, FID, nearest-neighbour and field distances against the step or the normalized step, one curve per run
coloured by its value on the axis, with its onsets marked."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from memsweep.report.style import (NORM_XLABEL, axis_label, axis_runs, fixed_text, legend_handles, ordered_values,
                                   plain_log_ticks, save, value_colors)
from memsweep.report.summary import axis_column
from memsweep.science.curves import DEFAULT_GAP_THRESHOLD, MEM_LEVELS
from memsweep.states import State

PAIRED = {"loss": ("train_loss", "test_loss"), "sw": ("sw_train", "sw_test"), "fid": ("fid_train", "fid_test")}


def curves_figure(runs: list, summary: pd.DataFrame, key: str, keys: list[str], path: Path, x: str = "step",
                  threshold: float = DEFAULT_GAP_THRESHOLD, features: dict | None = None) -> Path | None:
    """A grid of panels (losses, gaps, mem_ratio, SW, FID, NN distance) against the step (x='step') or the
    normalized step (x='norm'), one curve per run coloured by its value on axis `key`."""
    col = axis_column(key)
    chosen, fixed = axis_runs(runs, key, keys)
    if not any(len(r.frame) for r in chosen):
        return None   # no run has logged an evaluation yet
    sub = summary[summary.run_id.isin([r.run_id for r in chosen])]
    values = ordered_values(sub, col) if len(sub) else []
    colors = value_colors(values) if values else {}
    info = summary.set_index("run_id")
    panels = _curve_panels(chosen, features or {})
    ncols = 3 if len(panels) <= 6 else 4
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols + 2.2, 3.5 * nrows + 0.4), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    order = {v: i for i, v in enumerate(values)}
    chosen = sorted(chosen, key=lambda r: order.get(r.params.get(col, r.axes.get(key)), 0))
    for r in chosen:
        if not len(r.frame):
            continue
        value = info.loc[r.run_id, col] if col in info else r.axes.get(key)
        factor = float(info.loc[r.run_id, "norm_factor"]) if x == "norm" else 1.0
        _run_curves(axes.flat, panels, r, colors.get(value, "k"), factor)
        _run_marks(axes.flat, panels, r.frame, info.loc[r.run_id], colors.get(value, "k"), factor, threshold)
    for ax, panel in zip(axes.flat, panels):
        _style_curve_panel(ax, *panel, x, threshold)
    fig.legend(handles=_curve_legend(chosen, values, colors, col, info), loc="outside right center",
               title=axis_label(col), fontsize=9, title_fontsize=9, frameon=False)
    xdesc = "training step" if x == "step" else "normalized step (curves collapse if time scales as n/(B·lr))"
    fig.suptitle(f"training curves by {axis_label(col)}{fixed_text(fixed)}, against {xdesc}", fontsize=12)
    return save(fig, path)


def _curve_panels(chosen, features: dict) -> list[tuple[str, str, bool]]:
    """(name, y label, log y) of each panel the runs have data for."""
    def has(k):
        return any(r.frame[k].notna().any() for r in chosen if len(r.frame))
    panels = [("loss", "denoising loss  (— train, - - test)", True),
              ("loss_gap", "loss gap  test − train", False),
              ("rel_gap", "relative gap  (test − train) / test", False),
              ("mem_ratio", "memorization ratio (1/3 NN rule)", False),
              ("sw", f"sliced W2 to data ({features.get('sw', 'pixels')})  (— train, - - test)", True)]
    if has("fid_test") or has("fid_train"):
        panels.append(("fid", f"Fréchet distance ({features.get('fid', 'pixels')})  (— train, - - test)", True))
    if has("nn_dist"):
        panels.append(("nn_dist", "mean L2 distance to nearest train image", False))
    if has("field_dist"):
        panels.append(("field_dist", "distance to the closed-form memorizer\n||u − u*||² / ||u*||² on probe points", True))
    return panels


def _run_curves(axes, panels, r, c, factor: float) -> None:
    """One run's curves on every panel (train solid, test dashed), and an x where an unfinished run stops."""
    f = r.frame
    s = f["step"].to_numpy(float) * factor
    for ax, (name, _, _) in zip(axes, panels):
        if name in PAIRED:
            ax.plot(s, f[PAIRED[name][0]], color=c, lw=1.6)
            ax.plot(s, f[PAIRED[name][1]], color=c, lw=1.6, ls="--")
        else:
            ax.plot(s, f[name], color=c, lw=1.6, marker=".", ms=4)
        if r.state != State.FINISHED and len(s):
            y = f[PAIRED[name][1] if name in PAIRED else name].to_numpy(float)
            ok = np.isfinite(y)
            if ok.any():
                ax.plot(s[ok][-1], y[ok][-1], marker="x", color=c, ms=8, mew=2)


def _run_marks(axes, panels, f, row, c, factor: float, threshold: float) -> None:
    """One run's double-descent dips, tau_mem (on the test loss), tau_gap (on the relative gap), tau_gen (on
    sw_test) and the step where mem_ratio reaches 0.5."""
    for ax, (name, _, _) in zip(axes, panels):
        for curve in (f"{name}_train", f"{name}_test"):
            for k in (1, 2):
                step = row.get(f"{curve}_dip{k}_step", np.nan)
                if name in ("sw", "fid") and np.isfinite(step) and step in set(f["step"]):
                    y = float(f.loc[f["step"] == step, curve].iloc[0])
                    ax.plot(step * factor, y, marker="v" if k == 1 else "P", color=c, ms=8 if k == 1 else 10,
                            mec="k", ls="", zorder=5)
        if name == "rel_gap" and np.isfinite(row["tau_gap"]):
            ax.plot(row["tau_gap"] * factor, threshold, marker="D", color=c, ms=7, mec="k", zorder=5)
        for mark, panel, curve, marker in (("tau_mem", "loss", "test_loss", "o"), ("tau_gen", "sw", "sw_test", "s")):
            if name == panel and np.isfinite(row.get(mark, np.nan)):
                ok = f[curve].notna()
                if ok.any():
                    y = np.interp(math.log10(row[mark]), np.log10(f.loc[ok, "step"].to_numpy(float)),
                                  f.loc[ok, curve].to_numpy(float))
                    ax.plot(row[mark] * factor, y, marker=marker, color=c, ms=8, mec="k", zorder=5)
        if name == "mem_ratio" and np.isfinite(row["step_mem_0.5"]):
            ax.plot(row["step_mem_0.5"] * factor, 0.5, marker="^", color=c, ms=8, mec="k", zorder=5)


def _style_curve_panel(ax, name: str, ylabel: str, logy: bool, x: str, threshold: float) -> None:
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    if logy:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_xlabel("training step" if x == "step" else NORM_XLABEL, fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    if name == "rel_gap":
        ax.axhline(threshold, color="0.4", ls=":", lw=1)
        ax.text(0.03, 0.96, f"dotted: threshold {threshold:g}\n◆ = tau_gap", transform=ax.transAxes,
                va="top", fontsize=8, color="0.25")
        ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.0)
    if name == "mem_ratio":
        for level in MEM_LEVELS:
            ax.axhline(level, color="0.5", ls=":", lw=1)
        ax.text(0.03, 0.96, "dotted: 0.1 and 0.5\n▲ = reaches 0.5", transform=ax.transAxes, va="top",
                fontsize=8, color="0.25")
        ax.set_ylim(-0.03, 1.03)
    if name == "loss_gap":
        ax.axhline(0, color="0.5", lw=0.8)
    if name == "loss":
        ax.text(0.03, 0.03, "● = tau_mem (test-loss turning point)", transform=ax.transAxes, fontsize=8,
                color="0.25")
    if name in ("sw", "fid"):
        ax.text(0.03, 0.03, "▼ first dip, ✚ second dip\n(double descent)"
                + ("; ■ = tau_gen" if name == "sw" else ""), transform=ax.transAxes, fontsize=8, color="0.25")


def _curve_legend(chosen, values, colors, col, info) -> list:
    """One entry per axis value (saying when its runs have no data or did not finish), and the x marker."""
    notes = {}
    for v in values:
        runs_v = [r for r in chosen if str(info.loc[r.run_id, col]) == str(v)]
        if runs_v and all(not len(r.frame) for r in runs_v):
            notes[v] = f"no data, {runs_v[0].state}"
        elif runs_v and all(r.state != State.FINISHED for r in runs_v):
            notes[v] = runs_v[0].state
    handles = legend_handles(values, colors, col, notes)
    if any(r.state != State.FINISHED and len(r.frame) for r in chosen):
        handles.append(Line2D([0], [0], color="k", marker="x", ls="", ms=8, mew=2, label="run stopped (not finished)"))
    return handles

