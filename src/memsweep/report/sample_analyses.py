"""Metrics computed at report time from what each evaluation saved (samples/step_*.npz) and the run's data:
novelty (authenticity, precision/recall, NN-ratio distribution) at every evaluation, and which training images
the last evaluation's samples copy.

Why at report time rather than during training: the samples are saved anyway, so this costs the training
nothing, runs trained before these metrics existed get them too, and their definitions (k, splits, bins) can
change without retraining. The samples are 8-bit quantized, as saved; mem_ratio recomputed from them is kept
beside the logged one as a check.

Computed once: what an evaluation gives (its novelty row and copy assignments) is stored in the run
directory (run_dir/analysis/step_<N>.novelty[.max<M>].v<VERSION>.npz, store.analysis_cache), and so is what
the run's data gives (analysis/reference.v<VERSION>.npz: the real sets' k-NN radii, each training image's
isolation and label). A later report reads them and loads neither samples nor data; a sweep still training
computes only its new evaluations. VERSION is bumped with any change of the definitions (metrics.novelty,
report.copies), and a stored result whose inputs differ (a rewritten samples file, another threshold) is
computed again. At CIFAR-10 scale: on a GPU with --device cuda, in blocks either way (metrics.scan).
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from memsweep.data import datasets
from memsweep.metrics.memorization import MEM_THRESHOLD
from memsweep.metrics.novelty import PR_K, evaluation_stats, test_radii, train_radii
from memsweep.report import copies
from memsweep.store import analysis_cache
from memsweep.store.cache import Cache, tensor_hash
from memsweep.store.run import RunStore
from memsweep.threads import threads_for, torch_threads

NOVELTY_COLUMNS = ("authenticity", "precision_test", "recall_test", "precision_train", "recall_train")
VERSION = 1      # of the stored results: bump when novelty's or the copies' definitions change
ROW_ORDER = ("step", "mem_ratio", "authenticity", "nn_ratio_hist", "precision_test", "recall_test",
             "precision_train", "recall_train")   # novelty_row's, whether computed or read back (keys sorted)
BINS = 20        # of the NN-ratio histogram
TOP_IMAGES = 32  # most-copied training images stored with each evaluation (copies.figure shows 8)
COMPUTED: Counter = Counter()   # what this process computed ("evaluation", "reference", "data"): for the tests


@dataclass
class SampleAnalysis:
    novelty: pd.DataFrame          # one row per saved evaluation: step, novelty_row(...) columns
    images: pd.DataFrame           # copies per training image at the last evaluation, with first_copy_step
    classes: pd.DataFrame          # copies per class at the last evaluation
    train_x: "LazyImages"          # the run's training images (for the figure of the most-copied ones)
    last_step: int


def saved_steps(run_dir) -> list[int]:
    return RunStore(run_dir).steps("samples")


def _load_data(cfg, cache: dict, run_dir):
    key = repr(sorted((k, str(v)) for k, v in cfg.data.items()))
    if key not in cache:  # data=folder / npz: decoded images from the store's cache (<root>/cache)
        COMPUTED["data"] += 1
        cache[key] = datasets.load(cfg.data, Cache(Path(run_dir).parent.parent / "cache"))
    return cache[key]


class _RunInputs:
    """A run's data and reference radii, loaded (or computed) only when an analysis needs them. `cache` is
    shared by the runs of a report: data by config, radii by the content of the images."""

    def __init__(self, store: RunStore, cfg, cache: dict, device):
        self.store, self.cfg, self.cache, self.device = store, cfg, cache, torch.device(device)
        self._refs = None

    def data(self):
        d = _load_data(self.cfg, self.cache, self.store.dir)
        key = ("on", str(self.device), id(d))
        if key not in self.cache:   # moved to the device once per dataset, not once per pass
            self.cache[key] = (d.train_x.to(self.device), d.test_x.to(self.device))
        return d, *self.cache[key]

    def inputs(self) -> dict:
        return {"version": VERSION, "k": PR_K, "data": {k: str(v) for k, v in self.cfg.data.items()}}

    def refs(self) -> dict:
        """{train_nn, train, test} radii (None without enough images) and the training labels."""
        if self._refs is None:
            got = analysis_cache.read(self.store.dir, "reference", VERSION, self.inputs())
            self._refs = _unpack_refs(*got) if got else self._compute_refs()
        return self._refs

    def _compute_refs(self) -> dict:
        d, train, test = self.data()
        content = self._content(d)
        refs = {**self._radii(("train", content[0]), train_radii, train),
                "test": self._radii(("test", content[1]), test_radii, test), "train_y": d.train_y.cpu()}
        empty = np.zeros(0, np.float32)
        analysis_cache.write(self.store.dir, "reference", VERSION,
                             {k: empty if v is None else v.numpy() for k, v in refs.items()}, self.inputs(),
                             has={k: v is not None for k, v in refs.items()}, content=list(content))
        return refs

    def _content(self, d) -> tuple[str, str]:
        """The hashes of the training and test images, once per dataset."""
        key = ("content", id(d))
        if key not in self.cache:
            self.cache[key] = (tensor_hash(d.train_x), tensor_hash(d.test_x))
        return self.cache[key]

    def _radii(self, key: tuple, func, images):
        """One set's radii, by its content: computed once for the runs that share it (seeds share a training
        set, and every n the test split)."""
        if key not in self.cache:
            COMPUTED["reference"] += 1
            with torch_threads(threads_for(images.numel())):
                self.cache[key] = func(images, self.device)
        return self.cache[key]


def _unpack_refs(arrays: dict, meta: dict) -> dict:
    return {k: torch.from_numpy(v) if meta["has"][k] else None for k, v in arrays.items()}


class LazyImages:
    """The run's training images for the figures: the most copied ones come from the stored analysis (so a
    report that reads stored results loads no data), any other loads the data on first use."""

    def __init__(self, inputs: _RunInputs, index=(), images=()):
        self.inputs = inputs
        self.stored = {int(i): x for i, x in zip(index, images)}

    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)) and int(i) in self.stored:   # as data.datasets makes them from uint8
            return torch.from_numpy(self.stored[int(i)]).float() / 127.5 - 1.0
        return self.inputs.data()[0].train_x[i]

    def fingerprint_parts(self):
        """What these images are (report.figure_cache): the stored ones and the data's settings."""
        return [sorted(self.stored.items()), self.inputs.inputs()]


def _evaluation(inputs: _RunInputs, step: int, threshold: float, max_samples: int | None) -> dict:
    """The stored analysis of one evaluation, computed (and stored) if missing or stale."""
    name = f"step_{step:09d}.novelty" + (f".max{max_samples}" if max_samples is not None else "")  # both kept
    expect = {**inputs.inputs(), "samples": analysis_cache.stamp(inputs.store.samples_dir / f"step_{step:09d}.npz"),
              "threshold": threshold, "bins": BINS, "max_samples": max_samples}
    got = analysis_cache.read(inputs.store.dir, name, VERSION, expect)
    if got is not None:
        arrays, meta = got
        return {"row": meta["row"], **arrays}
    samples, labels = inputs.store.load_samples(step)
    if max_samples is not None:     # the first max_samples: the same subset at every report
        samples, labels = samples[:max_samples], labels[:max_samples]
    _, train, test = inputs.data()
    refs = inputs.refs()
    COMPUTED["evaluation"] += 1
    with torch_threads(threads_for(train.numel())):
        row, assigned = evaluation_stats(samples.to(inputs.device), train, test, refs, threshold, BINS, inputs.device)
    hist = np.asarray(row.pop("nn_ratio_hist"), float)
    top = _most_copied(assigned["target"], assigned["dist"], len(train))
    arrays = {"target": assigned["target"].astype(np.int64), "dist": assigned["dist"], "labels": labels.numpy(),
              "hist": hist, "top_index": top,
              "top_images": ((train[torch.from_numpy(top).to(train.device)].cpu() + 1) * 127.5).round().to(
                  torch.uint8).numpy()}
    analysis_cache.write(inputs.store.dir, name, VERSION, arrays, expect, row=row, samples_used=len(samples))
    return {"row": row, **arrays}


def _most_copied(target: np.ndarray, dist: np.ndarray, n: int, top: int = TOP_IMAGES) -> np.ndarray:
    """Indices of the training images with the most copies (then the closest copies), as copies.figure ranks."""
    img = copies.per_image_from(target, dist, np.zeros(n), np.zeros(n))
    img = img[img["copies"] > 0].sort_values(["copies", "mean_copy_dist"], ascending=[False, True])
    return img["index"].to_numpy(np.int64, copy=True)[:top]


def analyze_samples(run_dir, cache: dict | None = None, device="cpu", max_samples: int | None = None,
                    progress=None) -> SampleAnalysis | None:
    """None if the run saved no samples (eval.save_samples=false, or not evaluated yet). `max_samples`: use
    only the first that many samples of each evaluation; `progress`: a tqdm bar advanced per evaluation."""
    steps = saved_steps(run_dir)
    if not steps:
        return None
    store = RunStore(run_dir)
    cfg = store.read_config()
    inputs = _RunInputs(store, cfg, {} if cache is None else cache, device)
    threshold = float(cfg.eval.get("mem_threshold", MEM_THRESHOLD))
    evals = {}
    for step in steps:
        if progress is not None:
            progress.set_postfix_str(f"{store.run_id} step {step}", refresh=False)
        evals[step] = _evaluation(inputs, step, threshold, max_samples)
        if progress is not None:
            progress.update(1)
    return _assemble(evals, inputs, steps)


def _assemble(evals: dict, inputs: _RunInputs, steps: list[int]) -> SampleAnalysis:
    refs = inputs.refs()
    novelty = pd.DataFrame([{"step": s, **e["row"], "nn_ratio_hist": e["hist"].tolist()} for s, e in evals.items()])
    novelty = novelty[[c for c in ROW_ORDER if c in novelty] + [c for c in novelty if c not in ROW_ORDER]]
    novelty = novelty.rename(columns={"mem_ratio": "mem_ratio_saved"})
    n = len(refs["train_nn"])
    counts = {s: np.bincount(e["target"][e["target"] >= 0], minlength=n) for s, e in evals.items()}
    last = evals[steps[-1]]
    images = copies.per_image_from(last["target"], last["dist"], refs["train_nn"].numpy(),
                                       refs["train_y"].numpy())
    images["first_copy_step"] = copies.first_copy_steps(counts)
    images["dataset_index"] = images["index"] + int(inputs.cfg.data.offset)
    classes = copies.per_class(images, last["labels"], last["target"] >= 0)
    return SampleAnalysis(novelty, images, classes, LazyImages(inputs, last["top_index"], last["top_images"]),
                          steps[-1])


def progress_bar(run_dirs) -> tqdm:
    """One bar over every saved evaluation of the runs (off when stderr is not a terminal)."""
    total = sum(len(saved_steps(d)) for d in run_dirs)
    return tqdm(total=total, desc="sample analyses", unit="eval", leave=False,
                disable=total == 0 or not sys.stderr.isatty())


def final_columns(result: SampleAnalysis | None) -> dict:
    """Summary columns: the novelty metrics at the last saved evaluation (NaN without saved samples)."""
    if result is None:
        return {f"final_{c}": np.nan for c in NOVELTY_COLUMNS}
    last = result.novelty.iloc[-1]
    return {f"final_{c}": float(last[c]) if c in last and pd.notna(last[c]) else np.nan for c in NOVELTY_COLUMNS}
