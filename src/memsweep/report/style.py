"""The look every figure of the report shares (matplotlib, Agg backend): resolution, axis labels, plain log ticks,
which runs an axis's figure shows and their colours, legends, and saving. A figure function takes the runs
(summary.RunData), the summary table and a swept axis, writes one PNG and returns its path (None when it has
nothing to draw)."""
from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import ticker as mticker  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from memsweep.report.markdown import fmt  # noqa: E402
from memsweep.report.summary import axis_column  # noqa: E402

DPI = 110
LABELS = {"n": "n (training images)", "batch_size": "batch size B", "lr": "learning rate", "model": "model",
          "params": "model parameters", "seed": "seed"}
SHORT = {"n": "n", "batch_size": "B", "lr": "lr", "model": "model", "params": "params", "seed": "seed"}
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


def value_ticks(ax, values) -> None:
    """A log x axis ticked at the axis's values themselves (2 to 8 of them), no minor ticks."""
    vals = sorted(values)
    if 1 < len(vals) <= 8:
        ax.set_xticks(vals)
        ax.set_xticklabels([fmt(v, setting=True) for v in vals])
        ax.xaxis.set_minor_locator(mticker.NullLocator())


def log_edges(x: np.ndarray) -> np.ndarray:
    """Cell edges around log-spaced centres (midpoints in log)."""
    logs = np.log10(x)
    if len(logs) == 1:
        return 10 ** np.array([logs[0] - 0.1, logs[0] + 0.1])
    mids = (logs[1:] + logs[:-1]) / 2
    return 10 ** np.concatenate([[logs[0] - (mids[0] - logs[0])], mids, [logs[-1] + (logs[-1] - mids[-1])]])


def slug(text: str) -> str:
    """A figure's file name part for an axis: `model.channels` -> model_channels."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", str(text)).strip("_")


def axis_label(col: str) -> str:
    return LABELS.get(col, col)


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


def pick_evenly(items: list, k: int) -> list:
    """At most k of `items`, spread evenly from the first to the last."""
    if len(items) <= k:
        return list(items)
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, k)).astype(int))
    return [items[i] for i in idx]


def runs_with_results(runs, summary, key, keys, extra: dict, max_runs: int):
    """Runs along the axis that have an entry in `extra` (run_id -> result), spread over the axis values."""
    col = axis_column(key)
    chosen, fixed = axis_runs(runs, key, keys)
    chosen = [r for r in chosen if extra.get(r.run_id) is not None]
    if not chosen:
        return col, fixed, [], [], {}
    info = summary.set_index("run_id")
    values = ordered_values(info.loc[[r.run_id for r in chosen]].reset_index(), col)
    picked = []
    for v in pick_evenly(values, max_runs):
        picked += [(v, r) for r in chosen if str(info.loc[r.run_id, col]) == str(v)][:1]
    return col, fixed, picked, values, value_colors(values)


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


def fixed_text(fixed: dict) -> str:
    """The other axes' values a figure holds fixed, ` (B=32, lr=0.001)`, or nothing."""
    return "" if not fixed else " (" + ", ".join(f"{SHORT.get(axis_column(k), k)}={fmt(v, setting=True)}"
                                              for k, v in fixed.items()) + ")"


def legend_handles(values, colors, col, notes=None) -> list:
    """One legend line per axis value in its colour, with a note where `notes` has one."""
    notes = notes or {}
    return [Line2D([0], [0], color=colors[v], lw=2.5,
                   label=f"{SHORT.get(col, col)} = {fmt(v, setting=True)}" + (f" ({notes[v]})" if v in notes else ""))
            for v in values]


def image_array(img) -> np.ndarray:
    """An image tensor in [-1, 1] (C, H, W) as an array imshow takes, in [0, 1]."""
    a = ((img.detach().cpu().float().clamp(-1, 1) + 1) / 2).numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
