"""Hybrid sampling (Bertrand et al. 2025, "On the closed-form of flow matching: generalization does not arise
from target stochasticity", the importance of small times): one field on t in [0, tau) (near noise), another on
[tau, 1]. With the closed-form memorizer first and the network after, tau = 0 is the network's own sampler and
tau = 1 the memorizer's; the tau at which samples become copies says when the network's decisions are made."""
from __future__ import annotations

import torch


def switch_at(tau: float, early, late):
    """The field early(x, t, labels) on rows with t < tau and late(x, t, labels) on the others (a batch of one
    time, as the sampler's, calls one of them)."""
    def field(x, t, labels):
        first = t < tau
        if bool(first.all()):
            return early(x, t, labels)
        if not bool(first.any()):
            return late(x, t, labels)
        out = torch.empty_like(x)
        out[first] = early(x[first], t[first], labels[first]).to(x.dtype)
        out[~first] = late(x[~first], t[~first], labels[~first]).to(x.dtype)
        return out
    return field
