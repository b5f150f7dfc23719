"""The report's sections beyond the paper: field-level memorization (field_dist), double descent, novelty
beside fidelity, which samples are copied, effective model memorization, and the disjoint-subsets test.

compute() adds summary columns and writes the CSVs; figures() draws; report.extra_sections writes the markdown. Every number
comes from the run store; what cannot be computed is said, never filled in.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from memsweep.science.fits import slices
from memsweep.report.summary import axis_column
from memsweep.report import disjoint, figures as plots, sample_figures as plots_samples
from memsweep.science.capacity import effective_memorization
from memsweep.report.samples import NOVELTY_COLUMNS, analyze_samples, final_columns, progress_bar
from memsweep.states import State
from memsweep.threads import torch_threads

log = logging.getLogger(__name__)


def compute(runs, summary: pd.DataFrame, keys: list[str], out, device="cpu", max_samples: int | None = None) -> dict:
    """Report-time analyses; adds final_<novelty> columns to `summary` in place; writes novelty.csv,
    copies_by_image.csv, copies_by_class.csv and (with a data.offset axis) disjoint.csv into `out`.
    `device`, `max_samples`: of the sample analyses (report.samples.analyze_samples)."""
    notes, results, cache = [], {}, {}
    _analyze(runs, results, cache, notes, device, max_samples)   # its threads by the data's size
    table, shown = [], {}
    if disjoint.OFFSET_KEY in keys:
        try:
            with torch_threads(1):   # two digits models' samples: small products
                table, shown = disjoint.disjoint_table(runs)
        except Exception as e:
            notes.append(f"disjoint-subsets test not computed ({type(e).__name__}: {e})")
    finals = {rid: final_columns(res) for rid, res in results.items()}
    for c in NOVELTY_COLUMNS:
        summary[f"final_{c}"] = [finals.get(rid, {}).get(f"final_{c}", np.nan) for rid in summary["run_id"]]
    done = {k: v for k, v in results.items() if v is not None}
    if done:
        pd.concat([v.novelty.drop(columns="nn_ratio_hist").assign(run_id=k) for k, v in done.items()]).to_csv(
            out / "novelty.csv", index=False)
        pd.concat([v.images.assign(run_id=k) for k, v in done.items()]).to_csv(out / "copies_by_image.csv",
                                                                              index=False)
        pd.concat([v.classes.assign(run_id=k) for k, v in done.items()]).to_csv(out / "copies_by_class.csv",
                                                                               index=False)
    if table:
        pd.DataFrame(table).to_csv(out / "disjoint.csv", index=False)
    emm = []
    if "data.n" in keys and len(summary):
        fin = summary[summary["state"] == State.FINISHED]
        for fixed, group in slices(fin, "n", [axis_column(k) for k in keys]) if len(fin) else []:
            emm.append((fixed, effective_memorization(group["n"], group["final_mem_ratio"]), len(group)))
    return {"results": results, "disjoint": (table, shown), "emm": emm, "notes": notes, "max_samples": max_samples}


def figures(ctx: dict, runs, summary, keys, out, add) -> None:
    """Draw the figures; `add(title, func, *args, **kwargs)` queues one (report.build draws them together)."""
    results = {k: v for k, v in ctx["results"].items() if v is not None}
    add("Loss gap by noise level (log-SNR) over the whole sweep (mean over runs), against step and normalized step",
        plots.sweep_gap_heatmap, runs, summary, out / "gap_by_t_sweep.png")
    for key in [k for k in keys if k not in ("seed", disjoint.OFFSET_KEY)] or keys:
        s = plots.slug(axis_column(key))
        lab = plots.LABELS.get(axis_column(key), key)
        if results:
            add(f"Novelty beside fidelity over training (by {lab})", plots_samples.novelty_figure, runs, summary,
                key, keys, out / f"novelty_{s}.png", results)
            add(f"Distribution of nearest-neighbour distance ratios at each evaluation (by {lab})",
                plots_samples.nn_ratio_figure, runs, summary, key, keys, out / f"nn_ratio_{s}.png", results)
            add(f"Which training images are copied (by {lab})", plots_samples.copies_figure, runs, summary, key,
                keys, out / f"copies_{s}.png", results)
    table, shown = ctx["disjoint"]
    if table:
        add("Disjoint-subsets test: similarity of two models trained on disjoint subsets, against n",
            plots_samples.disjoint_figure, table, shown, out / "disjoint.png")


def _analyze(runs, results: dict, cache: dict, notes: list, device="cpu", max_samples=None) -> None:
    todo = [r for r in runs if r.dir is not None and len(r.frame)]
    with progress_bar([r.dir for r in todo]) as bar:
        for r in todo:
            try:
                results[r.run_id] = analyze_samples(r.dir, cache, device, max_samples, bar)
            except Exception as e:   # a run whose data or samples cannot be read: say so, compute nothing for it
                notes.append(f"run `{r.run_id}`: novelty and copies not computed ({type(e).__name__}: {e})")
