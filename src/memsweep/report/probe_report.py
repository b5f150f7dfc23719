"""What the model learns before it memorizes: issue 16's probes in the report (metrics.probes: hybrid sampling,
the ELS machine, where trajectories go) at each run's first and last evaluation ("early" and "late"), their
tables (hybrid.csv, els.csv, traj.csv), figures (hybrid.png, els.png, traj.png) and section.

The report reads the keys `memsweep eval RUN hybrid els traj` wrote into metrics.jsonl and computes, at report
time, those missing, from the evaluation's saved weights (checkpoints/eval_<N>.pt, rebuilt with science.networks)
and the evaluation's fixed noise and labels (metrics.fixed_inputs, the Evaluator's own draws): the same
numbers `memsweep eval` writes. What it computes is stored in the run directory's analysis cache
(run_dir/analysis/probes_<step>.v<N>.npz, store.analysis_cache: keyed by the weights file and the probe
settings, with the seconds it took), so a second report computes nothing and says the same; metrics.jsonl is
left alone. hybrid.csv, els.csv and traj.csv go next to report.md. `probes.els=false` in a run's config leaves
the ELS machine out; `memsweep report --no-probes` computes nothing (and shows only what metrics.jsonl holds).
"""
from __future__ import annotations

import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from memsweep.data import datasets
from memsweep.metrics.fixed_inputs import fixed_inputs, sample_labels
from memsweep.metrics.probe_settings import PROBES, ProbeSettings, els_suffix, probe_keys
from memsweep.metrics.probes import ProbeInputs, run_probes
from memsweep.report.markdown import fmt, markdown_table
from memsweep.report.style import legend_handles, plain_log_ticks, save, value_colors
from memsweep.science import objective, networks
from memsweep.store import analysis_cache
from memsweep.store.cache import data_cache
from memsweep.store.run import RunStore
from memsweep.threads import torch_threads

VERSION = 1   # of the stored probe results: bump when a probe's definition changes
# the key suffixes of the ELS machine's variants (metrics.probes.els_suffix), in the order shown
ELS_VARIANTS = tuple(els_suffix(ProbeSettings(els_bank=b, els_patch=p)) for b in ("padded", "interior")
                     for p in (5, "calibrated"))


def _inputs(store: RunStore, cfg, step: int) -> ProbeInputs:
    """The probes' inputs of one evaluation, as the Evaluator had them."""
    data = datasets.load_for_model(cfg.data, data_cache(cfg))   # the model's classes (none if unconditional)
    ev = cfg.eval
    _, _, noise = fixed_inputs(data, ev)
    model = networks.build(cfg.model, cfg.data.image_size, cfg.data.channels, data.num_classes)
    model.load_state_dict(store.load_eval_weights(step, map_location="cpu"))
    return ProbeInputs(objective.of_config(cfg), model.eval(), noise,
                       sample_labels(data.train_y, 0, int(ev.num_samples)), int(ev.sampler_steps), str(ev.sampler),
                       data.train_x, data.train_y, data.test_x, data.num_classes, float(ev.cfg_weight),
                       float(ev.mem_threshold), int(ev.noise_seed))


def _probe_row(store: RunStore, cfg, row: dict, compute: bool, timing: dict) -> dict:
    """The probes' keys at one evaluation: those in the row, and the missing ones read from the analysis cache or
    computed there (if `compute`)."""
    settings = ProbeSettings.of_config(cfg)
    wanted = [p for p in PROBES if p != "els" or settings.els]
    keys = {p: probe_keys(p, settings) for p in wanted}
    have = {k: v for k, v in row.items() if k.startswith("els_")}   # every ELS variant `memsweep eval` wrote
    have.update({k: row[k] for p in wanted for k in keys[p] if all(key in row for key in keys[p])})
    missing = [p for p in wanted if not all(k in row for k in keys[p])]
    weights = store.path("eval_weights", row["step"])
    if missing and compute and weights.is_file():
        new, seconds = _stored_or_computed(store, cfg, row["step"], missing, settings, weights)
        timing[store.run_id] = timing.get(store.run_id, 0.0) + seconds
        have.update(new)
    return have


def _stored_or_computed(store, cfg, step, missing, settings, weights) -> tuple[dict, float]:
    """The keys of the probes `missing` at `step` and the CPU seconds they took (when first computed)."""
    name = f"probes_{step:09d}"
    expect = {"weights": analysis_cache.stamp(weights), "probes": missing, "settings": repr(settings)}
    got = analysis_cache.read(store.dir, name, VERSION, expect)
    if got is not None:
        arrays, meta = got
        return {k: v.tolist() for k, v in arrays.items()}, float(meta["seconds"])
    t0 = time.process_time()
    new, _ = run_probes(_inputs(store, cfg, step), missing, settings)
    seconds = time.process_time() - t0
    analysis_cache.write(store.dir, name, VERSION, new, expect, seconds=seconds)
    return new, seconds


def compute(runs, enabled: bool = True) -> dict:
    """{"hybrid", "els", "traj"}: long tables (one row per run, evaluation and grid point), "notes", "seconds"."""
    tables = {p: [] for p in PROBES}
    notes, timing = [], {}
    with torch_threads(1):   # digits-sized models and closed forms: threads only add overhead
        for r in runs:
            if r.dir is None or not len(r.frame):
                continue
            try:
                _run_tables(r, enabled, tables, timing)
            except Exception as e:   # one run failing must not lose the others
                notes.append(f"run `{r.run_id}`: probes not computed ({type(e).__name__}: {e})")
    out = {p: pd.DataFrame(rows) for p, rows in tables.items()}
    return {**out, "notes": notes, "seconds": timing}


def _run_tables(r, enabled: bool, tables: dict, timing: dict) -> None:
    store = RunStore(r.dir)
    cfg = store.read_config()
    rows = store.read_metrics()
    ends = [("early", rows[0]), ("late", rows[-1])] if len(rows) > 1 else [("late", rows[-1])]
    for when, row in ends:
        keys = _probe_row(store, cfg, row, enabled, timing)
        ident = {"run_id": r.run_id, "n": r.params.get("n"), "seed": r.params.get("seed"), "when": when,
                 "step": row["step"], "mem_ratio": row.get("mem_ratio")}
        if "hybrid_tau" in keys:
            tables["hybrid"] += [{**ident, "tau": tau, "hybrid_mem_ratio": m, "hybrid_dist": d} for tau, m, d in
                                 zip(keys["hybrid_tau"], keys["hybrid_mem_ratio"], keys["hybrid_dist"])]
        for sfx in ELS_VARIANTS:   # one row per variant of the ELS machine (bank, calibration) the row holds
            if f"els_dist{sfx}" in keys:
                tables["els"].append({**ident, "variant": sfx.strip("_") or "padded",
                                      "els_dist": keys[f"els_dist{sfx}"], "els_mem_dist": keys.get("els_mem_dist"),
                                      "els_mem_ratio": keys.get(f"els_mem_ratio{sfx}"),
                                      "els_patch": str(keys.get(f"els_patch{sfx}"))})
        if "traj_t" in keys:
            f = objective.of_config(cfg)
            lsnr = f.log_snr(torch.tensor(keys["traj_t"], dtype=torch.float64)).tolist()
            tables["traj"] += [{**ident, "t": t, "log_snr": ls, "traj_state": s, "traj_train": a, "traj_test": b}
                               for t, ls, s, a, b in zip(keys["traj_t"], lsnr, keys["traj_state"],
                                                         keys["traj_train"], keys["traj_test"])]


def write(ctx: dict, out) -> None:
    """hybrid.csv, els.csv, traj.csv (one of an earlier report that this one has no rows for is removed)."""
    for p in PROBES:
        if len(ctx[p]):
            ctx[p].to_csv(out / f"{p}.csv", index=False)
        else:
            (out / f"{p}.csv").unlink(missing_ok=True)


# -- the figures ----------------------------------------------------------------------------------------------
WHEN = ("early", "late")


def figures(add, ctx: dict, out: Path) -> None:
    """The probes' three figures through the report's figure jobs (`add`)."""
    add("Hybrid sampling: mem_ratio against the switching time tau, early and late", hybrid_figure, ctx["hybrid"],
        out / "hybrid.png")
    add("The ELS machine: distance of the network's samples to it and to the memorizer, against n", els_figure,
        ctx["els"], out / "els.png")
    add("Where sampling trajectories go: distance to the training domain against log-SNR, early and late",
        traj_figure, ctx["traj"], out / "traj.png")


def _colors(table: pd.DataFrame) -> tuple[list, dict]:
    values = sorted(table["n"].dropna().unique().tolist())
    return values, value_colors(values)


def _title(when: str) -> str:
    return f"{when} (the {'first' if when == 'early' else 'last'} evaluation)"


def _save(fig, path: Path, title: str) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def hybrid_figure(table: pd.DataFrame, path: Path) -> Path | None:
    """mem_ratio and distance to the network's own samples of the hybrid sampler against tau."""
    if not len(table):
        return None
    values, colors = _colors(table)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True, squeeze=False)
    for j, when in enumerate(WHEN):
        for (rid, step), g in table[table["when"] == when].groupby(["run_id", "step"]):
            c = colors.get(g["n"].iloc[0], "gray")
            axes[0][j].plot(g["tau"], g["hybrid_mem_ratio"], "o-", color=c, ms=3)
            axes[1][j].plot(g["tau"], g["hybrid_dist"], "o-", color=c, ms=3)
        axes[0][j].set_title(_title(when))
        axes[0][j].set_ylim(-0.03, 1.03)
        axes[0][j].set_ylabel("mem_ratio of hybrid samples")
        axes[1][j].set_ylabel("mean L2 to the network's samples")
        axes[1][j].set_xlabel("tau (memorizer on t < tau, network after; t = 0 noise)", fontsize=9)
        for ax in axes[:, j]:
            ax.grid(alpha=0.3)
    axes[0][1].legend(handles=legend_handles(values, colors, "n"), fontsize=8)
    return _save(fig, path, "Hybrid sampling (Bertrand et al. 2025): when are a sample's decisions made?")


def els_figure(table: pd.DataFrame, path: Path) -> Path | None:
    """Distance of the network's samples to the ELS machine's and to the memorizer's, against n."""
    if not len(table):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), squeeze=False)
    variants = list(dict.fromkeys(table["variant"])) if "variant" in table else ["padded"]
    for j, when in enumerate(WHEN):
        ax = axes[0][j]
        for i, variant in enumerate(variants):   # the ELS machine's patch banks and calibrations
            rows = table[(table["when"] == when) & ((table["variant"] == variant) if "variant" in table else True)]
            g = rows.groupby("n")[["els_dist", "els_mem_dist", "els_mem_ratio"]].mean()
            if not len(g):
                continue
            name = "" if variant == "padded" else f", {variant}"
            ax.plot(g.index, g["els_dist"], "o-" if i == 0 else "o--", color=f"C{2 + 2 * i}",
                    label=f"to the ELS machine's samples (els_dist{name})")
            if i == 0:
                ax.plot(g.index, g["els_mem_dist"], "s-", color="C3", label="to the memorizer's samples (els_mem_dist)")
            ax.set_xscale("log")
        ax.set_title(_title(when))
        ax.set_xlabel("n (training images)")
        ax.set_ylabel("mean L2 from the network's samples")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return _save(fig, path, "The equivariant local score machine (Kamb & Ganguli 2025) and the memorizer, same noise")


def traj_figure(table: pd.DataFrame, path: Path) -> Path | None:
    """Distance to the nearest noised training image (in units of the noise scale) against log-SNR."""
    t = table[np.isfinite(table["log_snr"])] if len(table) else table
    if not len(t):
        return None
    values, colors = _colors(t)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True, squeeze=False)
    for j, when in enumerate(WHEN):
        ax = axes[0][j]
        for (rid, step), g in t[t["when"] == when].groupby(["run_id", "step"]):
            c = colors.get(g["n"].iloc[0], "gray")
            ax.plot(g["log_snr"], g["traj_state"], "-", color=c, lw=2)
            ax.plot(g["log_snr"], g["traj_test"], "--", color=c, lw=1)
            ax.plot(g["log_snr"], g["traj_train"], ":", color=c, lw=1)
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
        ax.set_title(f"{when}: sampler states (solid), noised test (dashed), noised train (dotted)", fontsize=9)
        ax.set_xlabel("log-SNR of x_t (formulation.log_snr(t))", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("min_i ||x_t − a(t) y_i|| / (s(t) √D)")
    axes[0][1].legend(handles=legend_handles(values, colors, "n"), fontsize=8)
    return _save(fig, path, "Where sampling trajectories go: distance to the training domain by noise level")


# -- the section ----------------------------------------------------------------------------------------------
HOW = ("computed from `memsweep eval RUN hybrid els traj` keys in metrics.jsonl, or at report time from the "
       "evaluation weights and the evaluation's fixed noise and labels")


def lines(ctx: dict) -> list[str]:
    L = ["### What the model learns before it memorizes", "",
         f"Three probes at each run's first (early) and last (late) evaluation, {HOW} "
         f"(`hybrid.csv`, `els.csv`, `traj.csv`).", ""]
    for section in (hybrid_section, els_section, traj_section):
        L += section(ctx)
    secs = ctx.get("seconds") or {}
    if secs:
        L += [f"Computed at report time for {len(secs)} run(s) in {sum(secs.values()):.0f} s of CPU (once: kept in each "
              "run's analysis cache for later reports).", ""]
    L += [f"- {n}" for n in ctx.get("notes", [])] + ([""] if ctx.get("notes") else [])
    return L


def tau_copy(g: pd.DataFrame, level: float = 0.5) -> float:
    """The smallest tau at which the hybrid samples' mem_ratio reaches `level` (NaN if none)."""
    g = g.sort_values("tau")
    hit = g[g["hybrid_mem_ratio"] >= level]
    return float(hit["tau"].iloc[0]) if len(hit) else float("nan")


def per_n_and_when(t: pd.DataFrame, summary) -> pd.DataFrame:
    """One row per n and evaluation (early, late) of a probe's long table: n, when, and summary(group)'s keys."""
    return pd.DataFrame([{"n": n, "when": when, **summary(g)} for (n, when), g in t.groupby(["n", "when"], sort=True)])


SECTIONS = {   # each probe's heading, its definitions, and why it may have no rows
    "hybrid": ("Hybrid sampling (Bertrand et al. 2025)",
        "The closed-form memorizer (the class's training images) samples t in [0, tau) from the evaluation's "
        "noise, the network [tau, 1]; tau = 0 is the network's sampler, tau = 1 the memorizer's. `tau_copy`: the "
        "smallest tau at which half the hybrid samples are copies (1/3 rule); `dist@0.5`: mean L2 of the tau = "
        "0.5 samples to the network's own.",
        "No evaluation weights to probe (or `memsweep report --no-probes`)."),
    "els": ("The equivariant local score machine (Kamb & Ganguli 2025)",
        "The minimizer of the loss under locality and translation equivariance: at each pixel, the formulation's "
        "closed form over every k x k patch of the class's training images at every position (patch size per "
        "noise level: `els_patch`, zero padding as the U-Net), sampled from the same noise as the network. "
        "`els_dist`: mean L2 between the network's and the ELS machine's samples; `els_mem_dist`: the same to the"
        " closed-form memorizer's; `els_mem_ratio`: the ELS samples' own mem_ratio. `variant`: memsweep's padded "
        "patch bank, Kamb & Ganguli's `interior` one, and the patch size `calibrated` against the network "
        "(docs/networks.md).",
        "Not computed (no evaluation weights, `probes.els=false`, or `--no-probes`)."),
    "traj": ("Where sampling trajectories go",
        "At each sampler step, min_i ||x_t − a(t) y_i|| / (s(t) √D): the distance to the nearest noised training "
        "image's mean in units of the noise scale per pixel (x_t = a(t) y + s(t) z; about 1 on the training "
        "domain), for the sampler's states (`traj_state`), noised training images (`traj_train`, fresh noise) and"
        " noised test images (`traj_test`), against log-SNR.",
        "Not computed (no evaluation weights, or `--no-probes`)."),
}


def _opening(ctx: dict, probe: str) -> tuple[pd.DataFrame, list[str], bool]:
    """A probe's table, its heading and definitions, and whether it has rows (if not, the lines say why)."""
    title, intro, missing = SECTIONS[probe]
    lines = [f"#### {title}", "", intro, ""]
    return (ctx[probe], lines, True) if len(ctx[probe]) else (ctx[probe], lines + [missing, ""], False)


def hybrid_section(ctx: dict) -> list[str]:
    t, L, shown = _opening(ctx, "hybrid")
    if not shown:
        return L

    def summary(g):
        per_run = [tau_copy(h) for _, h in g.groupby("run_id")]
        return {"mem_ratio (tau 0)": g[g["tau"] == 0]["hybrid_mem_ratio"].mean(),
                "tau_copy": float(np.nanmean(per_run)) if np.isfinite(per_run).any() else float("nan"),
                "dist@0.5": g[np.isclose(g["tau"], 0.5)]["hybrid_dist"].mean()}
    df = per_n_and_when(t, summary)
    L += [markdown_table(df), ""]
    late = df[df["when"] == "late"].set_index("n")
    if len(late):
        words = "; ".join(f"n = {fmt(n, setting=True)}: "
                          + ("0 (the network copies on its own)" if v == 0 else fmt(v, setting=True))
                          for n, v in late["tau_copy"].items())
        L += ["What it shows: at the last evaluation half the hybrid samples are copies once the memorizer steers "
              "the path up to tau_copy (" + words + "). A small tau_copy: the network, from there "
              "on, keeps the training image the noisiest part of the path chose (which image to copy is decided "
              "near noise); a tau_copy near 1: the network moves even the memorizer's nearly finished states off "
              "the training images, so its generalizing decisions are made at low noise.", ""]
    return L


def els_section(ctx: dict) -> list[str]:
    t, L, shown = _opening(ctx, "els")
    if not shown:
        return L
    by = ["variant", "n", "when"] if "variant" in t else ["n", "when"]   # the banks and calibrations computed
    g = t.groupby(by)[["mem_ratio", "els_dist", "els_mem_dist", "els_mem_ratio"]].mean().reset_index()
    L += [markdown_table(g), ""]
    shown = "padded" if "variant" not in g or "padded" in set(g["variant"]) else g["variant"].iloc[0]
    late = g[(g["when"] == "late") & ((g["variant"] == shown) if "variant" in g else True)]
    closer = [fmt(n, setting=True) for n, a, b in zip(late["n"], late["els_dist"], late["els_mem_dist"]) if a < b]
    farther = [fmt(n, setting=True) for n, a, b in zip(late["n"], late["els_dist"], late["els_mem_dist"]) if a >= b]
    if closer and farther:
        which = (f"closer to the ELS machine's than to the memorizer's for n = {', '.join(closer)}, and closer to "
                 f"the memorizer's for n = {', '.join(farther)}")
    elif closer or farther:
        which = (f"closer to the {'ELS machine' if closer else 'memorizer'}'s than to the "
                 f"{'memorizer' if closer else 'ELS machine'}'s at every n ({', '.join(closer or farther)})")
    else:
        return L
    L += [f"What it shows: at the last evaluation the network's samples are {which}; the ELS machine's samples are "
          f"new images (els_mem_ratio {late['els_mem_ratio'].min():.2f} to {late['els_mem_ratio'].max():.2f}).", ""]
    return L


def traj_section(ctx: dict) -> list[str]:
    t, L, shown = _opening(ctx, "traj")
    if not shown:
        return L

    def summary(g):
        m = g.groupby("log_snr")[["traj_state", "traj_train", "traj_test"]].mean()
        ratio = m["traj_state"] / m["traj_train"]
        return {"max state/train": ratio.max(), "at log-SNR": ratio.idxmax(),
                "max test/train": (m["traj_test"] / m["traj_train"]).max()}
    df = per_n_and_when(t[np.isfinite(t["log_snr"])], summary)
    L += [markdown_table(df), ""]
    late = df[df["when"] == "late"]
    if len(late):
        L += [f"What it shows: at the last evaluation the sampler's states are at most "
              f"{late['max state/train'].min():.2f} to {late['max state/train'].max():.2f} times as far from the "
              f"noised training images as the training domain itself is, noised test images up to "
              f"{late['max test/train'].max():.2f} times: a ratio near 1 means the sampler stays where the network "
              "was trained; test points leave that domain at high log-SNR, where the train/test loss gap is "
              "measured.", ""]
    return L
