"""Which runs train together in one process (train.packed, whose docstring says what a pack is): their pack key,
and the packs a list of runs makes, without torch (a dry run prints them).
"""
from __future__ import annotations

import heapq
import json
import math

from omegaconf import OmegaConf

from memsweep.data.sources import model_classes
from memsweep.science.network_spec import is_target
from memsweep.science.objective_settings import block, trains_on_closed_form


def pack_key(cfg) -> str | None:
    """Runs with equal keys can be trained in one pack; None: this run trains alone."""
    if is_target(cfg.model):
        return None   # a network named by _target_ (science.networks): only memsweep's U-Net builds K copies as one
    if float(cfg.model.get("dropout") or 0.0) > 0 or trains_on_closed_form(cfg):
        return None   # the closed-form target is over one run's own training set
    return json.dumps({"model": OmegaConf.to_container(cfg.model, resolve=True),
                       "objective": block(cfg),
                       "image": [cfg.data.image_size, cfg.data.channels, model_classes(cfg.data)],
                       "batch_size": cfg.train.batch_size, "dtype": cfg.train.dtype, "device": str(cfg.runtime.device),
                       "compile": cfg.runtime.compile, "fused_adam": cfg.runtime.fused_adam}, sort_keys=True)


def make_packs(cfgs, size: int, workers: int) -> list[list]:
    """Group configs into packs of at most `size` runs with equal `pack_key`, balanced by training steps over
    at least `workers` packs (longest run first into the pack with the fewest steps), longest pack first."""
    steps = {id(cfg): cfg.train.total_steps for cfg in cfgs}  # read once: a config's attributes are slow to get
    packs, groups = [], {}
    for cfg in cfgs:
        key = pack_key(cfg) if size > 1 else None
        if key is None:
            packs.append([cfg])
        else:
            groups.setdefault(key, []).append(cfg)
    for members in groups.values():
        bins = [[] for _ in range(max(min(workers, len(members)), math.ceil(len(members) / size)))]
        open_bins = [(0, i) for i in range(len(bins))]  # a heap of (steps, index): the fewest steps, first on ties
        for cfg in sorted(members, key=lambda c: -steps[id(c)]):
            total, i = heapq.heappop(open_bins)
            bins[i].append(cfg)
            if len(bins[i]) < size:
                heapq.heappush(open_bins, (total + steps[id(cfg)], i))
        packs += bins
    return sorted(packs, key=lambda p: -sum(steps[id(c)] for c in p))
