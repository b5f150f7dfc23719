"""The report's sections beyond the paper: field-level memorization (field_dist), double descent, novelty beside
fidelity (report.novelty_fidelity), which samples are copied (report.copies), effective model memorization, and
the disjoint-subsets test (report.disjoint). This module runs their analyses (the saved samples', report.sample_analyses;
the disjoint pairs'; EMM), queues their figures, and writes the three sections that are a table or a list of
summary columns (field_dist, double descent, EMM). Every number comes from the run store; what cannot be
computed is said, never filled in.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from memsweep.report import copies, disjoint, gap_by_noise, novelty_fidelity
from memsweep.report.markdown import fmt, markdown_table
from memsweep.report.sample_analyses import NOVELTY_COLUMNS, analyze_samples, final_columns, progress_bar
from memsweep.report.style import LABELS, slug
from memsweep.report.summary import axes_text, axis_column, axis_columns
from memsweep.science.capacity import EMM_LEVEL, effective_memorization
from memsweep.science.dips import CURVES, DEFAULT_MIN_DEPTH
from memsweep.science.fits import slices
from memsweep.states import State
from memsweep.threads import torch_threads


def compute(runs, summary: pd.DataFrame, keys: list[str], out, device="cpu", max_samples: int | None = None) -> dict:
    """Report-time analyses; adds final_<novelty> columns to `summary` in place; writes novelty.csv,
    copies_by_image.csv, copies_by_class.csv and (with a data.offset axis) disjoint.csv into `out`.
    `device`, `max_samples`: of the sample analyses (report.sample_analyses.analyze_samples)."""
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
        gap_by_noise.sweep_gap_heatmap, runs, summary, out / "gap_by_t_sweep.png")
    for key in [k for k in keys if k not in ("seed", disjoint.OFFSET_KEY)] or keys:
        s = slug(axis_column(key))
        lab = LABELS.get(axis_column(key), key)
        if results:
            add(f"Novelty beside fidelity over training (by {lab})", novelty_fidelity.figure, runs, summary,
                key, keys, out / f"novelty_{s}.png", results)
            add(f"Distribution of nearest-neighbour distance ratios at each evaluation (by {lab})",
                novelty_fidelity.nn_ratio_figure, runs, summary, key, keys, out / f"nn_ratio_{s}.png", results)
            add(f"Which training images are copied (by {lab})", copies.figure, runs, summary, key,
                keys, out / f"copies_{s}.png", results)
    table, shown = ctx["disjoint"]
    if table:
        add("Disjoint-subsets test: similarity of two models trained on disjoint subsets, against n",
            disjoint.figure, table, shown, out / "disjoint.png")


def lines(ctx: dict, runs, summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """All the sections, in order, and the notes of what could not be computed."""
    L = ["## Beyond the paper", ""]
    for section in (field_section, double_descent_section, novelty_fidelity.section, copies.section, emm_section,
                    disjoint.section):
        L += section(ctx, runs, summary, keys)
    if ctx["notes"]:
        L += [f"- {n}" for n in ctx["notes"]] + [""]
    return L


def field_section(ctx: dict, runs, summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """Field-level memorization: field_dist at the start, at tau_mem, at mem_ratio 0.5 and at the end."""
    L = []
    info = summary.set_index("run_id")
    axis_cols = axis_columns(summary, keys)
    rows = []
    for r in runs:
        f = r.frame
        if not len(f) or not f["field_dist"].notna().any():
            continue
        row = info.loc[r.run_id]
        rows.append({"run_id": r.run_id, **{c: row[c] for c in axis_cols},
                     "first": f["field_dist"].dropna().iloc[0], "at tau_mem": _at_step(f, "field_dist", row["tau_mem"]),
                     "at mem_ratio 0.5": _at_step(f, "field_dist", row["step_mem_0.5"]),
                     "last": f["field_dist"].dropna().iloc[-1]})
    L += ["### Field-level memorization", "",
          "`field_dist` = ||u_θ − u*||² / ||u*||² summed over fixed probe points x_t = (1 − t) x0 + t x1 (x1 test "
          "images, fixed noise) at each t of `eval.field_t`, averaged over t; u* is the closed-form velocity of the "
          "class's training images (the perfect memorizer, whose samples are all copies). 1 for a zero field, 0 "
          "for the memorizer.", ""]
    if rows:
        L += [markdown_table(pd.DataFrame(rows)), "",
              "Values at the evaluation nearest to each step (– where that step was not reached).", ""]
    else:
        L += ["No run logged field_dist (runs trained before it existed, or eval.field_points=0).", ""]
    return L


def double_descent_section(ctx: dict, runs, summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """Double descent: runs whose SW or FID curve has a second dip."""
    L = []
    axis_cols = axis_columns(summary, keys)
    L += ["### Double descent of SW and FID", "",
          f"A dip is a local minimum of the curve (log scale, running median of 3 evaluations) at least "
          f"{DEFAULT_MIN_DEPTH:.0%} below the lower of the maxima around it (the last evaluation may be one); "
          "depth = 1 − value / that maximum. A second dip is a second descent. Columns `<curve>_dip1_step`, "
          "`_dip1_depth`, `_dip2_step`, `_dip2_depth`, `<curve>_dips` in summary.csv; ▼ and ✚ on the curves.", ""]
    dd = []
    for _, row in summary.iterrows():
        for c in CURVES:
            if row.get(f"{c}_dips", 0) >= 2:
                dd.append(f"- `{row['run_id']}` ({axes_text(row, axis_cols)}): "
                          f"{c}: first dip at step {fmt(row[f'{c}_dip1_step'])} (depth {row[f'{c}_dip1_depth']:.2f}), "
                          f"second at {fmt(row[f'{c}_dip2_step'])} (depth {row[f'{c}_dip2_depth']:.2f})")
    with_curves = int(sum(summary.get(f"{c}_dips", pd.Series(dtype=float)).notna().sum() for c in CURVES))
    L += dd if dd else [f"- No SW or FID curve shows a second descent ({with_curves} curves examined)."]
    L.append("")
    return L


def emm_section(ctx: dict, runs, summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """Effective model memorization (Gu et al. 2023)."""
    L = []
    if ctx["emm"]:
        L += ["### Effective model memorization (Gu et al.)", "",
              f"The largest n at which the final mem_ratio (finished runs, mean over seeds) is at least {EMM_LEVEL:g}, "
              "interpolated in log n between the last n at or above and the next n below.", ""]
        for fixed, r, k in ctx["emm"]:
            where = (" (" + ", ".join(f"{a}={b}" for a, b in fixed.items()) + ")") if fixed else ""
            if r["bound"] == "lower":
                L.append(f"- EMM{where} ≥ {fmt(r['emm'])}: even the largest n still memorizes ({k} runs).")
            elif r["bound"] == "upper":
                L.append(f"- EMM{where} < {fmt(r['n_above'])}: no n reaches {EMM_LEVEL:g} ({k} runs); no value.")
            elif np.isfinite(r["emm"]):
                L.append(f"- **EMM{where} ≈ {fmt(r['emm'])}** (between n = {fmt(r['n_below'])} and "
                         f"n = {fmt(r['n_above'])}; {k} runs).")
            else:
                L.append(f"- EMM{where}: no finished run with a final mem_ratio.")
        L.append("")
    return L


def _at_step(frame, key, step) -> float:
    """`key` at the evaluation nearest to `step` in log (NaN if step is NaN or the key is missing)."""
    if not np.isfinite(step) or key not in frame or not len(frame):
        return float("nan")
    s = frame["step"].to_numpy(float)
    return float(frame[key].iloc[int(np.argmin(np.abs(np.log(s) - math.log(step))))])


def _analyze(runs, results: dict, cache: dict, notes: list, device="cpu", max_samples=None) -> None:
    todo = [r for r in runs if r.dir is not None and len(r.frame)]
    with progress_bar([r.dir for r in todo]) as bar:
        for r in todo:
            try:
                results[r.run_id] = analyze_samples(r.dir, cache, device, max_samples, bar)
            except Exception as e:   # a run whose data or samples cannot be read: say so, compute nothing for it
                notes.append(f"run `{r.run_id}`: novelty and copies not computed ({type(e).__name__}: {e})")
