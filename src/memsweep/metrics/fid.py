"""The Frechet distance between Gaussian fits of two feature sets (FID when the features are Inception's).

The formula is clean-fid's `frechet_distance`, so numbers match the library the field reports with."""
from __future__ import annotations

import warnings

import numpy as np
import torch
from cleanfid.fid import frechet_distance as _cleanfid_frechet_distance


def gaussian_stats(features: torch.Tensor, chunk: int = 8192):
    """Mean and covariance (unbiased, like np.cov) in float64, accumulated over row chunks so that a large
    set (50,000 x 3,072 pixels) never needs a float64 copy of itself."""
    f = features.flatten(1)
    n = len(f)
    mu = torch.zeros(f.shape[1], dtype=torch.float64)
    for s in range(0, n, chunk):
        mu += f[s:s + chunk].double().cpu().sum(0)
    mu /= n
    cov = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64)
    for s in range(0, n, chunk):
        c = f[s:s + chunk].double().cpu() - mu
        cov += c.T @ c
    cov /= max(n - 1, 1)
    return mu.numpy(), cov.numpy()


def frechet_distance(stats_a, stats_b) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's sqrtm(disp=...) deprecation inside clean-fid
        return float(_cleanfid_frechet_distance(stats_a[0], stats_a[1], stats_b[0], stats_b[1]))
