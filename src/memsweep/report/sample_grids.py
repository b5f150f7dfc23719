"""Samples beside their nearest training images, early and late (samples_<axis>.png): the PNG grids each
evaluation saved, for a few runs spread over the axis."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from memsweep.report.markdown import fmt
from memsweep.report.style import SHORT, axis_runs, fixed_text, ordered_values, pick_evenly, save
from memsweep.report.summary import axis_column
from memsweep.store.run import RunStore


def sample_steps(run) -> list[int]:
    return [] if run.dir is None else RunStore(run.dir).steps("grid")


def samples_figure(runs: list, summary: pd.DataFrame, key: str, keys: list[str], path: Path, max_runs: int = 4
                   ) -> Path | None:
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
    for v in pick_evenly(values, max_runs):
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
            ax.set_title(f"{SHORT.get(col, col)}={fmt(v, setting=True)}: step {s} ({name}{extra})", fontsize=9)
            if j == 0:
                ax.set_ylabel("generated\nnearest train", fontsize=8)
    fig.suptitle(f"generated samples (top row of each grid) above their nearest training images "
                 f"(bottom row){fixed_text(fixed)}", fontsize=11)
    return save(fig, path)

