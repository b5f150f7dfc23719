"""Which samples are memorized: per class and per training image, computed (from the copy assignments of
report.sample_analyses' analyses), in the report's section and in copies_<axis>.png.

A sample is a copy when it passes the 1/3 nearest-neighbour rule (mem_ratio's); it is a copy of its nearest
training image. Per training image: how many samples copy it, how far those copies are, and how isolated the
image is in its training set (distance to its nearest other training image: outliers are far); per class:
the fraction of the class's samples that are copies and of its training images that are copied at least once.
Over the evaluations of a run: the first step at which each image is copied (which go first).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from memsweep.metrics.memorization import MEM_THRESHOLD, is_copy, nearest_neighbours
from memsweep.report.markdown import fmt
from memsweep.report.style import SHORT, fixed_text, image_array, plain_log_ticks, runs_with_results, save
from memsweep.report.summary import axes_text, axis_columns
from memsweep.science.fits import rank_correlation


def copy_assignments(samples, train, threshold: float = MEM_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """For each sample: the index of the training image it copies (-1 if not a copy) and its distance to it."""
    d, idx = nearest_neighbours(samples, train, k=2)
    copied = is_copy(d, threshold)
    return torch.where(copied, idx[:, 0], -1).cpu().numpy(), d[:, 0].cpu().numpy()


def per_image(samples, train_x, train_y, threshold: float = MEM_THRESHOLD) -> pd.DataFrame:
    """One row per training image: index, label, copies, mean_copy_dist (NaN without copies), isolation."""
    target, dist = copy_assignments(samples, train_x, threshold)
    own, _ = nearest_neighbours(train_x, train_x, k=2)
    return per_image_from(target, dist, own[:, 1].cpu().numpy(), train_y.cpu().numpy())


def per_image_from(target, dist, isolation, train_y) -> pd.DataFrame:
    """per_image from the copy assignments (copy_assignments' target and distance per sample) and each training
    image's isolation (distance to its nearest other training image) and label."""
    target, dist = np.asarray(target), np.asarray(dist, float)
    n = len(isolation)
    copied = target >= 0
    counts = np.bincount(target[copied], minlength=n)
    sums = np.bincount(target[copied], weights=dist[copied], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return pd.DataFrame({"index": np.arange(n), "label": np.asarray(train_y), "copies": counts,
                         "mean_copy_dist": mean, "isolation": np.asarray(isolation)})


def per_class(images: pd.DataFrame, sample_labels, samples_copied) -> pd.DataFrame:
    """One row per class: its training images, its samples, the fraction of its samples that are copies and
    of its training images copied at least once. `samples_copied` is a boolean per sample."""
    sl, sc = np.asarray(sample_labels), np.asarray(samples_copied, bool)
    rows = []
    for c in sorted(set(images["label"]) | set(sl.tolist())):
        imgs = images[images["label"] == c]
        mine = sl == c
        rows.append({"label": int(c), "train_images": len(imgs), "samples": int(mine.sum()),
                     "copied_samples": float(sc[mine].mean()) if mine.any() else np.nan,
                     "images_copied": float((imgs["copies"] > 0).mean()) if len(imgs) else np.nan})
    return pd.DataFrame(rows)


def first_copy_steps(copies_by_step: dict[int, np.ndarray]) -> np.ndarray:
    """First step at which each training image has at least one copy (NaN if never), from per-step counts."""
    steps = sorted(copies_by_step)
    first = np.full(len(copies_by_step[steps[0]]), np.nan)
    for s in steps:
        newly = np.isnan(first) & (copies_by_step[s] > 0)
        first[newly] = s
    return first


def section(ctx: dict, runs, summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """Which training images are copied, and whether outliers and rare classes go first."""
    L = []
    res = {k: v for k, v in ctx["results"].items() if v is not None}
    info = summary.set_index("run_id")
    axis_cols = axis_columns(summary, keys)
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
                L.append(f"- `{rid}` ({axes_text(info.loc[rid], axis_cols)}): "
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


def _spearman(x, y, positive: str, negative: str) -> str:
    """Spearman's rank correlation in words: `positive` / `negative` say what each sign means."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 4 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return "too few points to tell"
    rho, p = rank_correlation(x[ok], y[ok])
    verdict = (positive if rho > 0 else negative) if p < 0.05 else "no significant relation at the 5% level"
    return f"Spearman ρ = {rho:.2f} (p = {p:.2g}, {int(ok.sum())} points): {verdict}"


def figure(runs, summary, key, keys, path: Path, results: dict, max_runs: int = 3, top: int = 8) -> Path | None:
    """For a few runs whose last samples include copies: the most-copied training images (with how many
    samples copy each, and how far the copies are), the fraction copied per class, and when each training
    image was first copied against how isolated it is in the training set."""
    with_copies = {k: v for k, v in results.items() if v is not None and v.images["copies"].sum() > 0}
    col, fixed, picked, _, _ = runs_with_results(runs, summary, key, keys, with_copies, max_runs)
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
        axes[0].set_title(f"{SHORT.get(col, col)} = {fmt(v, setting=True)}, step {res.last_step}: per class", fontsize=9)
        strip = [image_array(res.train_x[i]) for i in img["index"]]
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
    fig.suptitle(f"which training images are copied (1/3 rule) at the last evaluation{fixed_text(fixed)}",
                 fontsize=11)
    return save(fig, path)
