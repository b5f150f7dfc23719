"""`memsweep report NAME` on Weights & Biases: the report of a sweep as one wandb run in the sweep's group
(job_type "report"), beside its training runs, so that a dashboard shows the analysis next to the curves.

What it logs, read back from the files `make_report` wrote (summary.csv, fits.csv, the figures) and from the
run store (the curves):
  summary             summary.csv as a table (one row per run)
  fits                fits.csv as a table (the scaling fits)
  figures/<name>      every figure of the report as an image
  collapse/mem_ratio  mem_ratio of each run against the normalized step, one line per run (Marion & Wu 2026:
  collapse/rel_gap    under s (B/B0)(lr/lr0)/(n/n0) the curves of different n and B fall on one another), and
                      the relative loss gap (test - train) / train the same way
Offline (the default, like the runs) it is written under the sweep's folder (wandb/offline-run-*) for
`wandb sync`; online it needs WANDB_API_KEY.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from memsweep import lazy
from memsweep.report.build import FIGURE_PATTERNS, load_sweep
from memsweep.report.summary import axis_column
from memsweep.store.identity import sweep_dir
from memsweep.store.run import RunStore

MODES = ("offline", "online", "disabled")
CURVES = {"mem_ratio": "mem_ratio", "rel_gap": "relative loss gap (test - train) / train"}


def default_mode() -> str:
    """WANDB_MODE if it names one of MODES, else offline (as runs log)."""
    mode = os.environ.get("WANDB_MODE", "offline")
    return mode if mode in MODES else "offline"


def _settings(runs, name: str) -> dict:
    """Project, entity and group of the sweep's runs (their logger config), the group defaulting to its name."""
    for r in runs:
        store = RunStore(r.dir) if r.dir is not None else None
        if store is not None and store.config_path.is_file():
            logger = store.read_config().get("logger") or {}
            return {"project": logger.get("project") or "memsweep", "entity": logger.get("entity"),
                    "group": logger.get("group") or name}
    return {"project": "memsweep", "entity": None, "group": name}


def _label(run, keys) -> str:
    axes = ", ".join(f"{axis_column(k)}={run.axes.get(k)}" for k in keys if k in run.axes)
    return f"{axes} ({run.run_id})" if axes else run.run_id


def collapse_series(runs, summary: pd.DataFrame, keys, curve: str) -> tuple[list, list, list]:
    """Per run with the curve: its normalized steps (step x the run's norm_factor in summary.csv), the
    curve's finite values, and its label."""
    factors = dict(zip(summary["run_id"], summary["norm_factor"])) if len(summary) else {}
    xs, ys, labels = [], [], []
    for r in runs:
        if r.frame is None or r.frame.empty or curve not in r.frame:
            continue
        factor = factors.get(r.run_id)
        factor = float(factor) if factor is not None and math.isfinite(float(factor)) else 1.0
        points = [(float(s) * factor, float(v)) for s, v in zip(r.frame["step"], r.frame[curve])
                  if math.isfinite(float(v))]
        if points:
            xs.append([p[0] for p in points])
            ys.append([p[1] for p in points])
            labels.append(_label(r, keys))
    return xs, ys, labels


def figures(out: Path) -> list[Path]:
    return sorted({p for pattern in FIGURE_PATTERNS for p in out.glob(pattern)})


def log_report(output_root: Path, name: str, mode: str | None = None) -> str | None:
    """Log the report of sweep `name` (already written by make_report) to wandb; returns the wandb run's
    folder (offline) or URL (online), None if disabled."""
    mode = mode or default_mode()
    if mode == "disabled":
        return None
    wandb = lazy.load("wandb")  # loaded here: ~0.3 s of import that `memsweep report` without wandb skips

    record, runs = load_sweep(output_root, name)
    out = sweep_dir(output_root, name)
    keys = list(record.get("axes") or [])
    summary, fits = pd.read_csv(out / "summary.csv"), pd.read_csv(out / "fits.csv")
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(**_settings(runs, name), job_type="report", name=f"report {name}", mode=mode, dir=str(out),
                     config={"sweep": name, "axes": keys, "runs": len(runs)},
                     settings=wandb.Settings(console="off", reinit="create_new"))
    try:
        logged = {"summary": wandb.Table(dataframe=summary), "fits": wandb.Table(dataframe=fits)}
        if (out / "claims.csv").is_file():   # reports written before the claims table have none
            logged["claims"] = wandb.Table(dataframe=pd.read_csv(out / "claims.csv"))
        logged.update({f"figures/{p.stem}": wandb.Image(str(p)) for p in figures(out)})
        for curve, title in CURVES.items():
            xs, ys, labels = collapse_series(runs, summary, keys, curve)
            if xs:
                logged[f"collapse/{curve}"] = wandb.plot.line_series(
                    xs=xs, ys=ys, keys=labels, title=f"{title} against the normalized step", xname="normalized step")
        run.log(logged)
        where = run.url if mode == "online" else str(Path(run.dir).parent)
    finally:
        run.finish()
        # finish returns before wandb's service has written the offline file out; teardown waits for it, so
        # the file is complete when we return (and `wandb sync` or a reader may start at once)
        wandb.teardown()
    return where
