"""Figures of a sweep (matplotlib, Agg backend). Every function takes the runs (RunData), the
summary table (summary_table) and a swept axis, writes one PNG and returns its path."""
from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib import ticker as mticker  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import torch  # noqa: E402

from memsweep.science import objective
from memsweep.science.curves import DEFAULT_GAP_THRESHOLD, MEM_LEVELS, ONSET_METRICS
from memsweep.science.fits import numeric_axis_column, power_law_fit, slices
from memsweep.science.normalized_time import COLLAPSE_EXPONENT
from memsweep.store.run import RunStore
from memsweep.report.summary import axis_column
from memsweep.states import State

DPI = 110
LABELS = {"n": "n (training images)", "batch_size": "batch size B", "lr": "learning rate", "model": "model",
          "params": "model parameters", "seed": "seed"}
SHORT = {"n": "n", "batch_size": "B", "lr": "lr", "model": "model", "params": "params", "seed": "seed"}
METRIC_LABELS = {"tau_mem": "tau_mem (test-loss turning point)", "tau_gap": "tau_gap (relative gap crossing)",
                 "tau_test_min": "test-loss minimum", "tau_gen": "tau_gen (SW within 10% of its best)",
                 "step_mem_0.1": "mem_ratio reaches 0.1", "step_mem_0.5": "mem_ratio reaches 0.5"}
METRIC_STYLE = {"tau_mem": ("C3", "o"), "tau_gap": ("C1", "D"), "tau_test_min": ("C1", "D"),
                "tau_gen": ("C4", "v"), "step_mem_0.1": ("C0", "s"), "step_mem_0.5": ("C2", "^")}
NORM_XLABEL = "normalized step  s·(B/B₀)·(lr/lr₀)/(n/n₀)"


def save(fig, path, **kwargs) -> Path:
    """Write `fig` to `path` (PNG at DPI), close it and return the path. A figure with a layout engine
    (constrained) gets its layout computed once, here, and the engine switched off: savefig would otherwise
    compute it inside an extra draw of its own before the draw that renders (matplotlib's print_figure), and
    each pass lays out every tick label again. The same pixels (tested); the 15 figures of
    scripts/bench_report.py --quick's store take ~15% less time."""
    fig.set_dpi(DPI)   # the layout at the resolution it is saved at, as savefig's own pass does
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        fig.set_layout_engine(None)   # none at all ("none" leaves a placeholder, and savefig's pass runs anyway)
    if kwargs.get("bbox_inches") == "tight":   # the box itself: "tight" makes savefig draw once more to find it
        pad = kwargs.pop("pad_inches", None)
        kwargs["bbox_inches"] = fig.get_tightbbox(fig.canvas.get_renderer()).padded(
            matplotlib.rcParams["savefig.pad_inches"] if pad is None else pad)
    fig.savefig(path, dpi=DPI, **kwargs)
    plt.close(fig)
    return Path(path)


def plain_log_ticks(axis) -> None:
    """Tick labels of a log axis (call after plotting) as plain numbers (0.2, 1, 10) instead of 2x10^-1; minor
    ticks at 2, 3, 5 (2, 5) labelled too when the axis spans less than 1.5 (3) decades."""
    axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    lo, hi = axis.get_view_interval()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 99
    if decades < 3:
        digits = "123456789" if decades < 0.6 else "235" if decades < 1.5 else "25"
        axis.set_minor_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in digits else ""))
    else:
        axis.set_minor_formatter(mticker.NullFormatter())


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", str(text)).strip("_")


def fmt_value(v) -> str:
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        if not np.isfinite(v):
            return "nan"
        if abs(v) >= 1e5:   # parameter counts: 1.2M, 350k
            return f"{v / 1e6:.3g}M" if abs(v) >= 1e6 else f"{v / 1e3:.3g}k"
        return f"{v:g}"
    return str(v)


# -- which runs, which colours -----------------------------------------------------------------------------
def axis_runs(runs: list, key: str, keys: list[str]) -> tuple[list, dict]:
    """The runs along axis `key`: the other swept axes (not the seed, not axes zipped with `key`) fixed at
    the values of the first run. Returns the runs and the fixed values."""
    others = []
    for k in keys:
        if k in (key, "seed"):
            continue
        mapping: dict = {}
        determined = all(mapping.setdefault(r.axes.get(key), r.axes.get(k)) == r.axes.get(k) for r in runs)
        if not determined and len({str(r.axes.get(k)) for r in runs}) > 1:
            others.append(k)
    if not others or not runs:
        return list(runs), {}
    fixed = {k: runs[0].axes.get(k) for k in others}
    chosen = [r for r in runs if all(str(r.axes.get(k)) == str(v) for k, v in fixed.items())]
    return chosen, fixed


def ordered_values(summary: pd.DataFrame, col: str) -> list:
    """Axis values in a meaningful order: numeric ascending; models by parameter count; else sweep order."""
    values = list(dict.fromkeys(summary[col].tolist()))
    num = pd.to_numeric(pd.Series(values), errors="coerce")
    if num.notna().all():
        return [v for _, v in sorted(zip(num, values))]
    if col == "model" and "params" in summary:
        p = summary.groupby("model")["params"].first()
        p = pd.to_numeric(p, errors="coerce")
        if p.notna().all():
            return sorted(values, key=lambda v: p[v])
    return values


def value_colors(values: list) -> dict:
    """viridis by log of the value (numeric, positive), by rank otherwise; the yellow end is left out so the
    largest value stays readable on white."""
    num = pd.to_numeric(pd.Series(values), errors="coerce")
    cmap = plt.get_cmap("viridis")
    if len(values) == 1:
        return {values[0]: cmap(0.35)}
    if num.notna().all() and (num > 0).all() and num.nunique() > 1:
        pos = np.log(num.to_numpy(float))
        pos = (pos - pos.min()) / (pos.max() - pos.min())
    else:
        pos = np.linspace(0, 1, len(values))
    return {v: cmap(0.05 + 0.8 * p) for v, p in zip(values, pos)}


def _label(col: str) -> str:
    return LABELS.get(col, col)


def _fixed_text(fixed: dict) -> str:
    return "" if not fixed else " (" + ", ".join(f"{SHORT.get(axis_column(k), k)}={fmt_value(v)}"
                                              for k, v in fixed.items()) + ")"


def _legend_handles(values, colors, col, notes=None):
    notes = notes or {}
    return [Line2D([0], [0], color=colors[v], lw=2.5,
                   label=f"{SHORT.get(col, col)} = {fmt_value(v)}" + (f" ({notes[v]})" if v in notes else ""))
            for v in values]


# -- training curves ----------------------------------------------------------------------------------------
def curves_figure(runs: list, summary: pd.DataFrame, key: str, keys: list[str], path: Path, x: str = "step",
                  threshold: float = DEFAULT_GAP_THRESHOLD, features: dict | None = None,
                  title: str = "") -> Path:
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
               title=_label(col), fontsize=9, title_fontsize=9, frameon=False)
    xdesc = "training step" if x == "step" else "normalized step (curves collapse if time scales as n/(B·lr))"
    fig.suptitle(f"{title}training curves by {_label(col)}{_fixed_text(fixed)}, against {xdesc}", fontsize=12)
    return save(fig, path)


PAIRED = {"loss": ("train_loss", "test_loss"), "sw": ("sw_train", "sw_test"), "fid": ("fid_train", "fid_test")}


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
    handles = _legend_handles(values, colors, col, notes)
    if any(r.state != State.FINISHED and len(r.frame) for r in chosen):
        handles.append(Line2D([0], [0], color="k", marker="x", ls="", ms=8, mew=2, label="run stopped (not finished)"))
    return handles


# -- scaling of the onset with the axis -----------------------------------------------------------------------
def _fit_label(metric: str, fit: dict, xshort: str) -> str:
    a = fit["exponent"]
    if not np.isfinite(a):
        return f"{METRIC_LABELS.get(metric, metric)}: no fit"
    ci = (f" [{fit['exponent_lo']:.2f}, {fit['exponent_hi']:.2f}]" if np.isfinite(fit["exponent_lo"])
          else " (no CI, <3 points)")
    return f"{METRIC_LABELS.get(metric, metric)}: ∝ {xshort}^{a:.2f}{ci}"


def scaling_figure(summary: pd.DataFrame, key: str, keys: list[str], path: Path, metrics=ONSET_METRICS,
                   title: str = "", heading: str = "onset of memorization") -> Path | None:
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
        ax.set_xlabel(_label(xcol) + " (log scale)")
        ax.set_ylabel(("normalized step" if normalized else "training step") + " (log scale)")
        ax.set_title("in normalized steps" if normalized else "in training steps", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        if any_point:
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
        else:
            ax.text(0.5, 0.5, "no run reached any onset", transform=ax.transAxes, ha="center")
        vals = sorted(plotted)
        if 1 < len(vals) <= 8:
            ax.set_xticks(vals)
            ax.set_xticklabels([fmt_value(v) for v in vals])
            ax.xaxis.set_minor_locator(mticker.NullLocator())
    fig.suptitle(f"{title}{heading} against {_label(xcol)}{_fixed_text(fixed)}\n"
                 "(markers: mean over seeds; lines: power-law fits through every run; legend: exponent with 95% CI)", fontsize=11)
    return save(fig, path)


def rate_fidelity_figure(summary: pd.DataFrame, key: str, keys: list[str], path: Path, title: str = "") -> Path:
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
            vals = sorted(set(x[np.isfinite(x)]))
            if 1 < len(vals) <= 8:
                ax.set_xticks(vals)
                ax.set_xticklabels([fmt_value(v) for v in vals])
                ax.xaxis.set_minor_locator(mticker.NullLocator())
        else:
            ax.set_xticks(range(len(values)))
            ax.set_xticklabels([str(v) for v in values])
        ax.set_xlabel(_label(xcol or col))
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if len(series) > 1 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7.5)
        if name == "final":
            ax.set_ylim(-0.03, 1.03)
    fig.suptitle(f"{title}memorization rate and best fidelity against {_label(xcol or col)}{_fixed_text(fixed)}"
                 " (finished runs)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save(fig, path)


# -- samples beside their nearest training images ------------------------------------------------------------
def sample_steps(run) -> list[int]:
    return [] if run.dir is None else RunStore(run.dir).steps("grid")


def _spread(items: list, k: int) -> list:
    if len(items) <= k:
        return list(items)
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, k)).astype(int))
    return [items[i] for i in idx]


def samples_figure(runs: list, summary: pd.DataFrame, key: str, keys: list[str], path: Path, max_runs: int = 4,
                   title: str = "") -> Path | None:
    """For a few runs spread over the axis: the sample grids (top row generated, bottom row nearest training
    image) at the first evaluation, at the best SW distance, and at the last evaluation. None if no run
    saved PNG grids."""
    col = axis_column(key)
    chosen, fixed = axis_runs(runs, key, keys)
    info = summary.set_index("run_id")
    with_png = [r for r in chosen if sample_steps(r)]
    if not with_png:
        return None
    values = ordered_values(info.loc[[r.run_id for r in with_png]].reset_index(), col)
    picked = []
    for v in _spread(values, max_runs):
        runs_v = [r for r in with_png if str(info.loc[r.run_id, col]) == str(v)]
        if runs_v:
            picked.append((v, runs_v[0]))
    rows = []
    for v, r in picked:
        steps = sample_steps(r)
        row = info.loc[r.run_id]
        stages = [("first evaluation", steps[0])]
        if np.isfinite(row["step_best_sw"]):
            best = min(steps, key=lambda s: abs(math.log(s) - math.log(row["step_best_sw"])))
            stages.append(("best SW", best))
        stages.append(("last evaluation", steps[-1]))
        seen, uniq = set(), []
        for name, s in stages:
            if s not in seen:
                seen.add(s)
                uniq.append((name, s))
        rows.append((v, r, uniq))
    ncols = max(len(u) for _, _, u in rows)
    img0 = plt.imread(RunStore(rows[0][1].dir).path("grid", rows[0][2][0][1]))
    aspect = img0.shape[0] / img0.shape[1]
    width = 5.2
    fig, axes = plt.subplots(len(rows), ncols, figsize=(width * ncols, (width * aspect + 0.45) * len(rows) + 0.5),
                             squeeze=False, layout="constrained")
    for i, (v, r, stages) in enumerate(rows):
        frame = r.frame.set_index("step") if len(r.frame) else None
        for j in range(ncols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(stages):
                ax.set_visible(False)
                continue
            name, s = stages[j]
            ax.imshow(plt.imread(RunStore(r.dir).path("grid", s)), interpolation="nearest")
            extra = ""
            if frame is not None and s in frame.index:
                m, sw = frame.loc[s, "mem_ratio"], frame.loc[s, "sw_test"]
                extra = ((f", mem_ratio {m:.2f}" if np.isfinite(m) else "")
                         + (f", SW {sw:.3g}" if np.isfinite(sw) else ""))
            ax.set_title(f"{SHORT.get(col, col)}={fmt_value(v)}: step {s} ({name}{extra})", fontsize=9)
            if j == 0:
                ax.set_ylabel("generated\nnearest train", fontsize=8)
    fig.suptitle(f"{title}generated samples (top row of each grid) above their nearest training images "
                 f"(bottom row){_fixed_text(fixed)}", fontsize=11)
    return save(fig, path)


# -- where in t the gap opens --------------------------------------------------------------------------------
def _by_t(frame: pd.DataFrame):
    rows = [(s, a, b) for s, a, b in zip(frame["step"], frame["train_loss_by_t"], frame["test_loss_by_t"])
            if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b) and len(a) > 0]
    if not rows:
        return None
    k = max(len(a) for _, a, _ in rows)
    rows = [r for r in rows if len(r[1]) == k]
    steps = np.array([r[0] for r in rows], float)
    gap = np.array([np.asarray(b, float) - np.asarray(a, float) for _, a, b in rows]).T   # (t bins, steps)
    return steps, gap


SNR_LABEL = "log-SNR  (low = noise, high = data)"


def run_formulation(run):
    """The formulation a run trained with, from its config (objective.name; rectified flow for runs stored
    before the objective group, or with no config yet)."""
    try:
        cfg = RunStore(run.dir).read_config()
    except Exception:
        cfg = None
    return objective.of_config(cfg) if cfg is not None else objective.build(objective.DEFAULT)


def snr_edges(formulation, bins: int) -> np.ndarray:
    """Cell edges on the log-SNR axis (formulation.log_snr) of `bins` equal t bins: the inner t edges mapped,
    the two outer cells as wide on either side of their centre as towards the inner edge (log-SNR is infinite
    at t = 1 for rectified flow), so the losses by t of every objective sit on one noise-level axis."""
    t = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    centres = formulation.log_snr(((t[:-1] + t[1:]) / 2).float()).double().numpy()
    if bins == 1:
        return np.array([centres[0] - 1, centres[0] + 1])
    inner = formulation.log_snr(t[1:-1].float()).double().numpy()
    return np.concatenate([[2 * centres[0] - inner[0]], inner, [2 * centres[-1] - inner[-1]]])


def _log_edges(x: np.ndarray) -> np.ndarray:
    """Cell edges around log-spaced centres (midpoints in log)."""
    logs = np.log10(x)
    if len(logs) == 1:
        return 10 ** np.array([logs[0] - 0.1, logs[0] + 0.1])
    mids = (logs[1:] + logs[:-1]) / 2
    return 10 ** np.concatenate([[logs[0] - (mids[0] - logs[0])], mids, [logs[-1] + (logs[-1] - mids[-1])]])


def gap_heatmap(runs: list, summary: pd.DataFrame, key: str, keys: list[str], path: Path, max_runs: int = 6,
                title: str = "", x: str = "step") -> Path | None:
    """The loss gap test_loss_by_t - train_loss_by_t, t bin against step (x='step') or normalized step
    (x='norm'), for runs spread over the axis (all of them up to max_runs), on a shared colour scale centred
    at 0. None if no run has losses by t."""
    col = axis_column(key)
    chosen, fixed = axis_runs(runs, key, keys)
    info = summary.set_index("run_id")
    data = [(r, _by_t(r.frame)) for r in chosen if len(r.frame)]
    data = [(r, d) for r, d in data if d is not None and len(d[0]) >= 2]
    if not data:
        return None
    values = ordered_values(info.loc[[r.run_id for r, _ in data]].reset_index(), col)
    picked = []
    for v in _spread(values, max_runs):
        for r, d in data:
            if str(info.loc[r.run_id, col]) == str(v):
                picked.append((v, r, d))
                break
    allgap = np.concatenate([d[1][np.isfinite(d[1])] for _, _, d in picked])
    vmax = max(float(np.percentile(np.abs(allgap), 99.5)) if allgap.size else 1.0, 1e-3)
    norm = mcolors.Normalize(vmin=-vmax, vmax=vmax)   # symmetric: white = no gap, the same scale both ways
    fig, axes = plt.subplots(1, len(picked), figsize=(4.3 * len(picked) + 1.2, 4.2), squeeze=False, sharey=False,
                             layout="constrained")
    mesh = None
    for ax, (v, r, (steps, gap)) in zip(axes.flat, picked):
        factor = float(info.loc[r.run_id, "norm_factor"]) if x == "norm" else 1.0
        edges = _log_edges(steps * factor)
        mesh = ax.pcolormesh(edges, snr_edges(run_formulation(r), gap.shape[0]), gap, cmap="RdBu_r", norm=norm,
                             shading="flat")
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        tau = info.loc[r.run_id, "tau_mem"] * factor
        if np.isfinite(tau):
            ax.axvline(tau, color="k", ls="--", lw=1.2)
            ax.text(tau, 0.03, "tau_mem ", transform=ax.get_xaxis_transform(), ha="right", va="bottom",
                    fontsize=8, rotation=90)
        ax.set_xlabel("training step" if x == "step" else "normalized step")
        state = "" if r.state == State.FINISHED else f" ({r.state})"
        ax.set_title(f"{SHORT.get(col, col)} = {fmt_value(v)}{state}", fontsize=10)
    axes.flat[0].set_ylabel(SNR_LABEL)
    cb = fig.colorbar(mesh, ax=list(axes.flat), fraction=0.05, pad=0.02)
    cb.set_label("loss gap in the noise-level bin (test − train)")
    against = "training step" if x == "step" else "normalized step"
    fig.suptitle(f"{title}at which noise level the train/test gap opens, against the {against}{_fixed_text(fixed)}",
                 fontsize=11)
    return save(fig, path, bbox_inches="tight")


def sweep_gap_heatmap(runs: list, summary: pd.DataFrame, path: Path, grid_points: int = 40, title: str = ""
                      ) -> Path | None:
    """The loss gap by t averaged over all runs of the sweep that have it, on a common log grid of the step
    (left) and of the normalized step (right): each run's gap is interpolated in log(step) within its own
    evaluated range and left out elsewhere; the colour is the mean over the runs covering the cell, and the
    line below each panel counts them. None with fewer than two runs with losses by t."""
    info = summary.set_index("run_id")
    data = [(r, _by_t(r.frame)) for r in runs if len(r.frame)]
    data = [(r, d) for r, d in data if d is not None and len(d[0]) >= 2]
    if len(data) < 2 or len({d[1].shape[0] for _, d in data}) != 1:
        return None
    names = {run_formulation(r).name for r, _ in data}   # averaging bins is meaningful for one objective only
    yedges = (snr_edges(run_formulation(data[0][0]), data[0][1][1].shape[0]) if len(names) == 1
              else np.linspace(0, 1, data[0][1][1].shape[0] + 1))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    panels = []
    for ax, x in zip(axes, ("step", "norm")):
        series = [(steps * (float(info.loc[r.run_id, "norm_factor"]) if x == "norm" else 1.0), gap)
                  for r, (steps, gap) in data]
        lo = min(s.min() for s, _ in series)
        hi = max(s.max() for s, _ in series)
        grid = np.geomspace(lo, hi, grid_points)
        stack = np.full((len(series), series[0][1].shape[0], grid_points), np.nan)
        for i, (s, gap) in enumerate(series):
            inside = (grid >= s.min()) & (grid <= s.max())
            for b in range(gap.shape[0]):
                stack[i, b, inside] = np.interp(np.log(grid[inside]), np.log(s), gap[b])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)     # cells no run covers stay NaN (blank)
            mean = np.nanmean(stack, axis=0)
        panels.append((ax, x, grid, mean, np.isfinite(stack[:, 0, :]).sum(0)))
    allgap = np.concatenate([p[3][np.isfinite(p[3])] for p in panels])
    vmax = max(float(np.percentile(np.abs(allgap), 99.5)) if allgap.size else 1.0, 1e-3)
    norm = mcolors.Normalize(vmin=-vmax, vmax=vmax)
    for ax, x, grid, mean, count in panels:
        mesh = ax.pcolormesh(_log_edges(grid), yedges, mean, cmap="RdBu_r", norm=norm, shading="flat")
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        ax.set_xlabel(("training step" if x == "step" else NORM_XLABEL)
                      + f"\n(runs covering the step: {count.min()} to {count.max()} of {len(data)})", fontsize=9)
        ax.set_ylabel(SNR_LABEL if len(names) == 1 else "t  (0 = noise, 1 = data; objectives differ)")
        ax.set_title("against the training step" if x == "step" else "against the normalized step", fontsize=10)
    cb = fig.colorbar(mesh, ax=list(axes), fraction=0.05, pad=0.02)
    cb.set_label("loss gap in the noise-level bin (test − train), mean over runs")
    fig.suptitle(f"{title}at which noise level the train/test gap opens, whole sweep ({len(data)} runs averaged)", fontsize=11)
    return save(fig, path)

