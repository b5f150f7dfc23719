"""Architectures compared on the same data (issue 28): a sweep whose runs differ in their network
(`memsweep sweep ... model=tiny,local_cnn`, or a lab's `model=mynet` beside them), each architecture at each n:
when it memorizes (tau_mem, step_mem_0.5), how fast (mem_rate), its best fidelity (best_sw), and how close its
samples are to the equivariant local score machine's (Kamb & Ganguli 2025: els_dist, mean pixel L2 between the
network's samples and the ELS machine's from the same noise) over training. Kamb & Ganguli predict that a CNN
with a local receptive field samples like the ELS machine; a U-Net's downsampling and attention widen its field.

els_dist over training is read from metrics.jsonl wherever `memsweep eval SWEEP els --steps all` wrote it, and
at the first and last evaluation from the report's probes (report.probe_report) when the rows lack it.
architectures.csv (one row per run) and architectures.png go next to report.md.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from memsweep.report.markdown import fmt, markdown_table
from memsweep.report.style import plain_log_ticks, save

FIGURE, TABLE = "architectures.png", "architectures.csv"
COLUMNS = ["model", "n", "params", "tau_mem", "step_mem_0.5", "mem_rate", "best_sw", "final_mem_ratio",
           "els_dist_first", "els_dist_at_mem", "els_dist_last", "els_steps"]


def _els_series(r, probe_els: pd.DataFrame | None) -> pd.DataFrame:
    """(step, els_dist, mem_ratio) of one run: the rows' els_dist, and the report's probes where rows lack it."""
    f = r.frame
    have = f[["step", "els_dist", "mem_ratio"]].dropna(subset=["els_dist"]) if "els_dist" in f else \
        pd.DataFrame(columns=["step", "els_dist", "mem_ratio"])
    if probe_els is not None and len(probe_els):
        mine = probe_els[(probe_els["run_id"] == r.run_id)
                         & ((probe_els["variant"] == "padded") if "variant" in probe_els else True)]
        more = mine[~mine["step"].isin(have["step"])][["step", "els_dist", "mem_ratio"]]
        have = pd.concat([have, more], ignore_index=True) if len(more) else have
    return have.astype(float).sort_values("step").reset_index(drop=True)


def compute(runs, summary: pd.DataFrame, probe_ctx: dict | None, out: Path) -> dict | None:
    """{"table": one row per run, "curves": (run, step, els_dist, mem_ratio)}, or None when the sweep has one
    architecture (architectures.csv is written, or removed when there is nothing to compare)."""
    models = list(dict.fromkeys(summary["model"].dropna())) if len(summary) and "model" in summary else []
    if len(models) < 2:
        (Path(out) / TABLE).unlink(missing_ok=True)
        return None
    by_id = summary.set_index("run_id")
    rows, curves = [], []
    for r in runs:
        if r.run_id not in by_id.index or not len(r.frame):
            continue
        s = by_id.loc[r.run_id]
        els = _els_series(r, (probe_ctx or {}).get("els"))
        at = s.get("step_mem_0.5")
        near = els.iloc[(els["step"] - at).abs().argmin()] if len(els) and np.isfinite(at) else None
        rows.append({"run_id": r.run_id, "model": s["model"], "n": s["n"], "seed": s.get("seed"),
                     "params": s.get("params"), **{k: s.get(k) for k in COLUMNS[3:8]},
                     "els_dist_first": els["els_dist"].iloc[0] if len(els) else np.nan,
                     "els_dist_at_mem": near["els_dist"] if near is not None else np.nan,
                     "els_dist_last": els["els_dist"].iloc[-1] if len(els) else np.nan, "els_steps": len(els)})
        curves += [{"run_id": r.run_id, "model": s["model"], "n": s["n"], **e} for e in els.to_dict("records")]
    table = pd.DataFrame(rows)
    table.to_csv(Path(out) / TABLE, index=False)
    return {"table": table, "curves": pd.DataFrame(curves), "models": models}


def lines(ctx: dict | None) -> list[str]:
    """The report's section comparing the architectures, or nothing when the sweep has one."""
    if ctx is None:
        return []
    t = ctx["table"]
    g = t.groupby(["model", "n"], sort=False)[COLUMNS[2:]].mean().reset_index().sort_values(["n", "model"])
    L = ["### Architectures compared on the same data", "",
         f"Each architecture ({', '.join(f'`{m}`' for m in ctx['models'])}) at each n, averaged over seeds "
         f"(`{TABLE}`: one row per run). `els_dist`: mean pixel L2 between the network's samples and the "
         "equivariant local score machine's from the same noise (Kamb & Ganguli 2025; memsweep's padded patch "
         "bank), at the first evaluation, the one nearest `step_mem_0.5`, and the last; `els_steps`: the "
         "evaluations that have it (`memsweep eval SWEEP els --steps all` fills them all). A blank onset: not "
         "reached within the run's budget.", "", markdown_table(g), ""]
    words = []
    for n, h in g.groupby("n"):
        if len(h) < 2:
            continue
        onset = h.set_index("model")["step_mem_0.5"]
        late = h.set_index("model")["els_dist_last"]
        order = onset.fillna(np.inf).sort_values()
        first, last = order.index[0], order.index[-1]
        if not np.isfinite(order.iloc[0]):
            when = "none reaches mem_ratio 0.5 within its budget"
        elif not np.isfinite(order.iloc[-1]):
            when = (f"`{last}` never reaches mem_ratio 0.5 within its budget, `{first}` does at step "
                    f"{fmt(onset[first])}")
        else:
            when = f"`{first}` copies first (mem_ratio 0.5 at step {fmt(onset[first])}, `{last}` at {fmt(onset[last])})"
        closest = late.dropna().sort_values()
        near = (f"; at the last evaluation `{closest.index[0]}`'s samples are the closer to the ELS machine's "
                f"(els_dist {', '.join(f'{m} {fmt(v)}' for m, v in closest.items())})" if len(closest) > 1 else "")
        words.append(f"n = {fmt(n, setting=True)}: {when}{near}")
    if words:
        L += ["What it shows: " + "; ".join(words) + ".", ""]
    return L


def figures(add, ctx: dict | None, out: Path) -> None:
    """architectures.png through the report's figure jobs (`add`), or its removal when there is nothing to compare."""
    if ctx is None or not len(ctx["curves"]):
        (Path(out) / FIGURE).unlink(missing_ok=True)
        return
    add("Architectures: mem_ratio and the distance to the ELS machine's samples over training",
        figure, ctx["curves"], ctx["table"], Path(out) / FIGURE)


def figure(curves: pd.DataFrame, table: pd.DataFrame, path: Path) -> Path | None:
    """mem_ratio and els_dist against the step: colour by architecture, marker by n, one curve per run."""
    models = list(dict.fromkeys(table["model"]))
    ns = sorted(table["n"].dropna().unique())
    markers = dict(zip(ns, "osD^v<>p*h"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), squeeze=False)
    for r in table.itertuples():
        c = f"C{models.index(r.model)}"
        run = curves[curves["run_id"] == r.run_id]
        label = f"{r.model}, n = {fmt(r.n, setting=True)}"
        for ax, key in zip(axes[0], ("mem_ratio", "els_dist")):
            ax.plot(run["step"], run[key], "-", marker=markers.get(r.n, "o"), color=c, ms=4, label=label)
    for ax, ylabel in zip(axes[0], ("mem_ratio (1/3 rule)", "els_dist: L2 to the ELS machine's samples")):
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][1].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axes[0][1].legend(unique.values(), unique.keys(), fontsize=7)
    fig.suptitle("Architectures on the same data: copying, and closeness to the ELS machine (Kamb & Ganguli 2025)")
    fig.tight_layout()
    return save(fig, path)
