"""`memsweep report NAME`: the analysis of a sweep, written next to its sweep.json.

outputs/sweeps/<name>/
  summary.csv    one row per run (summary_table)
  fits.csv       across-run fits: each onset step (and mem_rate, best SW) against each swept numeric axis
  *.png          figures (plots.py)
  report.md      what was varied, the definitions, the table, the fitted exponents in words, the figures,
                 and the runs that did not finish
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from memsweep.science.curves import DEFAULT_GAP_THRESHOLD, ONSET_METRICS, metrics_frame
from memsweep.science.fits import POOLED, determined_by, scaling_fits
from memsweep.science.normalized_time import reference_values
from memsweep.report.summary import RunData, SUMMARY_COLUMNS, axis_column, summary_table
from memsweep.report import figures as plots
from memsweep.errors import ConfigError
from memsweep.report import extra as report_extra
from memsweep.report.markdown import fmt, markdown_table
from memsweep.store.live import live_state
from memsweep.store.run import RunStore, atomic_write_text, read_json

log = logging.getLogger(__name__)

SENSITIVITY_THRESHOLDS = (0.1, 0.2, 0.4)
FIGURE_PATTERNS = ("curves_*.png", "scaling_*.png", "rate_fidelity_*.png", "samples_*.png", "gap_by_t_*.png",
                   "novelty_*.png", "nn_ratio_*.png", "copies_*.png", "disjoint.png")
# what the papers say about each axis (science.md section 5), for the sentences of the report
CLAIMS = {
    "n": (1.0, "the paper and Bonnaire et al. report that the memorization onset scales linearly with n, exponent 1"),
    "batch_size": (-1.0, "the paper reports tau_mem ∝ 1/B (curves collapse in normalized time), exponent -1"),
    "lr": (-1.0, "exponent -1 would mean collapse in normalized time; the paper reports that the normalized time "
                 "to memorize grows with lr near the edge of stability (an exponent above -1)"),
    "params": (None, "the paper reports that larger models memorize sooner (a negative exponent)"),
}


# -- reading a sweep --------------------------------------------------------------------------------------------
def _config_params(cfg) -> dict:
    def get(path, default=None):
        node = cfg
        for part in path.split("."):
            try:
                node = node[part]
            except Exception:
                return default
        return node
    return {"n": get("data.n"), "data": get("data.name"), "model": get("model.name"),
            "batch_size": get("train.batch_size"), "lr": get("optim.lr"), "seed": get("seed"),
            "total_steps": get("train.total_steps"), "sw_features": get("eval.sw_features"),
            "fid_features": get("eval.fid_features")}


def load_sweep(output_root: Path, name: str) -> tuple[dict, list[RunData]]:
    """sweep.json and every run it lists (a run with no files yet is 'pending' with no metrics)."""

    output_root = Path(output_root)
    path = output_root / "sweeps" / name / "sweep.json"
    record = read_json(path)
    if record is None:
        raise ConfigError(f"sweep {name}: no such sweep under {output_root / 'sweeps'} (no {path.name}; "
                          f"launch it with `memsweep sweep {name}` or give --output-root)")
    runs = []
    for entry in record.get("runs", []):
        store = RunStore(output_root / "runs" / entry["run_id"])
        status = store.status()
        try:
            params = _config_params(store.read_config())
        except Exception:   # not started yet: what the sweep file says
            params = {}
        for key, value in (entry.get("axes") or {}).items():
            col = axis_column(key)
            if params.get(col) is None:
                params[col] = value
        if params.get("total_steps") is None:
            params["total_steps"] = status.get("total_steps")
        params["params"] = status.get("parameters")
        try:
            state = live_state(status)
        except Exception:
            state = status.get("state", "pending")
        runs.append(RunData(entry["run_id"], state, dict(entry.get("axes") or {}), params,
                                     metrics_frame(store.read_metrics()), status, store.dir))
    return record, runs


def _ci(fit) -> str:
    if not np.isfinite(fit["exponent"]):
        return "no fit"
    if np.isfinite(fit["exponent_lo"]):
        return f"{fit['exponent']:.2f} [{fit['exponent_lo']:.2f}, {fit['exponent_hi']:.2f}]"
    return f"{fit['exponent']:.2f} (no CI: {int(fit['n_points'])} points)"


def _trend(fit) -> str:
    """Direction of a power-law fit in words."""
    a, lo, hi = fit["exponent"], fit["exponent_lo"], fit["exponent_hi"]
    if not np.isfinite(a):
        return "cannot be fitted"
    if not np.isfinite(lo):
        return f"{'increases' if a > 0 else 'decreases'} (exponent {a:.2f}, too few points for a CI)"
    if lo > 0:
        return f"increases (exponent {_ci(fit)}, the CI excludes 0)"
    if hi < 0:
        return f"decreases (exponent {_ci(fit)}, the CI excludes 0)"
    return f"shows no clear trend (exponent {_ci(fit)}, the CI contains 0)"


def _compare(fit, ref: float | None, xshort: str) -> str:
    a, lo, hi = fit["exponent"], fit["exponent_lo"], fit["exponent_hi"]
    if ref is None or not np.isfinite(a):
        return ""
    if not np.isfinite(lo):
        return f"too few points for a confidence interval, so this cannot confirm or reject exponent {ref:g}"
    if lo <= ref <= hi:
        return f"consistent with exponent {ref:g} (the 95% CI contains it)"
    if abs(a - ref) < 0.05:
        return f"within 0.05 of exponent {ref:g}, although the narrow 95% CI excludes it"
    side = "above" if lo > ref else "below"
    kind = {("n", "above"): "super-linear", ("n", "below"): "sub-linear"}.get((xshort, side), f"{side} {ref:g}")
    return f"{kind}: the 95% CI excludes exponent {ref:g}"


def _fit_sentence(fit_row: pd.Series, metric: str, xcol: str) -> str:
    xshort = plots.SHORT.get(xcol, xcol)
    what = {"tau_mem": "tau_mem", "tau_test_min": "the step of the test-loss minimum",
            "step_mem_0.1": "the step at which mem_ratio reaches 0.1",
            "step_mem_0.5": "the step at which mem_ratio reaches 0.5"}.get(metric, metric)
    ref = CLAIMS.get(xcol, (None, ""))[0]
    if not np.isfinite(fit_row["exponent"]):
        return (f"{what}: no fit ({int(fit_row['n_points'])} value(s) of {xshort} with it; "
                f"{int(fit_row['n_missing'])} run(s) did not reach it or have no data).")
    text = f"{what} grows as {xshort}^a with a = {_ci(fit_row)}"
    if np.isfinite(fit_row["exponent"]) and fit_row["exponent"] < 0:
        text = f"{what} scales as {xshort}^a with a = {_ci(fit_row)}"
    extra = []
    if np.isfinite(fit_row["r2_loglog"]):
        extra.append(f"r² = {fit_row['r2_loglog']:.2f} in log-log")
    if fit_row["fixed"] == POOLED:
        extra.append(f"{int(fit_row['n_points'])} points")
    else:
        extra.append(f"{int(fit_row['n_points'])} values of {xshort}")
    if fit_row["n_missing"]:
        extra.append(f"{int(fit_row['n_missing'])} run(s) left out: not reached or no data")
    text += " (" + ", ".join(extra) + ")"
    cmp = _compare(fit_row, ref, xshort)
    return text + (f"; {cmp}" if cmp else "") + "."


# -- the report -------------------------------------------------------------------------------------------------
def _figure(figures: list, notes: list, title: str, func, *args, **kwargs):
    try:
        path = func(*args, **kwargs)
    except Exception as e:  # one figure failing must not lose the rest of the report
        log.warning("figure %r failed: %s: %s", title, type(e).__name__, e)
        notes.append(f"figure '{title}' could not be drawn ({type(e).__name__}: {e})")
        return None
    if path is not None:
        figures.append((title, Path(path).name))
    return path


def make_report(output_root: Path, name: str, threshold: float = DEFAULT_GAP_THRESHOLD, device="cpu",
                max_samples: int | None = None) -> Path:
    """Write summary.csv, fits.csv, the figures and report.md into <output_root>/sweeps/<name>/ and return
    the path of report.md. `device`, `max_samples`: of the analyses of saved samples (report.samples)."""
    output_root = Path(output_root)
    record, runs = load_sweep(output_root, name)
    out = output_root / "sweeps" / name
    out.mkdir(parents=True, exist_ok=True)
    keys = list(record.get("axes") or [])
    axis_cols = [axis_column(k) for k in keys]

    summary = summary_table(runs, threshold) if runs else pd.DataFrame(columns=SUMMARY_COLUMNS)
    extra = report_extra.compute(runs, summary, keys, out, device, max_samples) if runs else None
    summary.to_csv(out / "summary.csv", index=False)
    fits = scaling_fits(summary, axis_cols) if runs else scaling_fits(summary, [])
    fits.to_csv(out / "fits.csv", index=False)

    sensitivity = []
    if runs:
        for thr in SENSITIVITY_THRESHOLDS:
            s_thr = summary if thr == threshold else summary_table(runs, thr)
            f_thr = scaling_fits(s_thr, axis_cols, metrics=("tau_mem",))
            for _, row in f_thr.iterrows():
                sensitivity.append({"threshold": thr, **row.to_dict()})

    features = {}
    for r in runs:
        features.setdefault("sw", r.params.get("sw_features"))
        features.setdefault("fid", r.params.get("fid_features"))
    features = {k: v for k, v in features.items() if v}

    for pattern in FIGURE_PATTERNS:   # figures of an earlier report that this one may not redraw
        for old in out.glob(pattern):
            old.unlink(missing_ok=True)
    figures: list[tuple[str, str]] = []
    notes: list[str] = []
    plot_keys = [k for k in keys if k not in ("seed", "data.offset")] or keys   # offset: the disjoint test's pairs
    for key in plot_keys if runs else []:
        col = axis_column(key)
        s = plots.slug(col)
        lab = plots.LABELS.get(col, col)
        _figure(figures, notes, f"Training curves by {lab}, against the training step", plots.curves_figure,
                runs, summary, key, keys, out / f"curves_{s}_step.png", x="step", threshold=threshold,
                features=features)
        _figure(figures, notes, f"Training curves by {lab}, against the normalized step (the collapse figure)",
                plots.curves_figure, runs, summary, key, keys, out / f"curves_{s}_normalized.png", x="norm",
                threshold=threshold, features=features)
        _figure(figures, notes, f"Onset of memorization against {lab}, with power-law fits",
                plots.scaling_figure, summary, key, keys, out / f"scaling_{s}.png")
        _figure(figures, notes, f"Memorization rate and best fidelity against {lab}", plots.rate_fidelity_figure,
                summary, key, keys, out / f"rate_fidelity_{s}.png")
        _figure(figures, notes, f"Samples and their nearest training images, early and late (by {lab})",
                plots.samples_figure, runs, summary, key, keys, out / f"samples_{s}.png")
        _figure(figures, notes, f"Loss gap by noise level t against step (by {lab})", plots.gap_heatmap,
                runs, summary, key, keys, out / f"gap_by_t_{s}.png")
        _figure(figures, notes, f"Loss gap by noise level t against normalized step (by {lab})", plots.gap_heatmap,
                runs, summary, key, keys, out / f"gap_by_t_{s}_normalized.png", x="norm")
    if extra is not None:
        report_extra.figures(extra, runs, summary, keys, out,
                             lambda title, func, *a, **kw: _figure(figures, notes, title, func, *a, **kw))

    more = report_extra.lines(extra, runs, summary, keys) if extra is not None else []
    text = _render(record, runs, summary, fits, sensitivity, figures, notes, threshold, keys, more)
    path = out / "report.md"
    atomic_write_text(path, text)
    return path


def _render(record, runs, summary, fits, sensitivity, figures, notes, threshold, keys, more=()) -> str:
    name = record.get("name", "?")
    spec = record.get("spec") or {}
    L = [f"# Sweep `{name}`: the memorization transition", ""]
    L.append(f"_Generated {time.strftime('%Y-%m-%d %H:%M')} by `memsweep report {name}` from the run store; "
             "the numbers are in `summary.csv` (one row per run) and `fits.csv` (fits across runs)._")
    L.append("")
    if spec.get("description"):
        L += [f"**What the sweep is:** {spec['description']}.", ""]
    varied = []
    for key in keys:
        col = axis_column(key)
        vals = plots.ordered_values(summary, col) if col in summary and len(summary) else []
        varied.append(f"`{key}` over {', '.join(plots.fmt_value(v) for v in vals)}")
    states = summary["state"].value_counts().to_dict() if len(summary) else {}
    if runs:
        L.append(f"The sweep varied {'; '.join(varied) or 'nothing'} ({len(runs)} runs: "
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

    unfinished = [r for r in runs if r.state != "finished"]
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
            axes_txt = ", ".join(f"{k}={plots.fmt_value(v)}" for k, v in r.axes.items())
            L.append(f"- `{r.run_id}` ({axes_txt}): " + "; ".join(bits))
        L.append("")

    L += ["## Definitions", "",
          "- **normalized step**: s_norm = s · (B/B0) · (lr/lr0) / (n/n0). Under this rescaling curves should "
          "collapse across n and B (not across lr).",
          f"- **tau_mem** (onset of memorization, where the test loss begins to diverge from the train loss): the "
          f"first step after which the relative loss gap (test − train)/test, smoothed by a running median of 3 "
          f"evaluations, stays at or above **{threshold:g}** at every later evaluation (at least 2 of them), "
          "interpolated in log(step) between evaluations; undefined (–) if that never happens. The relative gap "
          "does not depend on the loss scale; a small gap (~0.1) appears in every run, memorizing or not, while "
          "memorizing runs go to ~0.9; requiring the gap to stay above the threshold ignores one noisy evaluation. "
          "The threshold is a choice, so the exponent is also given for other thresholds below.",
          "- **tau_test_min**: the step of the minimum of the (lightly smoothed) test loss, where the test loss "
          "turns up while the train loss keeps falling; a threshold-free second estimate of the onset "
          "(– if the test loss has not turned up by the end).",
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

    L += ["## What the data say", ""]
    L += _findings(summary, fits, sensitivity, keys) or ["No numeric axis to fit against."]
    L.append("")

    L += ["## Summary (one row per run)", ""]
    cols = ["run_id", "state"] + [axis_column(k) for k in keys if axis_column(k) in summary]
    cols += ["tau_mem", "tau_test_min", "step_mem_0.1", "step_mem_0.5", "mem_rate", "best_sw", "best_sw_train"]
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

    if len(fits):
        L += ["## Fits across runs", "",
              "Power law y = c · x^a fitted by least squares in log-log on the seed-averaged values (runs where y "
              "is undefined left out; mem_rate and best SW from finished runs only), 95% CI from the t "
              "distribution with (points − 2) degrees of freedom; "
              "linear fit y = slope · x + intercept on the same points."
              + (" Rows with fixed = pooled share one exponent across the combinations of the other axes, with one "
                 "prefactor per combination ((points − 1 − combinations) degrees of freedom)."
                 if (fits["fixed"] == POOLED).any() else ""), ""]
        ft = fits.copy()
        ft["exponent a [95% CI]"] = [_ci(r) for _, r in ft.iterrows()]
        show = ["axis", "x", "metric"] + (["fixed"] if ft["fixed"].astype(bool).any() else [])
        show += ["n_points", "n_missing", "exponent a [95% CI]", "r2_loglog", "slope", "intercept", "r2"]
        L += [markdown_table(ft[show]), ""]

    L += list(more)
    if figures:
        L += ["## Figures", ""]
        for title, file in figures:
            L += [f"### {title}", "", f"![{title}]({file})", ""]
    if notes:
        L += ["## Problems while writing this report", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(L)


def _findings(summary, fits, sensitivity, keys) -> list[str]:
    L = []
    for key in keys:
        col = axis_column(key)
        f = fits[fits["axis"] == col]
        if not len(f):
            continue
        xcol = f["x"].iloc[0]
        xshort = plots.SHORT.get(xcol, xcol)
        claim = CLAIMS.get(xcol, (None, ""))[1]
        header = f"**Against {plots.LABELS.get(xcol, xcol)}**" + (f" ({claim})" if claim else "") + ":"
        L += [header, ""]
        together = [axis_column(k) for k in keys
                    if axis_column(k) not in (col, "seed") and axis_column(k) in summary
                    and determined_by(summary, col, axis_column(k))
                    and determined_by(summary, axis_column(k), col)]
        if together:
            L.append(f"- {col} is varied together with {', '.join(together)} (zipped): these fits cannot separate "
                     "their effects.")
        pooled = (f["fixed"] == POOLED).any()
        main = f[f["fixed"] == (POOLED if pooled else "")]
        if pooled:
            k = f.loc[f["fixed"] != POOLED, "fixed"].nunique()
            L.append(f"- The other axes take {k} combinations; the exponents below are pooled: one exponent shared "
                     "by all combinations, each with its own prefactor (per-combination fits in the table below).")
        for metric in ONSET_METRICS:
            row = main[main["metric"] == metric]
            if len(row):
                L.append("- " + _fit_sentence(row.iloc[0], metric, xcol))
        for metric, what in (("mem_rate", "The memorization rate"), ("best_sw", "The best SW distance before tau_mem")):
            row = main[main["metric"] == metric]
            if len(row):
                paper = {("mem_rate", "n"): " (the paper: it decreases with n)",
                         ("best_sw", "n"): " (the paper: larger n gives better best fidelity, i.e. lower SW)",
                         ("mem_rate", "batch_size"): " (the paper: it barely depends on B)",
                         ("best_sw", "batch_size"): " (the paper: smaller B gives better peak fidelity)",
                         ("best_sw", "lr"): " (the paper: larger lr gives better peak fidelity)",
                         ("best_sw", "params"): " (the paper: larger models reach better peak fidelity)",
                         }.get((metric, xcol), "")
                L.append(f"- {what} {_trend(row.iloc[0])} with {xshort}{paper}.")
        if pooled:
            per = f[(f["fixed"] != POOLED) & (f["metric"] == "tau_mem")]
            L.append("- tau_mem exponent per combination: "
                     + "; ".join(f"{r['fixed']}: {_ci(r)}" for _, r in per.iterrows()) + ".")
        sens = [s for s in sensitivity if s["axis"] == col and s["fixed"] in ("", POOLED)]
        if sens:
            parts = [f"{s['threshold']:g}: a = {_ci(s)} ({int(s['n_points'])} point(s))" for s in sens]
            L.append("- Sensitivity of the tau_mem exponent to the relative-gap threshold: " + "; ".join(parts) + ".")
            vals = [s["exponent"] for s in sens if np.isfinite(s["exponent"])]
            if len(vals) > 1 and max(vals) - min(vals) > 0.2:
                L.append(f"- The tau_mem exponent moves from {min(vals):.2f} to {max(vals):.2f} with the threshold: "
                         "the scaling of the loss-gap onset depends on how the onset is defined, so read it together "
                         "with the threshold-free estimates (test-loss minimum, mem_ratio crossings).")
        L.append("")
    # onset vs copies, and where the best samples are
    both = summary[["tau_mem", "step_mem_0.5"]].apply(pd.to_numeric, errors="coerce").dropna()
    if len(both):
        ratio = both["step_mem_0.5"] / both["tau_mem"]
        L.append(f"- Samples became copies (mem_ratio 0.5) {ratio.min():.1f} to {ratio.max():.1f} times later than "
                 f"tau_mem (median {ratio.median():.1f}, {len(ratio)} runs): the loss gap opens well before the "
                 "samples are copies." if ratio.median() > 1.5 else
                 f"- mem_ratio reached 0.5 at {ratio.min():.1f} to {ratio.max():.1f} times tau_mem "
                 f"({len(ratio)} runs).")
    sb = summary[["tau_mem", "step_best_sw"]].apply(pd.to_numeric, errors="coerce").dropna()
    if len(sb):
        after = int((sb["step_best_sw"] > sb["tau_mem"]).sum())
        L.append(f"- The lowest SW distance of a run came after tau_mem in {after} of {len(sb)} runs "
                 + ("(so best_sw, measured up to tau_mem, is worse than the lowest SW the run reached, best_sw_all: "
                    "sample quality kept improving after the loss gap opened)."
                    if after else "(best fidelity is reached before the onset, as the paper says)."))
    never = summary[pd.to_numeric(summary["tau_mem"], errors="coerce").isna() & (summary["n_evals"] > 0)]
    if len(never):
        L.append(f"- {len(never)} run(s) with data never reached tau_mem: "
                 + ", ".join(f"`{r}`" for r in never["run_id"]) + ".")
    return L
