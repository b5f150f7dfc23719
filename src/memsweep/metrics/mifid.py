"""Memorization-informed FID (Bai et al. 2021, "On Training Sample Memorization: Lessons from Benchmarking
Generative Modeling with a Large-scale Competition"; Kaggle's "Generative Dog Images"): the Fréchet distance
divided by the memorization distance, the mean over generated samples of the minimum cosine distance
1 - |cos| to the training features, when that is below a threshold epsilon (0.1 in the competition) and
by 1 otherwise. A model that copies its training set has a memorization distance near 0 and a large MiFID.

torchmetrics' MemorizationInformedFrechetInceptionDistance computes it on features (metrics.kid.Precomputed).
Its `real` set is the one the minimum is taken for, each row's minimum over the other set (torchmetrics 1.9
`_compute_cosine_distance`): the generated samples go in as `real` so that the mean is over the samples, as
in the paper; the Fréchet distance is symmetric, so the swap leaves it unchanged."""
from __future__ import annotations

import warnings

import torch

from memsweep import lazy
from memsweep.metrics.kid import Precomputed

EPSILON = 0.1  # the competition's threshold, torchmetrics' default


def mifid(train: torch.Tensor, fake: torch.Tensor, epsilon: float = EPSILON) -> float:
    """MiFID of generated features `fake` against reference features `train` (N x d each)."""
    # loaded here (memsweep.lazy): torchmetrics' image metrics take ~2 s to import (metrics.kid)
    MemorizationInformedFrechetInceptionDistance = lazy.load(
        "torchmetrics.image.mifid").MemorizationInformedFrechetInceptionDistance

    with warnings.catch_warnings():  # that it keeps the features: they are what we hand it
        warnings.filterwarnings("ignore", message=".*will save all extracted features")
        metric = MemorizationInformedFrechetInceptionDistance(feature=Precomputed(), cosine_distance_eps=float(epsilon))
    metric.update(fake.flatten(1).double().cpu(), real=True)  # the samples: the mean is over them (see above)
    metric.update(train.flatten(1).double().cpu(), real=False)
    return float(metric.compute())
