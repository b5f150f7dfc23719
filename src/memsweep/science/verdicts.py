"""A claim's verdict from a 95% confidence interval: agrees, disagrees or inconclusive, never written by hand.

Three kinds of claim (Marion & Wu 2026's, axis by axis):
- an exponent ("onset ∝ n", exponent 1): agrees when the interval holds the claimed exponent and excludes 0 (it
  tells the claim from no dependence at all); disagrees when it excludes the claimed exponent; else inconclusive;
- a direction ("larger models memorize sooner", sign -1): agrees when the interval lies on the claimed side of 0,
  disagrees when it lies on the other side, inconclusive when it holds 0;
- no effect ("the rate is essentially independent of B"), an equivalence test with a stated margin (two one-sided
  tests at 95% read off the same interval): agrees when the interval lies within (-margin, margin), disagrees when
  it lies wholly outside it, inconclusive otherwise. A fraction claimed to be large (double descent in most runs)
  is a direction about 1/2.
"""
from __future__ import annotations

import math

AGREES, DISAGREES, INCONCLUSIVE = "agrees", "disagrees", "inconclusive"


def _finite(*values) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def exponent_verdict(lo: float, hi: float, claimed: float) -> str:
    """The claimed exponent against the interval [lo, hi]."""
    if not _finite(lo, hi):
        return INCONCLUSIVE
    if not lo <= claimed <= hi:
        return DISAGREES
    return AGREES if not lo <= 0 <= hi else INCONCLUSIVE


def sign_verdict(lo: float, hi: float, sign: int, about: float = 0.0) -> str:
    """A claimed direction (sign +1: above `about`, -1: below) against the interval [lo, hi]."""
    if not _finite(lo, hi):
        return INCONCLUSIVE
    if lo > about:
        return AGREES if sign > 0 else DISAGREES
    if hi < about:
        return AGREES if sign < 0 else DISAGREES
    return INCONCLUSIVE


def equivalence_verdict(lo: float, hi: float, margin: float) -> str:
    """A claimed absence of effect (within ±margin) against the interval [lo, hi]."""
    if not _finite(lo, hi):
        return INCONCLUSIVE
    if -margin < lo and hi < margin:
        return AGREES
    if lo >= margin or hi <= -margin:
        return DISAGREES
    return INCONCLUSIVE


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a fraction (Wilson 1927): sound at small counts and at 0 or 1."""
    if trials <= 0:
        return float("nan"), float("nan")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)
