"""report.md in order (render), and its sections about the sweep as a whole: the title and what was varied (with,
first, a sentence when no run memorized), the runs that did not finish, the definitions, where the time went,
the figures and the problems met. The topics' own sections come from their modules (report/__init__.py)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from memsweep.report import claims, collapse, findings
from memsweep.report.markdown import fmt, markdown_table
from memsweep.report.style import ordered_values
from memsweep.report.summary import axis_column, summary_section
from memsweep.science.normalized_time import reference_values
from memsweep.states import State


def render(record, runs, summary, fits, sensitivity, figures, notes, threshold, parts, claim_table, more=()) -> str:
    """report.md: every section in order. `parts`: the whole sweep, or a study's arms (report.build.sweep_parts)."""
    keys = list(record.get("axes") or [])
    L = header(record, runs, summary, keys) + unfinished(runs) + definitions(threshold)
    L += claims.section(claim_table, summary)
    L += findings.section([(ks, s) for _, ks, _, s in parts], summary, fits, sensitivity)
    L += collapse.section([(name, ks, s) for name, ks, _, s in parts])
    L += summary_section(summary, keys) + findings.fits_section(fits) + list(more) + timing_section(runs)
    L += figures_section(figures)
    L += problems(notes)
    return "\n".join(L)


def header(record, runs, summary, keys) -> list[str]:
    """Title, what the sweep is, what it varied, and the normalized step's reference values."""
    name = record.get("name", "?")
    spec = record.get("spec") or {}
    L = [f"# Sweep `{name}`: the memorization transition", ""] + no_memorization(summary)
    L.append(f"_Generated {time.strftime('%Y-%m-%d %H:%M')} by `memsweep report {name}` from the run store; "
             "the numbers are in `summary.csv` (one row per run), `fits.csv` (fits across runs) and `claims.csv` "
             "(the paper's claims with verdicts)._")
    L.append("")
    if spec.get("description"):
        L += [f"**What the sweep is:** {spec['description']}.", ""]
    arms = record.get("arms") or {}
    varied = []
    for key in keys:
        col = axis_column(key)
        vals = ordered_values(summary, col) if col in summary and len(summary) else []
        if any(key in arm_keys for arm_keys in arms.values()):
            arm = next(a for a, arm_keys in arms.items() if key in arm_keys)
            in_arm = summary[[arm in r.arms for r in runs]] if len(summary) == len(runs) else summary
            vals = ordered_values(in_arm, col) if col in in_arm and len(in_arm) else vals
            varied.append(f"`{key}` over {', '.join(fmt(v, setting=True) for v in vals)} (arm {arm})")
        else:
            varied.append(f"`{key}` over {', '.join(fmt(v, setting=True) for v in vals)}")
    states = summary["state"].value_counts().to_dict() if len(summary) else {}
    if runs:
        what = (f"The study varied one axis at a time around its centre (the run every arm shares), {len(arms)} "
                "arms:" if arms else "The sweep varied")
        L.append(f"{what} {'; '.join(varied) or 'nothing'} ({len(runs)} runs: "
                 + ", ".join(f"{v} {k}" for k, v in states.items()) + ").")
    else:
        L.append(f"The sweep's axes are {', '.join(f'`{k}`' for k in keys) or 'none'}; it lists no runs yet.")
    if spec.get("overrides"):
        L.append(f"Fixed for every run: `{' '.join(str(o) for o in spec['overrides'])}`.")
    if runs:
        ref = reference_values([r.params.get("n", np.nan) for r in runs],
                               [r.params.get("batch_size", np.nan) for r in runs],
                               [r.params.get("lr", np.nan) for r in runs])
        L.append(f"Normalized step reference values (the sweep's smallest): n0 = {fmt(ref['n0'])}, "
                 f"B0 = {fmt(ref['b0'])}, lr0 = {fmt(ref['lr0'])}.")
    L.append("")

    return L


def no_memorization(summary) -> list[str]:
    """One sentence, first, when no run with evaluations found its tau_mem: everything below has no onset."""
    evaluated = summary[pd.to_numeric(summary["n_evals"], errors="coerce") > 0] if len(summary) else summary
    if not len(evaluated) or pd.to_numeric(evaluated["tau_mem"], errors="coerce").notna().any():
        return []
    last = pd.to_numeric(evaluated["final_mem_ratio"], errors="coerce").max()
    mem = f"; the last mem_ratio is at most {last:.2f}" if np.isfinite(last) else ""
    return [f"**No run memorized within its training:** none of the {len(evaluated)} run(s) with evaluations "
            f"reached tau_mem (the test loss never turned up{mem}), "
            "so the fits, claims and figures below have no onset to measure. Train longer (`train.steps` or "
            "`train.epochs`) or use a smaller n (`data.n`).", ""]


def unfinished(runs) -> list[str]:
    """The runs that did not finish, and why."""
    L = []
    unfinished = [r for r in runs if r.state != State.FINISHED]
    if unfinished:
        L += ["## Runs that did not finish", "",
              "Their quantities below come from the evaluations they logged, and may be missing or early.", ""]
        for r in unfinished:
            st = r.status
            if r.dir is not None and not Path(r.dir).exists():
                bits = [f"state **{r.state}**", "not started (no run directory yet)"]
            else:
                bits = [f"state **{r.state}**", f"step {st.get('step', 0)} of {st.get('total_steps', '?')}",
                        f"{len(r.frame)} evaluation(s) logged"]
            if st.get("diverged_step") is not None:
                bits.append(f"diverged (non-finite loss) at step {st['diverged_step']}")
            if st.get("error"):
                bits.append(f"error: {st['error']}")
            axes_txt = ", ".join(f"{k}={fmt(v, setting=True)}" for k, v in r.axes.items())
            L.append(f"- `{r.run_id}` ({axes_txt}): " + "; ".join(bits))
        L.append("")

    return L


def definitions(threshold) -> list[str]:
    """How each quantity of the report is defined."""
    L = []
    L += ["## Definitions", "",
          "- **normalized step**: s_norm = s · (B/B0) · (lr/lr0) / (n/n0). Under this rescaling curves should "
          "collapse across n and B (not across lr).",
          "- **tau_mem** (the onset of memorization, primary; Bonnaire et al.: \"beyond a critical time L_train "
          "continues to decrease while L_test increases\"): the turning point of the test loss, the step of its "
          "minimum (smoothed with (1, 2, 1)/4 weights, refined by a parabola in log(step) through the minimum and "
          "its neighbours), counted only if the test loss has risen at least 1% above it by the end while the "
          "train loss kept falling; – if it has not turned up. It needs no threshold, and the losses are computed "
          "on fixed (image, noise, t) triples, so the curve is smooth.",
          f"- **tau_gap** (the relative-gap crossing, labelled beside it): the first step after which the relative "
          f"loss gap (test − train)/test, smoothed by a running median of 3 evaluations, stays at or above "
          f"**{threshold:g}** at every later evaluation (at least 2 of them), interpolated in log(step). Its "
          "exponent depends on the threshold, so it is also given for other thresholds below.",
          "- **tau_t0 … tau_t9** (the onset per noise level): the turning point of the test loss in each equal bin "
          "of t (t = 0 noise, t = 1 data), fitted against the axes like the others.",
          "- **tau_gen** (the start of the generalization window, Bonnaire et al.): the first step at which "
          "sw_test, smoothed by a running median of 3 evaluations, is within 10% of its smoothed minimum over "
          "the run (interpolated in log(step)); **tau_gen_fid** likewise on fid_test; **window** = "
          "tau_mem / tau_gen (above 1: samples were near their best before the test loss turned up).",
          "- **step_mem_0.1**, **step_mem_0.5**: the first step at which the memorization ratio (the fraction of "
          "generated samples closer than 1/3 of the second-nearest training image to their nearest one, pixel L2) "
          "reaches 0.1 / 0.5, interpolated in log(step).",
          "- **mem_rate**: the least-squares slope of mem_ratio against log10(normalized step) (per decade of "
          "steps) over the rising part after tau_mem: from the last evaluation where mem_ratio is still 0 up to "
          "the first where it reaches 0.95.",
          "- **best_sw** (**best_sw_train**): the minimum sliced Wasserstein distance between samples and the test "
          "(train) images over the evaluations at or before tau_mem (the whole run if tau_mem is undefined); "
          "**best_fid** likewise; **best_sw_all** is the minimum over the whole run, reached at **step_best_sw**.",
          ""]

    return L


def timing_section(runs) -> list[str]:
    """Where the runs' time went (status.json): training against evaluation, and an evaluation by part."""
    rows, parts = [], {}
    for r in runs:
        train, ev = r.status.get("train_seconds"), r.status.get("eval_seconds")
        if not train and not ev:
            continue
        rows.append({"run_id": r.run_id, "train_s": train, "eval_s": ev,
                     "eval share": (ev or 0) / ((train or 0) + (ev or 0)) if (train or ev) else np.nan})
        for part, seconds in (r.status.get("eval_seconds_by_part") or {}).items():
            parts[part] = parts.get(part, 0.0) + seconds
    if not rows:
        return []
    L = ["## Where the time went", "", markdown_table(pd.DataFrame(rows)), ""]
    if parts:
        total = sum(parts.values()) or 1.0
        L += ["Evaluations by part, all runs together (seconds, share of evaluation time): "
              + ", ".join(f"{k} {v:.1f} s ({v / total:.0%})" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))
              + ".", ""]
    return L


def figures_section(figures) -> list[str]:
    L = []
    if figures:
        L += ["## Figures", ""]
        for title, file in figures:
            L += [f"### {title}", "", f"![{title}]({file})", ""]
    return L


def problems(notes) -> list[str]:
    """What could not be drawn or computed (never filled in)."""
    return ["## Problems while writing this report", ""] + [f"- {n}" for n in notes] + [""] if notes else []
