"""Novelty beside fidelity (Alaa et al. 2022; Kynkäänniemi et al. 2019), from each evaluation's saved samples
(report.sample_analyses computes it): the section's table at each run's last evaluation, novelty_<axis>.png over training
and nn_ratio_<axis>.png, the distribution of nearest-neighbour distance ratios at each evaluation."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from memsweep.metrics.memorization import MEM_THRESHOLD
from memsweep.report.markdown import fmt, markdown_table
from memsweep.report.sample_analyses import NOVELTY_COLUMNS
from memsweep.report.style import (SHORT, axis_label, fixed_text, legend_handles, log_edges, plain_log_ticks,
                                   runs_with_results, save)
from memsweep.report.summary import axis_columns


def section(ctx: dict, runs, summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """Novelty beside fidelity at each run's last saved evaluation."""
    L = []
    by_id = {r.run_id: r for r in runs}
    info = summary.set_index("run_id")
    axis_cols = axis_columns(summary, keys)
    res = {k: v for k, v in ctx["results"].items() if v is not None}
    L += ["### Novelty beside fidelity", "",
          "From each evaluation's saved samples (8-bit) in pixel space: **authenticity** (Alaa et al. 2022): the "
          "fraction of samples farther from their nearest training image than that image is from its own nearest "
          "training image; **precision / recall** (Kynkäänniemi et al. 2019, k = 3) against the test split and the "
          "training set; the **NN-ratio** distribution (its fraction below 1/3 is mem_ratio). All of them are in "
          "`novelty.csv`.", ""]
    if ctx.get("max_samples") is not None:
        L += [f"Capped: these analyses use at most the first {ctx['max_samples']} samples of each evaluation "
              "(`--max-samples`).", ""]
    if res:
        t = []
        for rid, v in res.items():
            last = v.novelty.iloc[-1]
            logged = by_id[rid].frame.set_index("step")["mem_ratio"].get(v.last_step, np.nan)
            t.append({"run_id": rid, **{c: info.loc[rid, c] for c in axis_cols}, "step": v.last_step,
                      **{c: last.get(c, np.nan) for c in NOVELTY_COLUMNS}, "mem_ratio": last["mem_ratio_saved"],
                      "mem_ratio logged": logged})
        L += ["At the last evaluation:", "", markdown_table(pd.DataFrame(t)), ""]
    else:
        L += ["No run saved its samples (eval.save_samples=false, or no evaluation yet): nothing to compute.", ""]
    return L


def figure(runs, summary, key, keys, path: Path, results: dict) -> Path | None:
    """Authenticity, precision and recall (test and train splits) and mem_ratio against the step, one curve
    per run coloured by its axis value. `results`: run_id -> sample_analysis.SampleAnalysis."""
    col, fixed, picked, values, colors = runs_with_results(runs, summary, key, keys, results, max_runs=99)
    if not picked:
        return None
    panels = [("authenticity", None, "authenticity (fraction of samples\nnot closer to a train image than its NN)"),
              ("precision_test", "precision_train", "precision, k=3  (— test, - - train)"),
              ("recall_test", "recall_train", "recall, k=3  (— test, - - train)"),
              ("mem_ratio_saved", None, "memorization ratio (1/3 NN rule)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 2, 3.8), layout="constrained")
    for v, r in picked:
        f = results[r.run_id].novelty
        for ax, (a, b, _) in zip(axes, panels):
            if a in f:
                ax.plot(f["step"], f[a], color=colors[v], lw=1.6, marker=".", ms=4)
            if b and b in f:
                ax.plot(f["step"], f[b], color=colors[v], lw=1.3, ls="--")
    for ax, (_, _, ylabel) in zip(axes, panels):
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.legend(handles=legend_handles(values, colors, col), loc="outside right center", title=axis_label(col),
               fontsize=9, title_fontsize=9, frameon=False)
    fig.suptitle(f"novelty beside fidelity, from each evaluation's saved samples (pixel L2){fixed_text(fixed)}",
                 fontsize=11)
    return save(fig, path)


def nn_ratio_figure(runs, summary, key, keys, path: Path, results: dict, max_runs: int = 6,
                    threshold: float = MEM_THRESHOLD) -> Path | None:
    """For each run: the histogram of ||x - NN1|| / ||x - NN2|| over the samples at each evaluation, as a
    column of a heatmap (step on x, ratio on y); copies sit near 0, new images near 1."""
    col, fixed, picked, _, _ = runs_with_results(runs, summary, key, keys, results, max_runs)
    if not picked:
        return None
    fig, axes = plt.subplots(1, len(picked), figsize=(3.6 * len(picked) + 1.2, 3.9), squeeze=False, sharey=True,
                             layout="constrained")
    mesh = None
    for ax, (v, r) in zip(axes.flat, picked):
        f = results[r.run_id].novelty
        hist = np.array(f["nn_ratio_hist"].tolist(), float).T          # (bins, steps)
        mesh = ax.pcolormesh(log_edges(f["step"].to_numpy(float)), np.linspace(0, 1, hist.shape[0] + 1), hist,
                             cmap="magma_r", vmin=0, vmax=1,
                             shading="flat")
        ax.axhline(threshold, color="C0", ls="--", lw=1.2)
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        ax.set_xlabel("training step")
        ax.set_title(f"{SHORT.get(col, col)} = {fmt(v, setting=True)}", fontsize=10)
    axes.flat[0].set_ylabel("NN distance ratio  ||x − NN1|| / ||x − NN2||")
    axes.flat[0].text(0.02, threshold + 0.01, "1/3 rule", color="C0", fontsize=8, transform=axes.flat[0].get_yaxis_transform())
    cb = fig.colorbar(mesh, ax=list(axes.flat), fraction=0.05, pad=0.02)
    cb.set_label("fraction of samples in the bin")
    fig.suptitle(f"distribution of nearest-neighbour distance ratios at each evaluation{fixed_text(fixed)}",
                 fontsize=11)
    return save(fig, path)
