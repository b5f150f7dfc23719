"""Kernel inception distance (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimate of the
squared maximum mean discrepancy between two feature sets under the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over random subsets. Unlike the Fréchet distance it has no bias at small
sample counts, which is where memorization happens (n of 16 to 1,024 training images).

torchmetrics' KernelInceptionDistance computes it; memsweep's feature spaces (and their cached reference
features) supply the features, handed to it through an identity "extractor" (Precomputed)."""
from __future__ import annotations

import warnings

import torch

from memsweep import lazy


class Precomputed(torch.nn.Identity):
    """The `feature` extractor of torchmetrics' image metrics for features computed already: `update`
    receives the features and passes them through."""


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """KID between feature sets `real` and `fake` (N x d): mean and standard deviation over `subsets` random
    subsets of min(subset_size, N_real, N_fake) rows each (one subset of all rows when both sets are
    smaller: the plain unbiased MMD^2). The subsets come from `seed`, never from the global random stream a
    run trains with."""
    # loaded here (memsweep.lazy): torchmetrics' image metrics take ~2 s to import after torch, which every
    # evaluation module's import would pay; only runs with eval.kid_features need them
    KernelInceptionDistance = lazy.load("torchmetrics.image.kid").KernelInceptionDistance

    size = min(int(subset_size), len(real), len(fake))
    with warnings.catch_warnings():  # that it keeps the features: they are what we hand it
        warnings.filterwarnings("ignore", message=".*will save all extracted features")
        metric = KernelInceptionDistance(feature=Precomputed(), subsets=int(subsets), subset_size=size)
    metric.update(real.flatten(1).double().cpu(), real=True)  # float64: the cubic kernel's sums cancel
    metric.update(fake.flatten(1).double().cpu(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)
