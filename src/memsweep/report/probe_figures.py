"""Figures of issue 16's probes (report.probes computes the tables): hybrid sampling against tau, the ELS
machine's distances against n, and where sampling trajectories go against the noise level. One curve per run,
coloured by n; early (first evaluation) and late (last evaluation) side by side."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from memsweep.report.figures import _legend_handles, plain_log_ticks, save, value_colors  # noqa: E402

WHEN = ("early", "late")


def _colors(table: pd.DataFrame) -> tuple[list, dict]:
    values = sorted(table["n"].dropna().unique().tolist())
    return values, value_colors(values)


def _title(when: str) -> str:
    return f"{when} (the {'first' if when == 'early' else 'last'} evaluation)"


def _save(fig, path: Path, title: str) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def hybrid_figure(table: pd.DataFrame, path: Path) -> Path | None:
    """mem_ratio and distance to the network's own samples of the hybrid sampler against tau."""
    if not len(table):
        return None
    values, colors = _colors(table)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True, squeeze=False)
    for j, when in enumerate(WHEN):
        for (rid, step), g in table[table["when"] == when].groupby(["run_id", "step"]):
            c = colors.get(g["n"].iloc[0], "gray")
            axes[0][j].plot(g["tau"], g["hybrid_mem_ratio"], "o-", color=c, ms=3)
            axes[1][j].plot(g["tau"], g["hybrid_dist"], "o-", color=c, ms=3)
        axes[0][j].set_title(_title(when))
        axes[0][j].set_ylim(-0.03, 1.03)
        axes[0][j].set_ylabel("mem_ratio of hybrid samples")
        axes[1][j].set_ylabel("mean L2 to the network's samples")
        axes[1][j].set_xlabel("tau (memorizer on t < tau, network after; t = 0 noise)", fontsize=9)
        for ax in axes[:, j]:
            ax.grid(alpha=0.3)
    axes[0][1].legend(handles=_legend_handles(values, colors, "n"), fontsize=8)
    return _save(fig, path, "Hybrid sampling (Bertrand et al. 2025): when are a sample's decisions made?")


def els_figure(table: pd.DataFrame, path: Path) -> Path | None:
    """Distance of the network's samples to the ELS machine's and to the memorizer's, against n."""
    if not len(table):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), squeeze=False)
    variants = list(dict.fromkeys(table["variant"])) if "variant" in table else ["padded"]
    for j, when in enumerate(WHEN):
        ax = axes[0][j]
        for i, variant in enumerate(variants):   # the ELS machine's patch banks and calibrations
            rows = table[(table["when"] == when) & ((table["variant"] == variant) if "variant" in table else True)]
            g = rows.groupby("n")[["els_dist", "els_mem_dist", "els_mem_ratio"]].mean()
            if not len(g):
                continue
            name = "" if variant == "padded" else f", {variant}"
            ax.plot(g.index, g["els_dist"], "o-" if i == 0 else "o--", color=f"C{2 + 2 * i}",
                    label=f"to the ELS machine's samples (els_dist{name})")
            if i == 0:
                ax.plot(g.index, g["els_mem_dist"], "s-", color="C3", label="to the memorizer's samples (els_mem_dist)")
            ax.set_xscale("log")
        ax.set_title(_title(when))
        ax.set_xlabel("n (training images)")
        ax.set_ylabel("mean L2 from the network's samples")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return _save(fig, path, "The equivariant local score machine (Kamb & Ganguli 2025) and the memorizer, same noise")


def traj_figure(table: pd.DataFrame, path: Path) -> Path | None:
    """Distance to the nearest noised training image (in units of the noise scale) against log-SNR."""
    t = table[np.isfinite(table["log_snr"])] if len(table) else table
    if not len(t):
        return None
    values, colors = _colors(t)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True, squeeze=False)
    for j, when in enumerate(WHEN):
        ax = axes[0][j]
        for (rid, step), g in t[t["when"] == when].groupby(["run_id", "step"]):
            c = colors.get(g["n"].iloc[0], "gray")
            ax.plot(g["log_snr"], g["traj_state"], "-", color=c, lw=2)
            ax.plot(g["log_snr"], g["traj_test"], "--", color=c, lw=1)
            ax.plot(g["log_snr"], g["traj_train"], ":", color=c, lw=1)
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
        ax.set_title(f"{when}: sampler states (solid), noised test (dashed), noised train (dotted)", fontsize=9)
        ax.set_xlabel("log-SNR of x_t (formulation.log_snr(t))", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("min_i ||x_t − a(t) y_i|| / (s(t) √D)")
    axes[0][1].legend(handles=_legend_handles(values, colors, "n"), fontsize=8)
    return _save(fig, path, "Where sampling trajectories go: distance to the training domain by noise level")
