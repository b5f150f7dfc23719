"""Onsets, rate and fidelity against a swept axis, with the power laws fitted through every run (scaling_<axis>.png,
window_<axis>.png: tau_gen beside tau_mem, rate_fidelity_<axis>.png); fits.csv holds the same fits
(science.fits.scaling_fits), report.findings says them in words."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from memsweep.report.markdown import ci_text
from memsweep.report.style import SHORT, axis_label, fixed_text, ordered_values, plain_log_ticks, save, value_ticks
from memsweep.report.summary import axis_column
from memsweep.science.curves import ONSET_METRICS
from memsweep.science.fits import numeric_axis_column, power_law_fit, slices
from memsweep.science.normalized_time import COLLAPSE_EXPONENT
from memsweep.states import State

METRIC_LABELS = {"tau_mem": "tau_mem (test-loss turning point)", "tau_gap": "tau_gap (relative gap crossing)",
                 "tau_test_min": "test-loss minimum", "tau_gen": "tau_gen (SW within 10% of its best)",
                 "step_mem_0.1": "mem_ratio reaches 0.1", "step_mem_0.5": "mem_ratio reaches 0.5"}
METRIC_STYLE = {"tau_mem": ("C3", "o"), "tau_gap": ("C1", "D"), "tau_test_min": ("C1", "D"),
                "tau_gen": ("C4", "v"), "step_mem_0.1": ("C0", "s"), "step_mem_0.5": ("C2", "^")}


def _fit_label(metric: str, fit: dict, xshort: str) -> str:
    if not np.isfinite(fit["exponent"]):
        return f"{METRIC_LABELS.get(metric, metric)}: no fit"
    return f"{METRIC_LABELS.get(metric, metric)}: ∝ {xshort}^{ci_text(fit)}"


def scaling_figure(summary: pd.DataFrame, key: str, keys: list[str], path: Path, metrics=ONSET_METRICS,
                   heading: str = "onset of memorization") -> Path | None:
    """Onset steps against the axis on log-log axes, with the fitted power laws and their exponents (95% CI)
    in the legend; left in steps, right in normalized steps. None if the axis is not numeric."""
    col = axis_column(key)
    xcol = numeric_axis_column(summary, col)
    if xcol is None:
        return None
    sub = summary
    fixed = {}
    groups = slices(summary, col, [axis_column(k) for k in keys])
    if len(groups) > 1:
        fixed, sub = groups[0]
    xshort = SHORT.get(xcol, xcol)
    if not any(pd.to_numeric(sub[m], errors="coerce").gt(0).any() for m in metrics if m in sub):
        return None   # no run reached any onset: nothing to draw (the report says so)
    fig, axes = plt.subplots(1, 2, figsize=(13.5, 6.6), layout="constrained")
    for ax, normalized in zip(axes, (False, True)):
        any_point = False
        plotted: set = set()
        for metric in metrics:
            color, marker = METRIC_STYLE.get(metric, ("k", "o"))
            x = pd.to_numeric(sub[xcol], errors="coerce").to_numpy(float)
            y = pd.to_numeric(sub[metric], errors="coerce").to_numpy(float)
            if normalized:
                y = y * sub["norm_factor"].to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y) & (y > 0)
            if not ok.any():
                continue
            any_point = True
            means = pd.DataFrame({"x": x[ok], "y": y[ok]}).groupby("x")["y"].mean()
            fit = power_law_fit(x[ok], y[ok])   # every run a point, as in fits.csv (science.fits.scaling_fits)
            missing = int((~ok).sum())
            label = _fit_label(metric, fit, xshort) + (f"; {missing} run(s) without it" if missing else "")
            plotted.update(means.index.tolist())
            if len(means) < len(x[ok]):
                ax.scatter(x[ok], y[ok], color=color, marker=marker, s=18, alpha=0.35)
            ax.scatter(means.index, means.to_numpy(float), color=color, marker=marker, s=55, edgecolor="k",
                       zorder=4, label=label)
            if np.isfinite(fit["exponent"]):
                xx = np.geomspace(means.index.min(), means.index.max(), 50)
                ax.plot(xx, fit["prefactor"] * xx ** fit["exponent"], color=color, lw=1.5)
        ref = COLLAPSE_EXPONENT.get(xcol)
        base = pd.to_numeric(sub["tau_mem"], errors="coerce") * (sub["norm_factor"] if normalized else 1)
        xv = pd.to_numeric(sub[xcol], errors="coerce")
        okb = np.isfinite(base) & (base > 0) & np.isfinite(xv)
        if ref is not None and okb.sum() >= 1 and xv[okb].nunique() >= 1:
            expo = 0.0 if normalized else ref
            xx = np.geomspace(xv[okb].min(), max(xv[okb].max(), xv[okb].min() * 1.01), 50)
            x0, y0 = np.exp(np.log(xv[okb]).mean()), np.exp(np.log(base[okb]).mean())
            what = {"n": "linear in n (paper)", "batch_size": "∝ 1/B (paper)", "lr": "∝ 1/lr (collapse)"}[xcol]
            ax.plot(xx, y0 * (xx / x0) ** expo, color="0.5", ls="--", lw=1.2,
                    label=f"reference: exponent {expo:g}, {what if not normalized else 'perfect collapse'}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
        ax.set_xlabel(axis_label(xcol) + " (log scale)")
        ax.set_ylabel(("normalized step" if normalized else "training step") + " (log scale)")
        ax.set_title("in normalized steps" if normalized else "in training steps", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        if any_point:
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
        else:
            ax.text(0.5, 0.5, "no run reached any onset", transform=ax.transAxes, ha="center")
        value_ticks(ax, plotted)
    fig.suptitle(f"{heading} against {axis_label(xcol)}{fixed_text(fixed)}\n"
                 "(markers: mean over seeds; lines: power-law fits through every run; legend: exponent with 95% CI)", fontsize=11)
    return save(fig, path)


def rate_fidelity_figure(summary: pd.DataFrame, key: str, keys: list[str], path: Path) -> Path | None:
    """mem_rate, best fidelity (SW, and FID when present) and the final mem_ratio against the axis."""
    col = axis_column(key)
    xcol = numeric_axis_column(summary, col)
    groups = slices(summary, col, [axis_column(k) for k in keys])
    fixed, sub = groups[0] if len(groups) > 1 else ({}, summary)
    sub = sub[sub["state"] == State.FINISHED]    # a cut-short run's rate and best fidelity are not comparable
    if not len(sub):
        return None
    values = ordered_values(sub, col)
    if xcol is None:   # categorical: positions in order
        pos = {v: i for i, v in enumerate(values)}
        x = sub[col].map(pos).to_numpy(float)
    else:
        x = pd.to_numeric(sub[xcol], errors="coerce").to_numpy(float)
    panels = [("mem_rate", [("mem_rate", "mem_rate", "-", "o")], "mem_ratio per decade of steps"),
              ("sw", [("best_sw", "best before tau_mem, test split", "-", "o"),
                      ("best_sw_train", "best before tau_mem, train split", "--", "s"),
                      ("best_sw_all", "best over the whole run, test split", ":", "D")], "sliced W2 (lower is better)")]
    if sub["best_fid"].notna().any():
        panels.append(("fid", [("best_fid", "best before tau_mem, test split", "-", "o"),
                               ("best_fid_train", "best before tau_mem, train split", "--", "s")],
                       "Fréchet distance (lower is better)"))
    panels.append(("final", [("final_mem_ratio", "final mem_ratio", "-", "o")], "mem_ratio at the last evaluation"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.0), squeeze=False)
    for ax, (name, series, ylabel) in zip(axes.flat, panels):
        for i, (metric, label, ls, marker) in enumerate(series):
            y = pd.to_numeric(sub[metric], errors="coerce").to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            if not ok.any():
                continue
            means = pd.DataFrame({"x": x[ok], "y": y[ok]}).groupby("x")["y"].mean()
            ax.plot(means.index, means.to_numpy(float), color=f"C{i}", ls=ls, marker=marker, label=label)
            if len(means) < ok.sum():
                ax.scatter(x[ok], y[ok], color=f"C{i}", s=12, alpha=0.4)
        if xcol is not None:
            ax.set_xscale("log")
            value_ticks(ax, set(x[np.isfinite(x)]))
        else:
            ax.set_xticks(range(len(values)))
            ax.set_xticklabels([str(v) for v in values])
        ax.set_xlabel(axis_label(xcol or col))
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if len(series) > 1 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7.5)
        if name == "final":
            ax.set_ylim(-0.03, 1.03)
    fig.suptitle(f"memorization rate and best fidelity against {axis_label(xcol or col)}{fixed_text(fixed)}"
                 " (finished runs)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save(fig, path)

