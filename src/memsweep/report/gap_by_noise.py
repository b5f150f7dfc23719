"""Where in the noise level the train/test gap opens (gap_by_t_<axis>.png, gap_by_t_<axis>_normalized.png,
gap_by_t_sweep.png): the loss gap of each t bin (test_loss_by_t − train_loss_by_t) against the step, on the
log-SNR axis of each run's objective so that every objective's bins sit on one noise-level axis."""
from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib import colors as mcolors

from memsweep.report.markdown import fmt
from memsweep.report.style import (NORM_XLABEL, SHORT, axis_runs, fixed_text, log_edges, ordered_values,
                                   pick_evenly, plain_log_ticks, save)
from memsweep.report.summary import axis_column
from memsweep.science import objective, objective_settings
from memsweep.states import State
from memsweep.store.run import RunStore


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
    return objective.of_config(cfg) if cfg is not None else objective.build(objective_settings.DEFAULT)


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


def gap_heatmap(runs: list, summary: pd.DataFrame, key: str, keys: list[str], path: Path, max_runs: int = 6,
                x: str = "step") -> Path | None:
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
    for v in pick_evenly(values, max_runs):
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
        edges = log_edges(steps * factor)
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
        ax.set_title(f"{SHORT.get(col, col)} = {fmt(v, setting=True)}{state}", fontsize=10)
    axes.flat[0].set_ylabel(SNR_LABEL)
    cb = fig.colorbar(mesh, ax=list(axes.flat), fraction=0.05, pad=0.02)
    cb.set_label("loss gap in the noise-level bin (test − train)")
    against = "training step" if x == "step" else "normalized step"
    fig.suptitle(f"at which noise level the train/test gap opens, against the {against}{fixed_text(fixed)}",
                 fontsize=11)
    return save(fig, path, bbox_inches="tight")


def sweep_gap_heatmap(runs: list, summary: pd.DataFrame, path: Path, grid_points: int = 40
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
        mesh = ax.pcolormesh(log_edges(grid), yedges, mean, cmap="RdBu_r", norm=norm, shading="flat")
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        ax.set_xlabel(("training step" if x == "step" else NORM_XLABEL)
                      + f"\n(runs covering the step: {count.min()} to {count.max()} of {len(data)})", fontsize=9)
        ax.set_ylabel(SNR_LABEL if len(names) == 1 else "t  (0 = noise, 1 = data; objectives differ)")
        ax.set_title("against the training step" if x == "step" else "against the normalized step", fontsize=10)
    cb = fig.colorbar(mesh, ax=list(axes), fraction=0.05, pad=0.02)
    cb.set_label("loss gap in the noise-level bin (test − train), mean over runs")
    fig.suptitle(f"at which noise level the train/test gap opens, whole sweep ({len(data)} runs averaged)", fontsize=11)
    return save(fig, path)

