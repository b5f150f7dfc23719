"""Novelty beside fidelity, from generated samples and the real images (pixel L2 here, like mem_ratio).

- authenticity (Alaa et al. 2022): a generated sample g is authentic unless it is closer to its nearest
  training image x* than x* is to its own nearest other training image; the fraction of authentic samples.
- improved precision and recall (Kynkäänniemi et al. 2019): the real (generated) manifold is the union of the
  balls around each real (generated) point with the radius of its k-th nearest neighbour in its own set
  (k = 3); precision is the fraction of generated samples inside the real manifold, recall the fraction of
  real images inside the generated one.
- the nearest-neighbour distance ratio ||g - NN1|| / ||g - NN2|| of each sample to the training set, whose
  fraction below 1/3 is mem_ratio: its whole distribution separates copies (near 0) from new images (near 1).

Every distance goes through metrics.scan's blocked passes: one pass of the samples against the training set
gives the ratio, authenticity, the copies and precision/recall against it; the radii of the real sets depend
only on the data and are computed once (reference_radii), those of the samples once per evaluation.
"""
from __future__ import annotations

import torch

from memsweep.metrics.memorization import MEM_THRESHOLD, is_copy, nearest_neighbours, ratio_of
from memsweep.metrics.scan import scan, self_knn

PR_K = 3


def authenticity(samples: torch.Tensor, train: torch.Tensor, train_nn: torch.Tensor | None = None,
                 nn: tuple | None = None) -> float:
    """Fraction of samples farther from their nearest training image than that image is from its nearest
    other training image (needs at least two training images). `train_nn`: those distances, and `nn`: the
    samples' nearest_neighbours in train (any k), if known."""
    d, idx = nn if nn is not None else nearest_neighbours(samples, train, k=1)
    if train_nn is None:
        train_nn = knn_radii(train, 1)
    return (d[:, 0] > train_nn.to(d.device)[idx[:, 0]]).float().mean().item()


def knn_radii(points: torch.Tensor, k: int = PR_K, device="cpu") -> torch.Tensor:
    """Distance of each point to its k-th nearest other point of the same set."""
    d, _ = self_knn(points, k, device)       # the point itself is its own nearest
    return d[:, k]


def reference_radii(train: torch.Tensor, test: torch.Tensor, device="cpu") -> dict:
    """What novelty needs from the real images alone, from one self-search per set: train_radii's and the
    test split's k-NN radii of precision/recall ("test", None with k or fewer images)."""
    return {**train_radii(train, device), "test": test_radii(test, device)}


def train_radii(train: torch.Tensor, device="cpu") -> dict:
    """train_nn (each training image's distance to its nearest other one: authenticity, and the isolation of
    report.copies) and "train", its k-NN radius of precision/recall (None with k or fewer images)."""
    d, _ = self_knn(train, min(PR_K, len(train) - 1), device)
    return {"train_nn": d[:, 1].cpu(), "train": d[:, PR_K].cpu() if len(train) > PR_K else None}


def test_radii(test: torch.Tensor, device="cpu") -> torch.Tensor | None:
    """The test split's k-NN radii of precision/recall (None with k or fewer images)."""
    return knn_radii(test, PR_K, device).cpu() if len(test) > PR_K else None


def precision_recall(samples: torch.Tensor, real: torch.Tensor, k: int = PR_K, real_radii: torch.Tensor | None = None,
                     device="cpu", sample_radii: torch.Tensor | None = None) -> tuple[float, float]:
    """Improved precision and recall with k nearest neighbours (needs more than k points in each set).
    `real_radii`: knn_radii(real, k), if known (it does not change across evaluations)."""
    if len(samples) <= k or len(real) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} points in each set")
    real_radii = knn_radii(real, k, device) if real_radii is None else real_radii
    sample_radii = knn_radii(samples, k, device) if sample_radii is None else sample_radii
    s = scan(samples, real, 0, real_radii, sample_radii, device)
    return s.query_inside.float().mean().item(), s.ref_inside.float().mean().item()


def evaluation_stats(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor, refs: dict,
                     threshold: float = MEM_THRESHOLD, bins: int = 20, device="cpu") -> tuple[dict, dict]:
    """The novelty row of one evaluation and its copy assignments (report.copies), from one blocked pass of
    the samples against the training set and one against the test split. `refs`: reference_radii(train,
    test). Returns (row, {"target": training image each sample copies or -1, "dist": distance to its NN})."""
    pr = len(samples) > PR_K
    s_radii = knn_radii(samples, PR_K, device) if pr else None
    tr = scan(samples, train, 2, refs["train"] if pr else None, s_radii if refs["train"] is not None else None,
              device)
    ratio = ratio_of(tr.dist)
    row = {"mem_ratio": is_copy(tr.dist, threshold).float().mean().item(),
           "authenticity": authenticity(samples, train, refs["train_nn"], (tr.dist, tr.index)),
           "nn_ratio_hist": torch.histc(ratio.clamp(0, 1), bins=bins, min=0, max=1).div(len(ratio)).tolist()}
    if pr and refs["test"] is not None:
        te = scan(samples, test, 0, refs["test"], s_radii, device)
        row["precision_test"], row["recall_test"] = _fractions(te)
    if pr and refs["train"] is not None:
        row["precision_train"], row["recall_train"] = _fractions(tr)
    copied = is_copy(tr.dist, threshold)
    return row, {"target": torch.where(copied, tr.index[:, 0], -1).cpu().numpy(),
                 "dist": tr.dist[:, 0].cpu().numpy()}


def _fractions(s) -> tuple[float, float]:
    return s.query_inside.float().mean().item(), s.ref_inside.float().mean().item()


def novelty_row(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor, threshold: float = MEM_THRESHOLD,
                bins: int = 20, cache: dict | None = None, device="cpu") -> dict:
    """The novelty metrics of one evaluation; precision/recall against the test split (the data
    distribution) and against the training set (what the model saw), when each has more than k images.
    `cache` (a dict kept across the evaluations of a run) holds what depends only on the real images."""
    cache = {} if cache is None else cache
    if "train_nn" not in cache:
        cache.update(reference_radii(train, test, device))
    return evaluation_stats(samples, train, test, cache, threshold, bins, device)[0]
