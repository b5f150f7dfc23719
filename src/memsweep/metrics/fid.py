"""The Frechet distance between Gaussian fits of two feature sets (FID when the features are Inception's).

The formula is clean-fid's `frechet_distance`, so numbers match the library the field reports with."""
from __future__ import annotations

import warnings

import numpy as np
import torch
from cleanfid.fid import frechet_distance as _cleanfid_frechet_distance


def gaussian_stats(features: torch.Tensor):
    f = features.flatten(1).double().cpu().numpy()
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(stats_a, stats_b) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's sqrtm(disp=...) deprecation inside clean-fid
        return float(_cleanfid_frechet_distance(stats_a[0], stats_a[1], stats_b[0], stats_b[1]))
