"""The Frechet distance between Gaussian fits of two feature sets (FID when the features are Inception's,
Heusel et al. 2017).

For Gaussians N(mu1, S1) and N(mu2, S2) it is (Dowson & Landau 1982)

    ||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2),

clean-fid's `frechet_distance` formula, so numbers match the library the field reports with (to a relative
1e-6). clean-fid takes scipy's sqrtm of the non-symmetric S1 S2; only its trace is needed, and that is the sum
of the square roots of the eigenvalues of S1 S2, which are those of the symmetric PSD matrix R^T S2 R for any
R with S1 = R R^T. So everything here is a symmetric eigendecomposition or an SVD, in float64, on the device
the statistics are on:

- full route: R = V diag(sqrt w) from S1 = V diag(w) V^T (R^T S2 R is similar to sqrt(S1) S2 sqrt(S1));
- low-rank routes, for a set of n < d samples: S = F^T F with F the n x d centred samples over sqrt(n - 1),
  so R = F1^T: tr sqrt(S1 S2) is the sum of the square roots of the eigenvalues of F1 S2 F1^T (one side has
  a factor), or of the singular values of C = F1 F2^T (both sides have one), i.e. of the square roots of the
  eigenvalues of C C^T or C^T C, the smaller. Exact, and cheaper: n x n, not d x d.

Rounding: a zero eigenvalue of a PSD matrix comes out as about +-1e-16 times the largest, and its square root
as about 1e-8 times the largest's. So where a matrix above is singular (a covariance of n <= d samples, or
F of rank n - 1 after centring) the value is exact to about 1e-8 relative, like clean-fid's sqrtm. An SVD of
C would have no such floor, but LAPACK's takes about 5 times as long as eigvalsh of C C^T (bench_fid.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch


class GaussianStats(tuple):
    """(mean, cov) of a feature set: unpacks and indexes as that pair; `factor` is the n x d matrix F of
    centred samples over sqrt(n - 1) (cov = F^T F) when there are fewer samples than dimensions, else None."""

    def __new__(cls, mean, cov, factor=None):
        self = super().__new__(cls, (mean, cov))
        self.factor = factor
        return self

    def __getnewargs__(self):  # so that copies and pickles keep the factor
        return (self[0], self[1], self.factor)


def gaussian_stats(features, chunk: int = 8192) -> GaussianStats:
    """Mean and covariance (unbiased, like np.cov) in float64 on the features' device, accumulated over row
    chunks so that a large set (50,000 x 3,072 pixels) never needs a float64 copy of itself. With fewer rows
    than columns, also the low-rank factor: a float64 centred copy, but smaller than the covariance. Tensors
    in, tensors out; numpy arrays in, numpy arrays out."""
    as_numpy = isinstance(features, np.ndarray)
    f = torch.as_tensor(features).flatten(1)
    n, d = f.shape
    mu = torch.zeros(d, dtype=torch.float64, device=f.device)
    for s in range(0, n, chunk):
        mu += f[s:s + chunk].double().sum(0)
    mu /= n
    if n < d:
        factor = _factor(f, mu, chunk)
        cov = factor.T @ factor
    else:
        factor, cov = None, _covariance(f, mu, chunk)
    if as_numpy:
        return GaussianStats(mu.numpy(), cov.numpy(), None if factor is None else factor.numpy())
    return GaussianStats(mu, cov, factor)


def _covariance(f: torch.Tensor, mu: torch.Tensor, chunk: int) -> torch.Tensor:
    cov = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64, device=f.device)
    for s in range(0, len(f), chunk):
        c = f[s:s + chunk].double() - mu
        cov += c.T @ c
    return cov / max(len(f) - 1, 1)


def _factor(f: torch.Tensor, mu: torch.Tensor, chunk: int) -> torch.Tensor:
    scale = 1.0 / math.sqrt(max(len(f) - 1, 1))
    return torch.cat([(f[s:s + chunk].double() - mu) * scale for s in range(0, len(f), chunk)])


def frechet_distance(stats_a, stats_b) -> float:
    """The Frechet distance between N(stats_a) and N(stats_b). Each is (mean, cov), numpy arrays or tensors
    (e.g. a GaussianStats, whose factor is used when it makes the trace cheaper). Computed in float64 on the
    GPU if any of them is there, else on the CPU.

    Non-finite statistics give nan (clean-fid gives nan, or raises scipy's LinAlgError). Where clean-fid's
    sqrtm meets a singular product it retries with eps * I added to both covariances; the eigendecompositions
    here need no such offset: rounding-level negative eigenvalues are clamped to 0 (_sqrt_clamped)."""
    device = _device_of(stats_a, stats_b)
    mu_a, cov_a, f_a = _unpack(stats_a, device)
    mu_b, cov_b, f_b = _unpack(stats_b, device)
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape:
        raise ValueError(f"statistics of different dimensions: {tuple(mu_a.shape)} and {tuple(mu_b.shape)}")
    if not all(t is None or torch.isfinite(t).all() for t in (mu_a, cov_a, f_a, mu_b, cov_b, f_b)):
        return float("nan")
    diff = mu_a - mu_b
    tr = _trace_sqrt_product(cov_a, f_a, cov_b, f_b)
    return float(diff @ diff + cov_a.trace() + cov_b.trace() - 2 * tr)


def _arrays(stats) -> list:
    return [stats[0], stats[1], getattr(stats, "factor", None)]


def _device_of(*stats) -> torch.device:
    for s in stats:
        for x in _arrays(s):
            if isinstance(x, torch.Tensor) and x.device.type != "cpu":
                return x.device
    return torch.device("cpu")


def _unpack(stats, device):
    return [None if x is None else torch.as_tensor(x).to(device=device, dtype=torch.float64)
            for x in _arrays(stats)]


def _trace_sqrt_product(cov_a, f_a, cov_b, f_b) -> torch.Tensor:
    """tr sqrt(S_a S_b), by the cheapest exact route the factors allow."""
    if f_a is not None and f_b is not None:
        c = f_a @ f_b.T
        return _sqrt_eigenvalue_sum(c @ c.T if len(f_a) <= len(f_b) else c.T @ c)
    if f_b is not None:  # tr sqrt(S_a S_b) = tr sqrt(S_b S_a)
        cov_a, f_a, cov_b = cov_b, f_b, cov_a
    if f_a is not None:
        return _sqrt_eigenvalue_sum(f_a @ cov_b @ f_a.T)
    w, v = torch.linalg.eigh(cov_a)
    r = v * _sqrt_clamped(w)  # S_a = R R^T
    return _sqrt_eigenvalue_sum(r.T @ cov_b @ r)


def _sqrt_eigenvalue_sum(m: torch.Tensor) -> torch.Tensor:
    """Sum of the square roots of the eigenvalues of a symmetric PSD matrix (symmetrized against rounding)."""
    return _sqrt_clamped(torch.linalg.eigvalsh((m + m.T) / 2)).sum()


def _sqrt_clamped(w: torch.Tensor) -> torch.Tensor:
    # The eigenvalues of a PSD matrix are >= 0; rounding makes those of a singular one slightly negative
    # (about -1e-16 times the largest). They are set to 0, their exact value, where clean-fid's sqrtm needs
    # eps * I added to the covariances.
    return w.clamp(min=0).sqrt()
