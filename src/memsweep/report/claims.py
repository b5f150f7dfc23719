"""The paper's claims, axis by axis (Marion & Wu 2026), each with what the sweep measured and a verdict computed
from the fits (science.verdicts), never written by hand.

A claim about an axis is measured only on the runs that vary that axis (a study's arm, report.build's parts) and
only against that axis: Bonnaire et al.'s window claim is about n, the collapse in normalized time about n and B.
The claims about the two splits (SW/FID nearly equal on train and test; double descent on both) hold for any run
and are measured over every run of the sweep.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from memsweep.report.markdown import ci_text, interval_text, markdown_table
from memsweep.report.style import SHORT
from memsweep.report.summary import axis_column
from memsweep.science.fits import POOLED, mean_interval, scaling_fits
from memsweep.science.normalized_time import COLLAPSE_EXPONENT
from memsweep.science.verdicts import (equivalence_verdict, exponent_verdict, sign_verdict, wilson_interval)
from memsweep.states import State

# The margin of the claims of no effect, as an exponent: the memorization rate "essentially independent of B" is
# read as |exponent| < 0.25 (a factor of 8 in B moves the rate by less than 1.7x, against the onset's 8x).
FLAT_EXPONENT = 0.25
# Train and test SW (FID) "nearly equal": their relative difference (test - train) / test within ±10%.
NEARLY_EQUAL = 0.10


@dataclass(frozen=True)
class Claim:
    x: str            # the summary column the claim is about: n, params, batch_size, lr
    metric: str       # the summary column fitted against it (a power law, 95% interval)
    what: str
    paper: str
    kind: str         # exponent (value: the claimed exponent), sign (value: +1 or -1), flat (no effect)
    value: float = 0.0


AXIS_CLAIMS = (
    Claim("n", "tau_mem", "onset against n", "linear in n: tau_mem ∝ n", "exponent", COLLAPSE_EXPONENT["n"]),
    Claim("n", "mem_rate", "memorization rate against n", "decreases with n", "sign", -1),
    Claim("n", "best_sw", "best fidelity against n", "improves with n (lower best SW)", "sign", -1),
    Claim("params", "tau_mem", "onset against model size", "larger models memorize sooner", "sign", -1),
    Claim("params", "best_sw", "best fidelity against model size", "improves with size (lower best SW)", "sign", -1),
    Claim("batch_size", "tau_mem", "raw onset against B",
          "tau_mem ∝ 1/B (the curves collapse in normalized time)", "exponent", COLLAPSE_EXPONENT["batch_size"]),
    Claim("batch_size", "mem_rate", "memorization rate against B", "essentially independent of B", "flat"),
    Claim("batch_size", "best_sw", "best fidelity against B", "smaller B is better (best SW grows with B)",
          "sign", 1),
    Claim("lr", "tau_mem_norm", "normalized onset against lr",
          "grows with lr (no collapse across lr, edge of stability)", "sign", 1),
    Claim("lr", "best_sw", "best fidelity against lr", "larger lr is better (best SW falls with lr)", "sign", -1),
)
COLUMNS = ["axis", "claim", "paper", "measured", "verdict", "metric", "estimate", "lo", "hi", "n_points"]


def compute(parts, fits: pd.DataFrame, summary: pd.DataFrame, runs) -> pd.DataFrame:
    """One row per claim that the sweep can speak to: the axis claims read from the report's fits (each axis
    fitted on its own part's runs, report.build), the metrics those lack (tau_mem_norm) fitted here the same way,
    and the claims about the two splits over all runs. `parts`: [(name, keys, part summary)]."""
    missing = tuple(m for m in dict.fromkeys(c.metric for c in AXIS_CLAIMS) if m not in set(fits["metric"]))
    more = [scaling_fits(part, [axis_column(k) for k in keys], metrics=missing) for _, keys, part in parts]
    fits = pd.concat([fits, *more], ignore_index=True) if missing else fits
    rows = []
    for col in dict.fromkeys(fits["axis"]):
        f = fits[fits["axis"] == col]
        main = f[f["fixed"] == (POOLED if (f["fixed"] == POOLED).any() else "")]
        for claim in (c for c in AXIS_CLAIMS if c.x == f["x"].iloc[0]):
            row = main[main["metric"] == claim.metric]
            if len(row):
                rows.append(_axis_row(claim, row.iloc[0]))
    rows += _split_rows(summary, runs)
    return pd.DataFrame(rows, columns=COLUMNS)


def _axis_row(claim: Claim, fit) -> dict:
    lo, hi, a = fit["exponent_lo"], fit["exponent_hi"], fit["exponent"]
    if claim.kind == "exponent":
        verdict = exponent_verdict(lo, hi, claim.value)
    elif claim.kind == "sign":
        verdict = sign_verdict(lo, hi, int(claim.value))
    else:
        verdict = equivalence_verdict(lo, hi, FLAT_EXPONENT)
    measured = (f"{claim.metric} ∝ {SHORT.get(claim.x, claim.x)}^a, a = {ci_text(fit)}" if np.isfinite(a)
                else f"{claim.metric}: no fit ({int(fit['n_missing'])} run(s) without it)")
    if claim.kind == "flat" and np.isfinite(a):
        measured += f"; equivalence margin ±{FLAT_EXPONENT:g}"
    return {"axis": claim.x, "claim": claim.what, "paper": claim.paper, "measured": measured, "verdict": verdict,
            "metric": claim.metric, "estimate": a, "lo": lo, "hi": hi, "n_points": int(fit["n_points"])}


def _split_rows(summary: pd.DataFrame, runs) -> list[dict]:
    """SW (FID) on the train and the test split nearly equal at the end of each run, the most memorized point;
    double descent of SW (FID) on both splits."""
    finished = [r for r in runs if r.state == State.FINISHED and len(r.frame)]
    rows = []
    for name, train, test in (("SW", "sw_train", "sw_test"), ("FID", "fid_train", "fid_test")):
        gaps, largest = [], 0.0
        for r in finished:
            f = r.frame[["step", train, test]].dropna() if {train, test} <= set(r.frame) else pd.DataFrame()
            if not len(f):
                continue
            rel = (f[test] - f[train]) / f[test]
            gaps.append(float(rel.iloc[-1]))
            largest = max(largest, float(rel.abs().max()))
        if not gaps:
            continue
        m = mean_interval(gaps)
        rows.append({"axis": "any", "claim": f"train and test {name} nearly equal",
                     "paper": "nearly equal throughout: they cannot tell novelty from fidelity",
                     "measured": f"(test − train)/test at each run's end: mean {interval_text(m['mean'], m['lo'], m['hi'], m['n_points'], 3)}"
                                 f" over {m['n_points']} runs (largest |·| over all evaluations {largest:.2f}); "
                                 f"equivalence margin ±{NEARLY_EQUAL:g}",
                     "verdict": equivalence_verdict(m["lo"], m["hi"], NEARLY_EQUAL), "metric": f"{test}/{train}",
                     "estimate": m["mean"], "lo": m["lo"], "hi": m["hi"], "n_points": m["n_points"]})
    for name, train, test in (("SW", "sw_train", "sw_test"), ("FID", "fid_train", "fid_test")):
        cols = [f"{train}_dips", f"{test}_dips"]
        if not set(cols) <= set(summary) or not len(summary):
            continue
        fin = summary[summary["state"] == State.FINISHED]
        dips = fin[cols].apply(pd.to_numeric, errors="coerce").dropna()
        if not len(dips):
            continue
        both = int((dips >= 2).all(axis=1).sum())
        lo, hi = wilson_interval(both, len(dips))
        rows.append({"axis": "any", "claim": f"double descent of {name} on both splits",
                     "paper": "two descents over training, against train and test alike",
                     "measured": f"{both} of {len(dips)} runs show a second dip on both splits "
                                 f"(fraction {both / len(dips):.2f} [{lo:.2f}, {hi:.2f}]); agrees when most runs do",
                     "verdict": sign_verdict(lo, hi, 1, about=0.5), "metric": f"{test}_dips",
                     "estimate": both / len(dips), "lo": lo, "hi": hi, "n_points": len(dips)})
    return rows


def large_batches(summary: pd.DataFrame) -> pd.DataFrame:
    """The runs whose batch is over half their training set. Batches are drawn with replacement (train.active_run), so
    such a batch holds most of the images and training nears full-batch gradient descent, where the gradient
    noise that makes tau_mem ∝ 1/B is gone: a confound for the batch-size claims (the paper's B << n)."""
    if not {"n", "batch_size"} <= set(summary) or not len(summary):
        return summary.iloc[0:0]
    n, b = (pd.to_numeric(summary[c], errors="coerce") for c in ("n", "batch_size"))
    return summary[b > n / 2]


def section(claims: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """The claims table, first in the report's findings, with a caution when batches near the training set."""
    if not len(claims):
        return []
    large = large_batches(summary)
    caution = ([f"Caution: {len(large)} run(s) have a batch over half their training set ("
                + ", ".join(f"`{r.run_id}`: n = {r.n:g}, B = {r.batch_size:g}" for r in large.head(6).itertuples())
                + (", ..." if len(large) > 6 else "") + "): such batches hold most of the images (drawn with "
                "replacement), close to full-batch training, where the batch-size claims (made for B much smaller "
                "than n) need not hold. Keep B at most n/2 on the batch-size axis.", ""] if len(large) else [])
    counts = claims["verdict"].value_counts()
    return ["## The paper's claims, with verdicts", "",
            "Each claim of Marion & Wu (2026) this sweep can speak to, what was measured (a power-law exponent "
            "against the claim's axis with its 95% interval, fitted on the runs that vary that axis) and the "
            "verdict computed from the interval: an exponent claim *agrees* when the interval holds the claimed "
            "exponent and excludes 0, a direction when the interval lies on the claimed side of 0, a claim of "
            "no effect when the interval lies within its margin; *disagrees* when the interval excludes the "
            "claim; else *inconclusive*. In all: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in
                                                              ("agrees", "disagrees", "inconclusive")) + ".", "",
            markdown_table(claims[["axis", "claim", "paper", "measured", "verdict"]]), ""] + caution
