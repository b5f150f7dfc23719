"""The fits across runs: computed (fits.csv: each onset, mem_rate and best fidelity against each swept numeric axis,
a study's on each arm's runs; tau_gap's again at other thresholds), said in words beside what the papers claim
("What the data say") and shown as a table ("Fits across runs"). Their figures: report.scaling."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from memsweep.report.claims import AXIS_CLAIMS
from memsweep.report.markdown import ci_text, has_interval, markdown_table
from memsweep.report.style import LABELS, SHORT
from memsweep.report.summary import axis_column, summary_table
from memsweep.science.curves import FIT_METRICS, ONSET_METRICS
from memsweep.science.fits import POOLED, determined_by, scaling_fits
from memsweep.science.normalized_time import COLLAPSE_EXPONENT

# what the papers say about each axis (Marion & Wu 2026; Bonnaire et al. 2025), for the sentences of the report
CLAIMS = {
    "n": (COLLAPSE_EXPONENT["n"],
          "the paper and Bonnaire et al. report that the memorization onset scales linearly with n, exponent 1"),
    "batch_size": (COLLAPSE_EXPONENT["batch_size"],
                   "the paper reports tau_mem ∝ 1/B (curves collapse in normalized time), exponent -1"),
    "lr": (COLLAPSE_EXPONENT["lr"], "exponent -1 would mean collapse in normalized time; the paper reports that the "
                                    "normalized time to memorize grows with lr near the edge of stability (an "
                                    "exponent above -1)"),
    "params": (None, "the paper reports that larger models memorize sooner (a negative exponent)"),
}
SENSITIVITY_THRESHOLDS = (0.1, 0.2, 0.4)
BY_T = re.compile(r"tau_t\d+")   # the onset per noise level (curves.analyze_run)


def compute(parts, summary: pd.DataFrame) -> pd.DataFrame:
    """fits.csv: every part's fits against its own axes (parts: report.build.sweep_parts)."""
    if not len(summary):
        return scaling_fits(summary, [])
    by_t = tuple(c for c in summary.columns if BY_T.fullmatch(str(c)))
    return pd.concat([scaling_fits(s, [axis_column(k) for k in ks], metrics=FIT_METRICS + by_t)
                      for _, ks, _, s in parts], ignore_index=True)


def sensitivity(parts, threshold: float) -> list[dict]:
    """The tau_gap fits again at other relative-gap thresholds: how much that exponent hinges on the threshold."""
    rows = []
    for _, keys, runs, summary in parts if any(len(rs) for _, _, rs, _ in parts) else []:
        for thr in SENSITIVITY_THRESHOLDS:
            s_thr = summary if thr == threshold else summary_table(runs, thr)
            for _, row in scaling_fits(s_thr, [axis_column(k) for k in keys], metrics=("tau_gap",)).iterrows():
                rows.append({"threshold": thr, **row.to_dict()})
    return rows


def _trend(fit) -> str:
    """Direction of a power-law fit in words."""
    a, lo, hi = fit["exponent"], fit["exponent_lo"], fit["exponent_hi"]
    if not np.isfinite(a):
        return "cannot be fitted"
    if not np.isfinite(lo):
        return f"{'increases' if a > 0 else 'decreases'} (exponent {a:.2f}, too few points for a CI)"
    if lo > 0:
        return f"increases (exponent {ci_text(fit)}, the CI excludes 0)"
    if hi < 0:
        return f"decreases (exponent {ci_text(fit)}, the CI excludes 0)"
    return f"shows no clear trend (exponent {ci_text(fit)}, the CI contains 0)"


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
    kind = {("n", "above"): "super-linear", ("n", "below"): "sub-linear"}.get((xshort, side)) if ref == 1 else None
    kind = kind or f"{side} {ref:g}"
    return f"{kind}: the 95% CI excludes exponent {ref:g}"


def _fit_sentence(fit_row: pd.Series, metric: str, xcol: str) -> str:
    xshort = SHORT.get(xcol, xcol)
    what = {"tau_mem": "tau_mem (the test-loss turning point, the primary onset)",
            "tau_gap": "tau_gap (the relative-gap crossing)", "tau_test_min": "the step of the test-loss minimum",
            "tau_gen": "tau_gen (samples within 10% of their best SW)",
            "step_mem_0.1": "the step at which mem_ratio reaches 0.1",
            "step_mem_0.5": "the step at which mem_ratio reaches 0.5"}.get(metric, metric)
    ref = CLAIMS.get(xcol, (None, ""))[0]
    if not np.isfinite(fit_row["exponent"]):
        return (f"{what}: no fit ({int(fit_row['n_values'])} value(s) of {xshort} with it; "
                f"{int(fit_row['n_missing'])} run(s) did not reach it or have no data).")
    text = f"{what} grows as {xshort}^a with a = {ci_text(fit_row)}"
    if np.isfinite(fit_row["exponent"]) and fit_row["exponent"] < 0:
        text = f"{what} scales as {xshort}^a with a = {ci_text(fit_row)}"
    extra = []
    if np.isfinite(fit_row["r2_loglog"]):
        extra.append(f"r² = {fit_row['r2_loglog']:.2f} in log-log")
    if fit_row["fixed"] == POOLED:
        extra.append(f"{int(fit_row['n_points'])} points")
    else:
        extra.append(f"{int(fit_row['n_values'])} values of {xshort}"
                     + (f", {int(fit_row['n_points'])} runs" if fit_row["n_points"] > fit_row["n_values"] else ""))
    if fit_row["n_missing"]:
        extra.append(f"{int(fit_row['n_missing'])} run(s) left out: not reached or no data")
    text += " (" + ", ".join(extra) + ")"
    cmp = _compare(fit_row, ref, xshort)
    return text + (f"; {cmp}" if cmp else "") + "."


def section(parts, summary, fits, sensitivity) -> list[str]:
    """The section "What the data say": the fits in words, per swept axis (each on the runs of its part: the
    whole sweep, or a study's arm; parts = [(keys, part summary)]), then across all runs."""
    L = []
    for keys, part in parts:
        for key in keys:
            L += _axis_findings(part, fits, sensitivity, keys, key)
    L += _onset_findings(summary)
    return ["## What the data say", ""] + (L or ["No numeric axis to fit against."]) + [""]


def _axis_findings(summary, fits, sensitivity, keys, key) -> list[str]:
    """What the fits against one swept axis say, beside the papers' claims."""
    L = []
    col = axis_column(key)
    f = fits[fits["axis"] == col]
    if not len(f):
        return []
    xcol = f["x"].iloc[0]
    xshort = SHORT.get(xcol, xcol)
    claim = CLAIMS.get(xcol, (None, ""))[1]
    header = f"**Against {LABELS.get(xcol, xcol)}**" + (f" ({claim})" if claim else "") + ":"
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
    if xcol == "n":
        L += _against_papers(summary, main, xshort)
    for metric in ONSET_METRICS:
        row = main[main["metric"] == metric]
        if len(row):
            L.append("- " + _fit_sentence(row.iloc[0], metric, xcol))
    for metric, what in (("mem_rate", "The memorization rate"), ("best_sw", "The best SW distance before tau_mem")):
        row = main[main["metric"] == metric]
        if len(row):
            paper = next((f" (the paper: {c.paper})" for c in AXIS_CLAIMS if (c.metric, c.x) == (metric, xcol)), "")
            L.append(f"- {what} {_trend(row.iloc[0])} with {xshort}{paper}.")
    if pooled:
        per = f[(f["fixed"] != POOLED) & (f["metric"] == "tau_mem")]
        L.append("- tau_mem exponent per combination: "
                 + "; ".join(f"{r['fixed']}: {ci_text(r)}" for _, r in per.iterrows()) + ".")
    sens = [s for s in sensitivity if s["axis"] == col and s["fixed"] in ("", POOLED)]
    if sens:
        parts = [f"{s['threshold']:g}: a = {ci_text(s)} ({int(s['n_points'])} point(s))" for s in sens]
        L.append("- Sensitivity of the tau_gap exponent to the relative-gap threshold: " + "; ".join(parts) + ".")
        vals = [s["exponent"] for s in sens if np.isfinite(s["exponent"])]
        if len(vals) > 1 and max(vals) - min(vals) > 0.2:
            L.append(f"- The tau_gap exponent moves from {min(vals):.2f} to {max(vals):.2f} with the threshold: "
                     "the scaling of the relative-gap crossing depends on an arbitrary level, which is why the "
                     "primary tau_mem is the threshold-free turning point of the test loss.")
    L += _window_findings(summary, main, xcol, xshort)
    L += _by_t_findings(main, xshort)
    L.append("")
    return L


def _row(main, metric):
    r = main[main["metric"] == metric]
    return r.iloc[0] if len(r) else None


def _against_papers(summary, main, xshort) -> list[str]:
    """In short: the paper's four claims about n (onset, window, rate, best fidelity) and what this sweep shows."""
    L = ["- **In short, against the papers:**"]
    tau = _row(main, "tau_mem")
    if tau is not None and np.isfinite(tau["exponent"]):
        cmp = _compare(tau, COLLAPSE_EXPONENT["n"], xshort)
        L.append(f"  - Onset: the primary tau_mem grows as {xshort}^{ci_text(tau)}; the papers say linear "
                 f"(exponent 1): {cmp or 'no interval to compare'}.")
        copies = [(m, _row(main, m)) for m in ("step_mem_0.1", "step_mem_0.5")]
        copies = [(m, r) for m, r in copies if r is not None and np.isfinite(r["exponent"])]
        if copies:
            L.append("  - When samples become copies: " + "; ".join(f"{m} ∝ {xshort}^{ci_text(r)}" for m, r in copies)
                     + " (the test loss turns up first; copying comes later and scales faster).")
    gen = _row(main, "tau_gen")
    if gen is not None and np.isfinite(gen["exponent"]) and tau is not None and np.isfinite(tau["exponent"]):
        widen = tau["exponent"] - gen["exponent"]
        L.append(f"  - Window (Bonnaire et al.: tau_gen about constant, tau_mem ∝ n, so the window widens): tau_gen "
                 f"∝ {xshort}^{ci_text(gen)}, tau_mem ∝ {xshort}^{tau['exponent']:.2f}, so the window "
                 f"tau_mem/tau_gen {'widens' if widen > 0 else 'does not widen'} as {xshort}^{widen:.2f}.")
    for metric, claim in (("mem_rate", "the memorization rate decreases with n"),
                          ("best_sw", "larger n gives better best fidelity (lower best SW)")):
        r = _row(main, metric)
        if r is None or not np.isfinite(r["exponent"]):
            continue
        if not has_interval(r["exponent_lo"]):
            reading = "too few points to tell."
        elif r["exponent_hi"] < 0:   # both claims are of a decrease
            reading = "as the paper says."
        else:
            reading = "which does not show it (the interval does not exclude 0 or is positive)."
        L.append(f"  - {'Rate' if metric == 'mem_rate' else 'Best fidelity'} (the paper: {claim}): exponent "
                 f"{ci_text(r)}, {reading}")
    return L if len(L) > 1 else []


def _window_findings(summary, main, xcol, xshort) -> list[str]:
    """The generalization window (Bonnaire et al.): tau_gen against tau_mem, per value of the axis."""
    if "tau_gen" not in summary or xcol not in summary:
        return []
    both = summary[[xcol, "tau_gen", "tau_mem"]].apply(pd.to_numeric, errors="coerce").dropna()
    if not len(both):
        return []
    by = both.groupby(xcol).mean()
    ratio = by["tau_mem"] / by["tau_gen"]
    parts = [f"{xshort} = {x:g}: {g:.0f} → {m:.0f} ({r:.1f}x)" for x, g, m, r in
             zip(by.index, by["tau_gen"], by["tau_mem"], ratio)]
    L = ["- The generalization window, tau_gen → tau_mem (steps, mean over seeds, and their ratio): "
         + "; ".join(parts) + "."]
    gen = main[main["metric"] == "tau_gen"]
    about_n = xcol == "n"   # Bonnaire et al.'s window claim is about n, never quoted for another axis
    if len(gen) and np.isfinite(gen.iloc[0]["exponent"]):
        L.append(f"- tau_gen grows as {xshort}^a with a = {ci_text(gen.iloc[0])}"
                 + (f" (Bonnaire et al.: about constant in n, exponent 0; "
                    f"{_compare(gen.iloc[0], 0.0, xshort) or 'no comparison'})." if about_n else "."))
    if len(ratio) >= 2:
        opens = [x for x, r in ratio.items() if r > 1]
        steady = bool(np.all(np.diff(ratio.to_numpy()) > 0))
        L.append("- " + ("There is no window at any " + xshort + " (the test loss turns up before samples are "
                         "near their best)." if not opens else
                         f"The window is open (tau_mem > tau_gen) from {xshort} = {min(opens):g} on"
                         + (" and widens with every step in " + xshort if steady else
                            (", widening from " + f"{ratio.iloc[0]:.1f}x to {ratio.iloc[-1]:.1f}x overall"
                             if ratio.iloc[-1] > ratio.iloc[0] else ", not widening"))
                         + (" (Bonnaire et al.: none at small n, widening with n)." if about_n else ".")))
    return L


def _by_t_findings(main, xshort) -> list[str]:
    """Which noise levels' test-loss turning point scales with the axis (the onset per noise level)."""
    rows = main[main["metric"].astype(str).str.fullmatch(r"tau_t\d+")]
    if not len(rows):
        return []
    rows = rows.assign(k=rows["metric"].str[5:].astype(int)).sort_values("k")
    bins = int(rows["k"].max()) + 1
    parts = [f"t in [{k / bins:.1f}, {(k + 1) / bins:.1f}]: {ci_text(r)}" for k, r in zip(rows["k"], rows.to_dict("records"))]
    return ["- The onset per noise level (each t bin's test-loss turning point against " + xshort
            + ", t = 0 noise, t = 1 data; exponent [95% CI]): " + "; ".join(parts) + "."]


def _onset_findings(summary) -> list[str]:
    """Across runs: when samples became copies relative to tau_mem, and where the best samples were."""
    L = []
    both = summary[["tau_mem", "step_mem_0.5"]].apply(pd.to_numeric, errors="coerce").dropna()
    if len(both):
        ratio = both["step_mem_0.5"] / both["tau_mem"]
        L.append(f"- Samples became copies (mem_ratio 0.5) {ratio.min():.1f} to {ratio.max():.1f} times later than "
                 f"tau_mem (median {ratio.median():.1f}, {len(ratio)} runs): the test loss turns up well before the "
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


def fits_section(fits) -> list[str]:
    """The fits across runs, as a table."""
    L = []
    if len(fits):
        L += ["## Fits across runs", "",
              "Power law y = c · x^a fitted by least squares in log-log on every run's value (the seeds of one "
              "value are replicates; runs where y is undefined left out; mem_rate and best SW from finished runs "
              "only), 95% CI from the t distribution with (points − 2) degrees of freedom; "
              "linear fit y = slope · x + intercept on the same points."
              + (" Rows with fixed = pooled share one exponent across the combinations of the other axes, with one "
                 "prefactor per combination ((points − 1 − combinations) degrees of freedom)."
                 if (fits["fixed"] == POOLED).any() else ""), ""]
        ft = fits.copy()
        ft["exponent a [95% CI]"] = [ci_text(r) for _, r in ft.iterrows()]
        show = ["axis", "x", "metric"] + (["fixed"] if ft["fixed"].astype(bool).any() else [])
        show += ["n_values", "n_points", "n_missing", "exponent a [95% CI]", "r2_loglog", "slope", "intercept", "r2"]
        L += [markdown_table(ft[show]), ""]

    return L
