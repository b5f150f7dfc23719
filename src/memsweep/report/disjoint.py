"""The disjoint-subsets test of generalization (Kadkhodaie et al. 2024, "Generalization in diffusion models arises
from geometry-adaptive harmonic representations"): computed, in the report's section and in disjoint.png.

Two runs identical but for their training images (a data.offset axis: [offset, offset + n) of the pool), each
sampled from the same initial noise (drawn from eval.noise_seed) with the same labels: at small n each model
copies its own training set and the paired samples differ; once the models generalize they produce nearly
the same image from the same noise. The samples come from the weights each run saved at its last evaluation
(checkpoints/eval_<step>.pt), with class labels 0, 1, 2, ... in turn, so both models get the same labels.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from memsweep.data import datasets, sources
from memsweep.metrics.memorization import MEM_THRESHOLD, is_copy, nearest_neighbours
from memsweep.report.markdown import fmt, markdown_table
from memsweep.report.style import axis_label, image_array, save
from memsweep.science import objective, networks
from memsweep.store.cache import Cache
from memsweep.store.run import RunStore
from memsweep.states import State

OFFSET_KEY = "data.offset"


def offset_pairs(runs: list) -> list[tuple[dict, object, object]]:
    """Pairs of runs (analysis.RunData) whose swept values differ only in data.offset: (the other axes, run
    with the smaller offset, run with the next offset). Groups with more offsets give one pair (the first
    two)."""
    groups: dict = {}
    for r in runs:
        if OFFSET_KEY not in r.axes:
            continue
        key = tuple(sorted((k, str(v)) for k, v in r.axes.items() if k != OFFSET_KEY))
        groups.setdefault(key, []).append(r)
    pairs = []
    for key, members in groups.items():
        by_offset = sorted({int(r.axes[OFFSET_KEY]): r for r in members}.items())
        if len(by_offset) >= 2:
            pairs.append((dict(key), by_offset[0][1], by_offset[1][1]))
    return pairs


def subsets_overlap(n: int, offset_a: int, offset_b: int) -> bool:
    """True if [offset_a, offset_a + n) and [offset_b, offset_b + n) share an image."""
    return abs(int(offset_a) - int(offset_b)) < int(n)


def pair_similarity(a: torch.Tensor, b: torch.Tensor, threshold: float = MEM_THRESHOLD) -> dict:
    """Similarity of paired samples a[i], b[i] (same noise, same label): their mean pixel L2 distance, the
    same between unpaired samples (a[i], b[j], j != i; what unrelated images give), and the fraction of pairs
    that are the same image by the 1/3 rule: b[i] is a[i]'s nearest sample of b and closer than 1/3 of the
    second-nearest."""
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    d = torch.cdist(fa, fb)
    paired = d.diagonal()
    off = d[~torch.eye(len(a), dtype=torch.bool)]
    others = d + torch.diag(torch.full((len(a),), float("inf"), dtype=d.dtype))
    same = is_copy(torch.stack([paired, others.min(1).values], 1), threshold)
    return {"pair_dist": paired.mean().item(), "unpaired_dist": off.mean().item(),
            "same_fraction": same.double().mean().item()}


@torch.no_grad()
def shared_samples(run_dir, num: int | None = None) -> tuple[torch.Tensor, dict]:
    """Samples of the weights a run saved at its last evaluation, from noise drawn from its eval.noise_seed and
    labels 0, 1, 2, ... in turn. Returns the samples and {step, train_x} (its training images)."""
    store = RunStore(run_dir)
    steps = store.eval_weight_steps()
    if not steps:
        raise FileNotFoundError(f"run {store.run_id}: no saved evaluation weights (eval.save_weights=false?)")
    cfg = store.read_config()
    ev = cfg.eval
    num = num or int(ev.num_samples)
    classes = sources.model_classes(cfg.data)   # 0: unconditional, every label is the null label 0
    model = networks.build(cfg.model, cfg.data.image_size, cfg.data.channels, classes)
    model.load_state_dict(store.load_eval_weights(steps[-1]))
    model.eval()
    g = torch.Generator().manual_seed(int(ev.noise_seed))
    noise = torch.randn((num, cfg.data.channels, cfg.data.image_size, cfg.data.image_size), generator=g)
    labels = torch.arange(num) % max(classes, 1)
    samples = objective.of_config(cfg).sample(model, noise, labels, int(ev.sampler_steps), ev.sampler,
                                                 ev.cfg_weight, classes).clamp(-1, 1)
    train_x = datasets.load(cfg.data, Cache(store.dir.parent.parent / "cache")).train_x
    return samples, {"step": steps[-1], "train_x": train_x, "n": int(cfg.data.n), "offset": int(cfg.data.offset)}


def disjoint_table(runs: list, threshold: float = MEM_THRESHOLD) -> tuple[list[dict], dict]:
    """One row per pair (the other axes, n, offsets, the pair similarity, each model's mem_ratio on these
    samples against its own training set and against the other's) and, for the figure, a few samples of each
    pair. Pairs with an unfinished run or without saved weights are not compared (the reason under 'missing')."""
    rows, shown = [], {}
    for axes, ra, rb in offset_pairs(runs):
        unfinished = [r.run_id for r in (ra, rb) if r.state != State.FINISHED]
        if unfinished:   # compare the two models at the same point: the end of training
            rows.append({**axes, "run_a": ra.run_id, "run_b": rb.run_id,
                         "missing": f"not finished: {', '.join(unfinished)}"})
            continue
        try:
            a, ia = shared_samples(ra.dir)
            b, ib = shared_samples(rb.dir)
        except (FileNotFoundError, OSError) as e:
            rows.append({**axes, "run_a": ra.run_id, "run_b": rb.run_id, "missing": str(e)})
            continue
        row = {**axes, "run_a": ra.run_id, "run_b": rb.run_id, "n": ia["n"], "offset_a": ia["offset"],
               "offset_b": ib["offset"], "step_a": ia["step"], "step_b": ib["step"],
               "overlap": subsets_overlap(ia["n"], ia["offset"], ib["offset"]), **pair_similarity(a, b, threshold)}
        for name, s, own, other in (("a", a, ia["train_x"], ib["train_x"]), ("b", b, ib["train_x"], ia["train_x"])):
            for which, ref in (("own", own), ("other", other)):
                d, _ = nearest_neighbours(s, ref, k=2)
                row[f"mem_{name}_{which}"] = is_copy(d, threshold).double().mean().item()
        rows.append(row)
        shown[(ra.run_id, rb.run_id)] = (a[:10], b[:10])
    return rows, shown


def section(ctx: dict, runs, summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """The disjoint-subsets test (Kadkhodaie et al. 2024)."""
    L = []
    table, _ = ctx["disjoint"]
    if OFFSET_KEY in keys:
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


def figure(table: list[dict], shown: dict, path: Path) -> Path | None:
    """The disjoint-subsets test against n: paired-sample distance (and unpaired, for scale), the fraction of
    pairs that are the same image, each model's copies of its own and of the other's training set; and the
    paired samples themselves for each n."""
    rows = [r for r in table if "missing" not in r]
    if not rows:
        return None
    ns = sorted({r["n"] for r in rows})
    def per_n(k):
        return [np.mean([r[k] for r in rows if r["n"] == n]) for n in ns]
    fig = plt.figure(figsize=(15, 4.0 + 1.3 * len(ns)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[4.0, 1.3 * len(ns)])
    axes = top.subplots(1, 3)
    axes[0].plot(ns, per_n("pair_dist"), "o-", color="C0", label="paired (same noise, same label)")
    axes[0].plot(ns, per_n("unpaired_dist"), "s--", color="0.5", label="unpaired (different noise)")
    axes[0].set_ylabel("mean pixel L2 between the two models' samples")
    axes[1].plot(ns, per_n("same_fraction"), "o-", color="C2")
    axes[1].set_ylabel("fraction of pairs that are the same image\n(1/3 rule among the other model's samples)")
    axes[1].set_ylim(-0.03, 1.03)
    axes[2].plot(ns, [(a + b) / 2 for a, b in zip(per_n("mem_a_own"), per_n("mem_b_own"))], "o-", color="C3",
                 label="copies of its own training set")
    axes[2].plot(ns, [(a + b) / 2 for a, b in zip(per_n("mem_a_other"), per_n("mem_b_other"))], "s--", color="C1",
                 label="copies of the other run's training set")
    axes[2].set_ylabel("memorization ratio of these samples")
    axes[2].set_ylim(-0.03, 1.03)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(ns, [fmt(n, setting=True) for n in ns])
        ax.minorticks_off()
        ax.set_xlabel(axis_label("n"))
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    grid = bottom.subplots(len(ns), 1, squeeze=False)[:, 0]
    for ax, n in zip(grid, ns):
        r = next(r for r in rows if r["n"] == n)
        a, b = shown[(r["run_a"], r["run_b"])]
        k = len(a)
        h = a.shape[-1]
        canvas = np.ones((2 * h + 1, k * (h + 1)))
        for j in range(k):
            canvas[:h, j * (h + 1):j * (h + 1) + h] = image_array(a[j])
            canvas[h + 1:, j * (h + 1):j * (h + 1) + h] = image_array(b[j])
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([h / 2, 1.5 * h + 1], [f"offset {r['offset_a']}", f"offset {r['offset_b']}"], fontsize=7)
        ax.set_title(f"n = {n}: samples from the same noise and label (top: one training subset, bottom: the other)",
                     fontsize=8)
    top.suptitle("disjoint-subsets test: do two models trained on disjoint sets generate the same images?",
                 fontsize=11)
    return save(fig, path)
