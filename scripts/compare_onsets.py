"""Compare the candidate estimators of the memorization onset on launched sweeps (issue 15): which one grows with
n in every seed, how its exponent and interval come out, how much it hinges on a threshold.

    PYTHONPATH=src python scripts/compare_onsets.py SWEEP [SWEEP ...] [--output-root outputs] [--out FILE.md]

Each SWEEP is a launched sweep's name (several: e.g. the demo and the same grid with other seeds). Candidates,
all from memsweep.science.curves (one home per rule; nothing is redefined here):
  tau_mem           the test-loss turning point, the train loss still falling (the primary)
  tau_gap@0.1/0.2/0.4  the relative-gap crossing at three thresholds (the previous primary)
  tau_t<k>          the test-loss turning point in noise bin k (t = 0 noise, t = 1 data)
  step_mem_0.1/0.5  the mem_ratio crossings (when samples become copies)
  tau_gen           sw_test within 10% of its best (the start of the generalization window)
For each: the values per n and seed, whether they increase strictly with n in each seed, and the power-law
exponent against n (seed-averaged, 95% CI; memsweep.science.fits.power_law_fit) with the per-seed exponents.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from memsweep.report.build import load_sweep
from memsweep.report.markdown import markdown_table
from memsweep.report.summary import summary_table
from memsweep.science.fits import power_law_fit


def candidates(output_root: Path, names: list[str]) -> pd.DataFrame:
    """One row per run of the sweeps: n, seed and every candidate onset."""
    runs = []
    for name in names:
        runs += load_sweep(output_root, name)[1]
    seen, unique = set(), []
    for r in runs:
        if r.run_id not in seen:
            seen.add(r.run_id)
            unique.append(r)
    table = summary_table(unique)
    for thr in (0.1, 0.4):
        table[f"tau_gap@{thr:g}"] = summary_table(unique, thr)["tau_gap"].to_numpy()
    table = table.rename(columns={"tau_gap": "tau_gap@0.2"})
    return table


def compare(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(values: candidate x (n, seed) ; verdicts: per candidate, monotone seeds, exponent and CI)."""
    cols = ["tau_mem", "tau_gap@0.1", "tau_gap@0.2", "tau_gap@0.4"]
    cols += sorted([c for c in table if re.fullmatch(r"tau_t\d+", str(c))], key=lambda c: int(c[5:]))
    cols += ["step_mem_0.1", "step_mem_0.5", "tau_gen"]
    values = table.sort_values(["seed", "n"])
    values = pd.DataFrame({f"n={n:g} s{seed:g}": values.loc[i, cols] for i, n, seed in
                           zip(values.index, values["n"], values["seed"])})
    values.insert(0, "candidate", cols)
    rows = []
    for c in cols:
        y = pd.to_numeric(table[c], errors="coerce")
        per_seed, monotone = [], 0
        seeds = sorted(table["seed"].unique())
        for seed in seeds:
            sub = table[table["seed"] == seed].sort_values("n")
            ys = pd.to_numeric(sub[c], errors="coerce").to_numpy(float)
            if np.all(np.isfinite(ys)) and np.all(np.diff(ys) > 0):
                monotone += 1
            per_seed.append(power_law_fit(sub["n"].to_numpy(float), ys)["exponent"])
        means = pd.DataFrame({"n": table["n"], "y": y}).dropna().groupby("n")["y"].mean()
        fit = power_law_fit(means.index.to_numpy(float), means.to_numpy(float))
        rows.append({"candidate": c, "increasing in n (seeds)": f"{monotone}/{len(seeds)}",
                     "missing": int(y.isna().sum()),
                     "exponent [95% CI], seed mean": (f"{fit['exponent']:.2f} [{fit['exponent_lo']:.2f}, "
                                                      f"{fit['exponent_hi']:.2f}]" if np.isfinite(fit["exponent_lo"])
                                                      else f"{fit['exponent']:.2f}"),
                     "r2": round(fit["r2_loglog"], 3) if np.isfinite(fit["r2_loglog"]) else np.nan,
                     "per-seed exponents": " ".join(f"{e:.2f}" for e in per_seed),
                     "spread of per-seed exponents": (float(np.nanmax(per_seed) - np.nanmin(per_seed))
                                                      if np.isfinite(per_seed).sum() > 1 else np.nan)})
    return values, pd.DataFrame(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sweeps", nargs="+")
    p.add_argument("--output-root", default="outputs")
    p.add_argument("--out", help="write the tables as markdown here too")
    a = p.parse_args(argv)
    table = candidates(Path(a.output_root), a.sweeps)
    values, verdicts = compare(table)
    text = ("## Candidate onsets per run (steps)\n\n" + markdown_table(values) + "\n\n"
            "## Per candidate: increasing with n, exponent against n\n\n" + markdown_table(verdicts) + "\n")
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
