"""The sweep's summary table: one row per run, its identity and its quantities of interest."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from memsweep.report.markdown import fmt, markdown_table
from memsweep.science.curves import DEFAULT_GAP_THRESHOLD, analyze_run
from memsweep.science.normalized_time import normalization_factor, reference_values
from memsweep.store.analysis_cache import folder_stamp


AXIS_COLUMNS = {"data.n": "n", "model": "model", "model.name": "model", "train.batch_size": "batch_size",
                "optim.lr": "lr", "seed": "seed"}

SUMMARY_COLUMNS = ["run_id", "state", "n", "model", "batch_size", "lr", "seed", "tau_mem", "tau_gap", "tau_test_min",
                   "tau_gen", "tau_gen_fid", "window", "step_mem_0.1", "step_mem_0.5", "mem_rate", "best_sw", "best_sw_train", "best_fid",
                   "best_fid_train", "best_sw_all", "step_best_sw", "final_mem_ratio", "final_step", "total_steps",
                   "n_evals", "norm_factor", "tau_mem_norm", "tau_gen_norm", "params"]


def axis_column(key: str) -> str:
    """The summary column of a swept config key (data.n -> n, ...); other keys keep their name."""
    return AXIS_COLUMNS.get(key, key)


def axis_columns(summary, keys) -> list[str]:
    """The summary columns of the swept keys that the table has."""
    return [axis_column(k) for k in keys if axis_column(k) in summary]


def axes_text(row, axis_cols) -> str:
    """A run's axis values, `n=32, seed=0`."""
    return ", ".join(f"{a}={fmt(row[a], setting=True)}" for a in axis_cols)


@dataclass
class RunData:
    """One run of a sweep, as read from the store."""
    run_id: str
    state: str
    axes: dict                       # swept key -> value for this run
    params: dict                     # n, model, batch_size, lr, seed, total_steps, params, ...
    frame: pd.DataFrame              # metrics_frame(...)
    status: dict = field(default_factory=dict)
    dir: Path | None = None
    arms: tuple = ()                 # a study's arms holding the run (sweeps.spec)

    def fingerprint_parts(self):
        """What the report's figures read of this run (report.figure_cache): its values and its saved grids."""
        samples = folder_stamp(self.dir / "samples") if self.dir is not None else []
        return [self.run_id, self.state, self.axes, self.params, self.frame, self.status, samples]


def summary_table(runs: list[RunData], threshold: float = DEFAULT_GAP_THRESHOLD, reference: dict | None = None
                  ) -> pd.DataFrame:
    """One row per run: identity, state, and the per-run quantities. `reference` (n0, b0, lr0) defaults to the
    smallest values among the runs."""
    if reference is None and runs:
        reference = reference_values([r.params.get("n", np.nan) for r in runs],
                                     [r.params.get("batch_size", np.nan) for r in runs],
                                     [r.params.get("lr", np.nan) for r in runs])
    records = []
    for r in runs:
        p = r.params
        factor = float(normalization_factor(p.get("n", np.nan), p.get("batch_size", np.nan), p.get("lr", np.nan),
                                            reference["n0"], reference["b0"], reference["lr0"]))
        if not np.isfinite(factor):
            factor = 1.0
        row = {"run_id": r.run_id, "state": r.state,
               **{k: p.get(k) for k in ("n", "model", "batch_size", "lr", "seed")}}
        row.update(analyze_run(r.frame, factor, threshold))
        row["total_steps"] = p.get("total_steps")
        row["params"] = p.get("params")
        for key, value in r.axes.items():
            row.setdefault(axis_column(key), value)
        records.append(row)
    df = pd.DataFrame(records)
    for c in SUMMARY_COLUMNS:
        if c not in df:
            df[c] = np.nan
    extra = [c for c in df.columns if c not in SUMMARY_COLUMNS]
    return df[SUMMARY_COLUMNS + extra]


def summary_section(summary, keys) -> list[str]:
    """The summary table, one row per run."""
    L = []
    L += ["## Summary (one row per run)", ""]
    cols = ["run_id", "state"] + [axis_column(k) for k in keys if axis_column(k) in summary]
    cols += ["tau_mem", "tau_gap", "tau_gen", "window", "step_mem_0.1", "step_mem_0.5", "mem_rate", "best_sw",
             "best_sw_train"]
    if summary["best_fid"].notna().any():
        cols += ["best_fid"]
    cols += ["step_best_sw", "final_mem_ratio"]
    cols += [c for c in ("final_field_dist", "final_authenticity", "final_precision_test", "final_recall_test",
                         "sw_test_dip2_step") if c in summary and summary[c].notna().any()]
    table = summary[list(dict.fromkeys(cols))].copy()
    table["steps"] = [f"{fmt(a)} / {fmt(b)}" for a, b in zip(summary["final_step"], summary["total_steps"])]
    L += [markdown_table(table), "",
          "Steps are training steps; `steps` is the last evaluated step / the planned total; – means not reached "
          "(or no data).", "",
          "New columns (when present): final_field_dist, the distance of the learned field to the closed-form "
          "memorizer at the last evaluation; final_authenticity, final_precision_test, final_recall_test, from "
          "the last saved samples; sw_test_dip2_step, the step of sw_test's second dip (double descent). "
          "Sections below define them.", ""]

    return L
