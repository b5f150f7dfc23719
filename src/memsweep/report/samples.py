"""Metrics computed at report time from what each evaluation saved (samples/step_*.npz) and the run's data:
novelty (authenticity, precision/recall, NN-ratio distribution) at every evaluation, and which training images
the last evaluation's samples copy.

Why at report time rather than during training: the samples are saved anyway, so this costs the training
nothing, runs trained before these metrics existed get them too, and their definitions (k, splits, bins) can
change without retraining. The samples are 8-bit quantized, as saved; mem_ratio recomputed from them is kept
beside the logged one as a check.
"""
from __future__ import annotations

import logging
from pathlib import Path
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from memsweep.metrics.memorization import MEM_THRESHOLD
from memsweep.report import copies as copies_mod
from memsweep.data import datasets as data_mod
from memsweep.metrics.novelty import novelty_row
from memsweep.store.cache import Cache
from memsweep.store.run import RunStore

log = logging.getLogger(__name__)

NOVELTY_COLUMNS = ("authenticity", "precision_test", "recall_test", "precision_train", "recall_train")


@dataclass
class SampleAnalysis:
    novelty: pd.DataFrame          # one row per saved evaluation: step, novelty_row(...) columns
    images: pd.DataFrame           # copies per training image at the last evaluation, with first_copy_step
    classes: pd.DataFrame          # copies per class at the last evaluation
    train_x: torch.Tensor          # the run's training images (for the figure of the most-copied ones)
    last_step: int


def saved_steps(run_dir) -> list[int]:
    return RunStore(run_dir).steps("samples")


def _load_data(cfg, cache: dict, run_dir):
    key = repr(sorted((k, str(v)) for k, v in cfg.data.items()))
    if key not in cache:  # data=folder / npz: decoded images from the store's cache (<root>/cache)
        cache[key] = data_mod.load(cfg.data, Cache(Path(run_dir).parent.parent / "cache"))
    return cache[key]


def analyze_samples(run_dir, cache: dict | None = None) -> SampleAnalysis | None:
    """None if the run saved no samples (eval.save_samples=false, or not evaluated yet)."""
    steps = saved_steps(run_dir)
    if not steps:
        return None
    store = RunStore(run_dir)
    cfg = store.read_config()
    data = _load_data(cfg, {} if cache is None else cache, run_dir)
    threshold = float(cfg.eval.get("mem_threshold", MEM_THRESHOLD))
    rows, counts, refs = [], {}, {}
    for step in steps:
        samples, labels = store.load_samples(step)
        rows.append({"step": step, **novelty_row(samples, data.train_x, data.test_x, threshold, cache=refs)})
        target, _ = copies_mod.copy_assignments(samples, data.train_x, threshold)
        counts[step] = np.bincount(target[target >= 0], minlength=len(data.train_x))
    novelty = pd.DataFrame(rows).rename(columns={"mem_ratio": "mem_ratio_saved"})
    images = copies_mod.per_image(samples, data.train_x, data.train_y, threshold)
    images["first_copy_step"] = copies_mod.first_copy_steps(counts)
    images["dataset_index"] = images["index"] + int(cfg.data.offset)
    classes = copies_mod.per_class(images, labels.numpy(), target >= 0)
    return SampleAnalysis(novelty, images, classes, data.train_x, steps[-1])


def final_columns(result: SampleAnalysis | None) -> dict:
    """Summary columns: the novelty metrics at the last saved evaluation (NaN without saved samples)."""
    if result is None:
        return {f"final_{c}": np.nan for c in NOVELTY_COLUMNS}
    last = result.novelty.iloc[-1]
    return {f"final_{c}": float(last[c]) if c in last and pd.notna(last[c]) else np.nan for c in NOVELTY_COLUMNS}
