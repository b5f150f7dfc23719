"""Which samples are memorized: per class and per training image.

A sample is a copy when it passes the 1/3 nearest-neighbour rule (mem_ratio's); it is a copy of its nearest
training image. Per training image: how many samples copy it, how far those copies are, and how isolated the
image is in its training set (distance to its nearest other training image: outliers are far); per class:
the fraction of the class's samples that are copies and of its training images that are copied at least once.
Over the evaluations of a run: the first step at which each image is copied (which go first).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from memsweep.metrics.memorization import MEM_THRESHOLD, is_copy, nearest_neighbours


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
