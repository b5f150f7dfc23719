"""Figures of what the samples are: novelty beside fidelity over training, the distribution of
nearest-neighbour ratios at each evaluation, the most-copied training images, and the disjoint-subsets test.
Same conventions as report.figures (whose helpers these reuse): one PNG per function, its path returned, None when
there is nothing to draw."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from memsweep.metrics.memorization import MEM_THRESHOLD
from memsweep.report.summary import axis_column
from memsweep.report.figures import (SHORT, _fixed_text, _label, _legend_handles, _spread, axis_runs, fmt_value,
                    ordered_values, plain_log_ticks, plt, save, value_colors)


def _picked(runs, summary, key, keys, extra: dict, max_runs: int):
    """Runs along the axis that have an entry in `extra` (run_id -> result), spread over the axis values."""
    col = axis_column(key)
    chosen, fixed = axis_runs(runs, key, keys)
    chosen = [r for r in chosen if extra.get(r.run_id) is not None]
    if not chosen:
        return col, fixed, [], [], {}
    info = summary.set_index("run_id")
    values = ordered_values(info.loc[[r.run_id for r in chosen]].reset_index(), col)
    picked = []
    for v in _spread(values, max_runs):
        picked += [(v, r) for r in chosen if str(info.loc[r.run_id, col]) == str(v)][:1]
    return col, fixed, picked, values, value_colors(values)


def _gray(img) -> np.ndarray:
    """An image tensor in [-1, 1] (C, H, W) as an array imshow takes, in [0, 1]."""
    a = ((img.detach().cpu().float().clamp(-1, 1) + 1) / 2).numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def novelty_figure(runs, summary, key, keys, path: Path, results: dict, title: str = "") -> Path | None:
    """Authenticity, precision and recall (test and train splits) and mem_ratio against the step, one curve
    per run coloured by its axis value. `results`: run_id -> sample_analysis.SampleAnalysis."""
    col, fixed, picked, values, colors = _picked(runs, summary, key, keys, results, max_runs=99)
    if not picked:
        return None
    panels = [("authenticity", None, "authenticity (fraction of samples\nnot closer to a train image than its NN)"),
              ("precision_test", "precision_train", "precision, k=3  (— test, - - train)"),
              ("recall_test", "recall_train", "recall, k=3  (— test, - - train)"),
              ("mem_ratio_saved", None, "memorization ratio (1/3 NN rule)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 2, 3.8), layout="constrained")
    for v, r in picked:
        f = results[r.run_id].novelty
        for ax, (a, b, _) in zip(axes, panels):
            if a in f:
                ax.plot(f["step"], f[a], color=colors[v], lw=1.6, marker=".", ms=4)
            if b and b in f:
                ax.plot(f["step"], f[b], color=colors[v], lw=1.3, ls="--")
    for ax, (_, _, ylabel) in zip(axes, panels):
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.legend(handles=_legend_handles(values, colors, col), loc="outside right center", title=_label(col),
               fontsize=9, title_fontsize=9, frameon=False)
    fig.suptitle(f"{title}novelty beside fidelity, from each evaluation's saved samples (pixel L2){_fixed_text(fixed)}",
                 fontsize=11)
    return save(fig, path)


def nn_ratio_figure(runs, summary, key, keys, path: Path, results: dict, max_runs: int = 6,
                    threshold: float = MEM_THRESHOLD, title: str = "") -> Path | None:
    """For each run: the histogram of ||x - NN1|| / ||x - NN2|| over the samples at each evaluation, as a
    column of a heatmap (step on x, ratio on y); copies sit near 0, new images near 1."""
    col, fixed, picked, _, _ = _picked(runs, summary, key, keys, results, max_runs)
    if not picked:
        return None
    fig, axes = plt.subplots(1, len(picked), figsize=(3.6 * len(picked) + 1.2, 3.9), squeeze=False, sharey=True,
                             layout="constrained")
    mesh = None
    for ax, (v, r) in zip(axes.flat, picked):
        f = results[r.run_id].novelty
        hist = np.array(f["nn_ratio_hist"].tolist(), float).T          # (bins, steps)
        steps = f["step"].to_numpy(float)
        logs = np.log10(steps)
        if len(steps) > 1:
            mids = (logs[1:] + logs[:-1]) / 2
            edges = 10 ** np.concatenate([[logs[0] - (mids[0] - logs[0])], mids, [logs[-1] + (logs[-1] - mids[-1])]])
        else:
            edges = 10 ** np.array([logs[0] - 0.1, logs[0] + 0.1])
        mesh = ax.pcolormesh(edges, np.linspace(0, 1, hist.shape[0] + 1), hist, cmap="magma_r", vmin=0, vmax=1,
                             shading="flat")
        ax.axhline(threshold, color="C0", ls="--", lw=1.2)
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        ax.set_xlabel("training step")
        ax.set_title(f"{SHORT.get(col, col)} = {fmt_value(v)}", fontsize=10)
    axes.flat[0].set_ylabel("NN distance ratio  ||x − NN1|| / ||x − NN2||")
    axes.flat[0].text(0.02, threshold + 0.01, "1/3 rule", color="C0", fontsize=8, transform=axes.flat[0].get_yaxis_transform())
    cb = fig.colorbar(mesh, ax=list(axes.flat), fraction=0.05, pad=0.02)
    cb.set_label("fraction of samples in the bin")
    fig.suptitle(f"{title}distribution of nearest-neighbour distance ratios at each evaluation{_fixed_text(fixed)}",
                 fontsize=11)
    return save(fig, path)


def copies_figure(runs, summary, key, keys, path: Path, results: dict, max_runs: int = 3, top: int = 8,
                  title: str = "") -> Path | None:
    """For a few runs whose last samples include copies: the most-copied training images (with how many
    samples copy each, and how far the copies are), the fraction copied per class, and when each training
    image was first copied against how isolated it is in the training set."""
    with_copies = {k: v for k, v in results.items() if v is not None and v.images["copies"].sum() > 0}
    col, fixed, picked, _, _ = _picked(runs, summary, key, keys, with_copies, max_runs)
    if not picked:
        return None
    fig = plt.figure(figsize=(4.0 + 0.9 * top + 4.2, 3.0 * len(picked) + 0.6), layout="constrained")
    sub = fig.subfigures(len(picked), 1, squeeze=False)
    for sf, (v, r) in zip(sub[:, 0], picked):
        res = results[r.run_id]
        img = res.images.sort_values(["copies", "mean_copy_dist"], ascending=[False, True])
        img = img[img["copies"] > 0].head(top)
        axes = sf.subplots(1, 3, width_ratios=[3.2, 0.9 * top, 3.6])
        cls = res.classes
        x = np.arange(len(cls))
        axes[0].bar(x - 0.2, cls["copied_samples"], 0.4, label="its samples that are copies")
        axes[0].bar(x + 0.2, cls["images_copied"], 0.4, label="its train images copied")
        axes[0].set_xticks(x, [f"{c}\n({k})" for c, k in zip(cls["label"], cls["train_images"])], fontsize=8)
        axes[0].set_xlabel("class (its training images)", fontsize=8)
        axes[0].set_ylim(0, 1.05)
        axes[0].set_ylabel("fraction", fontsize=9)
        axes[0].legend(fontsize=7, loc="upper right")
        axes[0].set_title(f"{SHORT.get(col, col)} = {fmt_value(v)}, step {res.last_step}: per class", fontsize=9)
        strip = [_gray(res.train_x[i]) for i in img["index"]]
        if strip:
            h = strip[0].shape[0]
            pad = np.ones((h, max(1, h // 8)) + strip[0].shape[2:])
            tiles = [np.concatenate([t, pad], axis=1) for t in strip]
            axes[1].imshow(np.concatenate(tiles, axis=1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            w = tiles[0].shape[1]
            for j, (_, row) in enumerate(img.iterrows()):
                axes[1].text(j * w + h / 2, h + h * 0.08, f"×{int(row['copies'])}\nd={row['mean_copy_dist']:.2f}",
                             ha="center", va="top", fontsize=7)
        axes[1].set_axis_off()
        axes[1].set_title("most-copied training images (×: samples that copy it; d: their mean L2 to it)",
                          fontsize=9)
        im = res.images
        seen = im["first_copy_step"].notna()
        axes[2].scatter(im.loc[seen, "isolation"], im.loc[seen, "first_copy_step"], s=14, color="C3",
                        label="copied (first step)")
        if (~seen).any():
            top_y = np.nanmax(im["first_copy_step"]) if seen.any() else res.last_step
            axes[2].scatter(im.loc[~seen, "isolation"], np.full((~seen).sum(), top_y * 1.6), s=14, marker="x",
                            color="0.4", label="never copied (drawn above)")
        axes[2].set_yscale("log")
        plain_log_ticks(axes[2].yaxis)
        axes[2].set_xlabel("isolation: L2 to its nearest other train image", fontsize=8)
        axes[2].set_ylabel("first step with a copy", fontsize=8)
        axes[2].legend(fontsize=7)
        axes[2].grid(True, alpha=0.3)
    fig.suptitle(f"{title}which training images are copied (1/3 rule) at the last evaluation{_fixed_text(fixed)}",
                 fontsize=11)
    return save(fig, path)


def disjoint_figure(table: list[dict], shown: dict, path: Path, title: str = "") -> Path | None:
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
        ax.set_xticks(ns, [fmt_value(n) for n in ns])
        ax.minorticks_off()
        ax.set_xlabel(_label("n"))
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
            canvas[:h, j * (h + 1):j * (h + 1) + h] = _gray(a[j])
            canvas[h + 1:, j * (h + 1):j * (h + 1) + h] = _gray(b[j])
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([h / 2, 1.5 * h + 1], [f"offset {r['offset_a']}", f"offset {r['offset_b']}"], fontsize=7)
        ax.set_title(f"n = {n}: samples from the same noise and label (top: one training subset, bottom: the other)",
                     fontsize=8)
    top.suptitle(f"{title}disjoint-subsets test: do two models trained on disjoint sets generate the same images?",
                 fontsize=11)
    return save(fig, path)
