"""Novelty beside fidelity, from generated samples and the real images (pixel L2 here, like mem_ratio).

- authenticity (Alaa et al. 2022): a generated sample g is authentic unless it is closer to its nearest
  training image x* than x* is to its own nearest other training image; the fraction of authentic samples.
- improved precision and recall (Kynkäänniemi et al. 2019): the real (generated) manifold is the union of the
  balls around each real (generated) point with the radius of its k-th nearest neighbour in its own set
  (k = 3); precision is the fraction of generated samples inside the real manifold, recall the fraction of
  real images inside the generated one.
- the nearest-neighbour distance ratio ||g - NN1|| / ||g - NN2|| of each sample to the training set, whose
  fraction below 1/3 is mem_ratio: its whole distribution separates copies (near 0) from new images (near 1).
"""
from __future__ import annotations

import torch

from memsweep.metrics.memorization import MEM_THRESHOLD, is_copy, nearest_neighbours, ratio_of

PR_K = 3


def authenticity(samples: torch.Tensor, train: torch.Tensor, train_nn: torch.Tensor | None = None,
                 nn: tuple | None = None) -> float:
    """Fraction of samples farther from their nearest training image than that image is from its nearest
    other training image (needs at least two training images). `train_nn`: those distances, and `nn`: the
    samples' nearest_neighbours in train (any k), if known."""
    d, idx = nn if nn is not None else nearest_neighbours(samples, train, k=1)
    if train_nn is None:
        train_nn = knn_radii(train, 1)
    return (d[:, 0] > train_nn[idx[:, 0]]).float().mean().item()


def knn_radii(points: torch.Tensor, k: int = PR_K) -> torch.Tensor:
    """Distance of each point to its k-th nearest other point of the same set."""
    d, _ = nearest_neighbours(points, points, k=k + 1)       # the point itself is its own nearest
    return d[:, k]


def _coverage(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int = 1024) -> float:
    """Fraction of queries inside at least one ball (centre, radius)."""
    q, c = queries.flatten(1).float(), centres.flatten(1).float()
    inside = []
    for start in range(0, len(q), block):
        d = torch.cdist(q[start:start + block], c)
        inside.append((d <= radii[None]).any(1))
    return torch.cat(inside).float().mean().item()


def precision_recall(samples: torch.Tensor, real: torch.Tensor, k: int = PR_K, real_radii: torch.Tensor | None = None
                     ) -> tuple[float, float]:
    """Improved precision and recall with k nearest neighbours (needs more than k points in each set).
    `real_radii`: knn_radii(real, k), if known (it does not change across evaluations)."""
    if len(samples) <= k or len(real) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} points in each set")
    if real_radii is None:
        real_radii = knn_radii(real, k)
    return (_coverage(samples, real, real_radii), _coverage(real, samples, knn_radii(samples, k)))


def novelty_row(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor, threshold: float = MEM_THRESHOLD,
                bins: int = 20, cache: dict | None = None) -> dict:
    """The novelty metrics of one evaluation; precision/recall against the test split (the data
    distribution) and against the training set (what the model saw), when each has more than k images.
    `cache` (a dict kept across the evaluations of a run) holds what depends only on the real images."""
    cache = {} if cache is None else cache
    if "train_nn" not in cache:
        cache.update(train_nn=knn_radii(train, 1), train=knn_radii(train, PR_K) if len(train) > PR_K else None,
                     test=knn_radii(test, PR_K) if len(test) > PR_K else None)
    nn = nearest_neighbours(samples, train, k=2)  # one search serves the ratio and authenticity
    ratio = ratio_of(nn[0])
    row = {"mem_ratio": is_copy(nn[0], threshold).float().mean().item(),
           "authenticity": authenticity(samples, train, cache["train_nn"], nn),
           "nn_ratio_hist": torch.histc(ratio.clamp(0, 1), bins=bins, min=0, max=1).div(len(ratio)).tolist()}
    for split, real in (("test", test), ("train", train)):
        if len(real) > PR_K and len(samples) > PR_K:
            row[f"precision_{split}"], row[f"recall_{split}"] = precision_recall(samples, real, PR_K, cache[split])
    return row
