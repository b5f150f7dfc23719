"""The markdown of issue 16's probes (report.probes computes the tables): one function per probe, each a list of
lines with a table and a sentence of what the numbers show."""
from __future__ import annotations

import numpy as np
import pandas as pd

from memsweep.report.figures import fmt_value
from memsweep.report.markdown import markdown_table

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


def _opening(title: str, intro: str, table: pd.DataFrame, missing: str) -> tuple[list[str], bool]:
    """A probe's heading and definitions, and whether it has rows (if not, `missing` says why)."""
    lines = [f"#### {title}", "", intro, ""]
    return (lines, True) if len(table) else (lines + [missing, ""], False)


def hybrid_section(ctx: dict) -> list[str]:
    t = ctx["hybrid"]
    L, shown = _opening(
        "Hybrid sampling (Bertrand et al. 2025)",
        "The closed-form memorizer (the class's training images) samples t in [0, tau) from the evaluation's "
        "noise, the network [tau, 1]; tau = 0 is the network's sampler, tau = 1 the memorizer's. `tau_copy`: the "
        "smallest tau at which half the hybrid samples are copies (1/3 rule); `dist@0.5`: mean L2 of the tau = "
        "0.5 samples to the network's own.",
        t, "No evaluation weights to probe (or `memsweep report --no-probes`).")
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
        words = "; ".join(f"n = {fmt_value(n)}: " + ("0 (the network copies on its own)" if v == 0 else fmt_value(v))
                          for n, v in late["tau_copy"].items())
        L += ["What it shows: at the last evaluation half the hybrid samples are copies once the memorizer steers "
              "the path up to tau_copy (" + words + "). A small tau_copy: the network, from there "
              "on, keeps the training image the noisiest part of the path chose (which image to copy is decided "
              "near noise); a tau_copy near 1: the network moves even the memorizer's nearly finished states off "
              "the training images, so its generalizing decisions are made at low noise.", ""]
    return L


def els_section(ctx: dict) -> list[str]:
    t = ctx["els"]
    L, shown = _opening(
        "The equivariant local score machine (Kamb & Ganguli 2025)",
        "The minimizer of the loss under locality and translation equivariance: at each pixel, the formulation's "
        "closed form over every k x k patch of the class's training images at every position (patch size per "
        "noise level: `els_patch`, zero padding as the U-Net), sampled from the same noise as the network. "
        "`els_dist`: mean L2 between the network's and the ELS machine's samples; `els_mem_dist`: the same to the"
        " closed-form memorizer's; `els_mem_ratio`: the ELS samples' own mem_ratio. `variant`: memsweep's padded "
        "patch bank, Kamb & Ganguli's `interior` one, and the patch size `calibrated` against the network "
        "(docs/networks.md).",
        t, "Not computed (no evaluation weights, `probes.els=false`, or `--no-probes`).")
    if not shown:
        return L
    by = ["variant", "n", "when"] if "variant" in t else ["n", "when"]   # the banks and calibrations computed
    g = t.groupby(by)[["mem_ratio", "els_dist", "els_mem_dist", "els_mem_ratio"]].mean().reset_index()
    L += [markdown_table(g), ""]
    shown = "padded" if "variant" not in g or "padded" in set(g["variant"]) else g["variant"].iloc[0]
    late = g[(g["when"] == "late") & ((g["variant"] == shown) if "variant" in g else True)]
    closer = [fmt_value(n) for n, a, b in zip(late["n"], late["els_dist"], late["els_mem_dist"]) if a < b]
    farther = [fmt_value(n) for n, a, b in zip(late["n"], late["els_dist"], late["els_mem_dist"]) if a >= b]
    L += [f"What it shows: at the last evaluation the network's samples are closer to the ELS machine's than to "
          f"the memorizer's for n = {', '.join(closer) or 'none'}, and closer to the memorizer's for "
          f"n = {', '.join(farther) or 'none'}; the ELS machine's samples are new images (els_mem_ratio "
          f"{late['els_mem_ratio'].min():.2f} to {late['els_mem_ratio'].max():.2f}).", ""]
    return L


def traj_section(ctx: dict) -> list[str]:
    t = ctx["traj"]
    L, shown = _opening(
        "Where sampling trajectories go",
        "At each sampler step, min_i ||x_t − a(t) y_i|| / (s(t) √D): the distance to the nearest noised training "
        "image's mean in units of the noise scale per pixel (x_t = a(t) y + s(t) z; about 1 on the training "
        "domain), for the sampler's states (`traj_state`), noised training images (`traj_train`, fresh noise) and"
        " noised test images (`traj_test`), against log-SNR.",
        t, "Not computed (no evaluation weights, or `--no-probes`).")
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
