"""The markdown of the report's sections beyond the paper (report.extra computes what they show): one function
per section, each a list of lines."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from memsweep.report import disjoint
from memsweep.report.figures import fmt_value
from memsweep.report.markdown import fmt, markdown_table
from memsweep.report.samples import NOVELTY_COLUMNS
from memsweep.report.summary import axis_column
from memsweep.science.capacity import EMM_LEVEL
from memsweep.science.dips import CURVES, DEFAULT_MIN_DEPTH
from memsweep.science.fits import rank_correlation


def lines(ctx: dict, runs, summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """All the sections, in order, and the notes of what could not be computed."""
    L = ["## Beyond the paper", ""]
    for section in (field_section, double_descent_section, novelty_section, copies_section, emm_section,
                    disjoint_section):
        L += section(ctx, runs, summary, keys)
    if ctx["notes"]:
        L += [f"- {n}" for n in ctx["notes"]] + [""]
    return L


def _axis_cols(summary, keys) -> list[str]:
    return [axis_column(k) for k in keys if axis_column(k) in summary]


def _axes_text(row, axis_cols) -> str:
    """A run's axis values, `n=32, seed=0`."""
    return ", ".join(f"{a}={fmt_value(row[a])}" for a in axis_cols)


def field_section(ctx: dict, runs, summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """Field-level memorization: field_dist at the start, at tau_mem, at mem_ratio 0.5 and at the end."""
    L = []
    info = summary.set_index("run_id")
    axis_cols = _axis_cols(summary, keys)
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
    axis_cols = _axis_cols(summary, keys)
    L += ["### Double descent of SW and FID", "",
          f"A dip is a local minimum of the curve (log scale, running median of 3 evaluations) at least "
          f"{DEFAULT_MIN_DEPTH:.0%} below the lower of the maxima around it (the last evaluation may be one); "
          "depth = 1 − value / that maximum. A second dip is a second descent. Columns `<curve>_dip1_step`, "
          "`_dip1_depth`, `_dip2_step`, `_dip2_depth`, `<curve>_dips` in summary.csv; ▼ and ✚ on the curves.", ""]
    dd = []
    for _, row in summary.iterrows():
        for c in CURVES:
            if row.get(f"{c}_dips", 0) >= 2:
                dd.append(f"- `{row['run_id']}` ({_axes_text(row, axis_cols)}): "
                          f"{c}: first dip at step {fmt(row[f'{c}_dip1_step'])} (depth {row[f'{c}_dip1_depth']:.2f}), "
                          f"second at {fmt(row[f'{c}_dip2_step'])} (depth {row[f'{c}_dip2_depth']:.2f})")
    with_curves = int(sum(summary.get(f"{c}_dips", pd.Series(dtype=float)).notna().sum() for c in CURVES))
    L += dd if dd else [f"- No SW or FID curve shows a second descent ({with_curves} curves examined)."]
    L.append("")
    return L


def novelty_section(ctx: dict, runs, summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """Novelty beside fidelity at each run's last saved evaluation."""
    L = []
    by_id = {r.run_id: r for r in runs}
    info = summary.set_index("run_id")
    axis_cols = _axis_cols(summary, keys)
    res = {k: v for k, v in ctx["results"].items() if v is not None}
    L += ["### Novelty beside fidelity", "",
          "From each evaluation's saved samples (8-bit) in pixel space: **authenticity** (Alaa et al. 2022): the "
          "fraction of samples farther from their nearest training image than that image is from its own nearest "
          "training image; **precision / recall** (Kynkäänniemi et al. 2019, k = 3) against the test split and the "
          "training set; the **NN-ratio** distribution (its fraction below 1/3 is mem_ratio). All of them are in "
          "`novelty.csv`.", ""]
    if ctx.get("max_samples") is not None:
        L += [f"Capped: these analyses use at most the first {ctx['max_samples']} samples of each evaluation "
              "(`--max-samples`).", ""]
    if res:
        t = []
        for rid, v in res.items():
            last = v.novelty.iloc[-1]
            logged = by_id[rid].frame.set_index("step")["mem_ratio"].get(v.last_step, np.nan)
            t.append({"run_id": rid, **{c: info.loc[rid, c] for c in axis_cols}, "step": v.last_step,
                      **{c: last.get(c, np.nan) for c in NOVELTY_COLUMNS}, "mem_ratio": last["mem_ratio_saved"],
                      "mem_ratio logged": logged})
        L += ["At the last evaluation:", "", markdown_table(pd.DataFrame(t)), ""]
    else:
        L += ["No run saved its samples (eval.save_samples=false, or no evaluation yet): nothing to compute.", ""]
    return L


def copies_section(ctx: dict, runs, summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """Which training images are copied, and whether outliers and rare classes go first."""
    L = []
    res = {k: v for k, v in ctx["results"].items() if v is not None}
    info = summary.set_index("run_id")
    axis_cols = _axis_cols(summary, keys)
    L += ["### Which samples are memorized", "",
          "A sample copies its nearest training image when it passes the 1/3 rule. Per training image "
          "(`copies_by_image.csv`): copies at the last evaluation, their mean L2 distance, the image's isolation "
          "(L2 to its nearest other training image) and the first evaluation at which it was copied; per class "
          "(`copies_by_class.csv`).", ""]
    if res:
        imgs = pd.concat([v.images.assign(run_id=k) for k, v in res.items()])
        cls = pd.concat([v.classes.assign(run_id=k) for k, v in res.items()])
        for rid, v in res.items():
            im = v.images
            if im["copies"].sum():
                topi = im.sort_values("copies", ascending=False).iloc[0]
                L.append(f"- `{rid}` ({_axes_text(info.loc[rid], axis_cols)}): "
                         f"{int((im['copies'] > 0).sum())} of {len(im)} training images copied at step {v.last_step}; "
                         f"the most copied (dataset index {int(topi['dataset_index'])}, class {int(topi['label'])}) "
                         f"by {int(topi['copies'])} samples; never-copied images: {int(im['first_copy_step'].isna().sum())}.")
        iso = imgs.groupby("run_id")["isolation"].rank(pct=True)
        first = imgs.groupby("run_id")["first_copy_step"].rank(pct=True)
        L.append("- Do outliers go first? Isolation against the first step copied (ranks within each run, images "
                 "copied at some evaluation): " + _spearman(iso, first, "isolated images are copied later",
                                                           "isolated images are copied first") + ".")
        share = cls["train_images"] / cls.groupby("run_id")["train_images"].transform("sum")
        L.append("- Do rare classes go first? A class's share of the training set against the fraction of its "
                 "samples that are copies at the last evaluation (all runs and classes): "
                 + _spearman(share, cls["copied_samples"], "frequent classes are copied more",
                             "rare classes are copied more") + ".")
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


def disjoint_section(ctx: dict, runs, summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """The disjoint-subsets test (Kadkhodaie et al. 2024)."""
    L = []
    table, _ = ctx["disjoint"]
    if disjoint.OFFSET_KEY in keys:
        L += ["### Disjoint-subsets test", "",
              "Runs that differ only in `data.offset` are paired; each is sampled from its last evaluation's weights "
              "with the same noise (eval.noise_seed) and the same labels (0, 1, 2, ... in turn). pair_dist: mean "
              "pixel L2 between paired samples; unpaired_dist: between samples of different noise (unrelated "
              "images); same_fraction: pairs that are the same image by the 1/3 rule; mem_own / mem_other: the "
              "samples' memorization ratio against the run's own / the other run's training set.", ""]
        ok = [r for r in table if "missing" not in r]
        if ok:
            shown_table = pd.DataFrame(ok).assign(overlap=lambda d: d["overlap"].map({True: "yes", False: "no"}))
            L += [markdown_table(shown_table[["n", "offset_a", "offset_b", "overlap", "step_a", "step_b",
                                                   "pair_dist", "unpaired_dist", "same_fraction", "mem_a_own",
                                                   "mem_b_own", "mem_a_other", "mem_b_other"]]), ""]
            if any(r["overlap"] for r in ok):
                L += ["**Warning:** some pairs' training subsets overlap (offsets closer than n): not a disjoint test.",
                      ""]
        for r in table:
            if "missing" in r:
                L.append(f"- pair `{r['run_a']}` / `{r['run_b']}` not compared: {r['missing']}")
        if not table:
            L.append("- No pair of runs differing only in data.offset.")
        L.append("")
    return L


def _at_step(frame, key, step) -> float:
    """`key` at the evaluation nearest to `step` in log (NaN if step is NaN or the key is missing)."""
    if not np.isfinite(step) or key not in frame or not len(frame):
        return float("nan")
    s = frame["step"].to_numpy(float)
    return float(frame[key].iloc[int(np.argmin(np.abs(np.log(s) - math.log(step))))])


def _spearman(x, y, positive: str, negative: str) -> str:
    """Spearman's rank correlation in words: `positive` / `negative` say what each sign means."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 4 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return "too few points to tell"
    rho, p = rank_correlation(x[ok], y[ok])
    verdict = (positive if rho > 0 else negative) if p < 0.05 else "no significant relation at the 5% level"
    return f"Spearman ρ = {rho:.2f} (p = {p:.2g}, {int(ok.sum())} points): {verdict}"
