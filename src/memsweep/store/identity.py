"""A run's identity: the hash of what defines its result, and where its directory is.

The run id is a contract with every existing run store: a change that gives an existing run's config another
id (a new key, a new default, another hash) would retrain every user's old sweeps. Keys added later must
leave the id alone at their default: the objective (added later) counts only when it is not the default
rectified flow, data.conditional only when false, model.resample only when not conv.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# What defines a run's result. Logging, launching, paths and runtime (device, threads, checkpoint cadence)
# do not, so changing them resumes the same run instead of starting a new one.
IDENTITY_KEYS = ("data", "model", "optim", "train", "eval", "seed")
# data=folder / data=npz stand in the id by data.fingerprint (their files' names and sizes, or the file's hash), so
# moving the data keeps the ids and other data get other ids.
# KID and MiFID (eval.kid_*, eval.mifid_*) came later: they only add keys to the rows (kid_<space>_*,
# mifid_<space>_*, with a non-default epsilon in the key) and change no other value, so, like inception_path
# (FID once the weights are at hand), turning them on for a run keeps its id, resumes it, and existing runs'
# ids stay what they were; `memsweep eval RUN kid` fills the rows written before. (kid_subsets and
# kid_subset_size change KID's variance over subsets, not what it estimates: it is unbiased.)
NOT_IDENTITY = {"data": ("root", "download", "path", "test_path"),
                "eval": ("inception_path", "save_samples", "save_weights", "grid_samples", "feature_cache", "nn_block",
                         "kid_features", "kid_subsets", "kid_subset_size", "mifid_features", "mifid_epsilon")}

# Settings added after run ids existed, and their defaults (configs/objective/rectified_flow.yaml, data.conditional,
# model.resample): at these values they are left out of the identity, so every older run keeps its id.
DEFAULT_OBJECTIVE = {"name": "rectified_flow", "target": "velocity"}
LATER_DEFAULTS = {"data": {"conditional": True}, "model": {"resample": "conv"}}


def identity(cfg) -> dict:
    ident = {k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig) else cfg[k]
             for k in IDENTITY_KEYS}
    for group, keys in NOT_IDENTITY.items():
        for key in keys:
            ident[group].pop(key, None)
    for group, defaults in LATER_DEFAULTS.items():
        for key, default in defaults.items():
            if ident[group].get(key, default) == default:
                ident[group].pop(key, None)
    objective = cfg.get("objective")
    if objective is not None:
        objective = OmegaConf.to_container(objective, resolve=True) if isinstance(objective, DictConfig) else objective
        if objective != DEFAULT_OBJECTIVE:
            ident["objective"] = objective
    return ident


def run_id(cfg) -> str:
    """A short hash of what defines the result: the same run asked for twice is the same directory."""
    blob = json.dumps(identity(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def output_root(cfg) -> Path:
    return Path(str(cfg.paths.output_root)).expanduser().resolve()


def run_path(root: Path, run_id: str) -> Path:
    """<output_root>/runs/<run_id>: a run's directory."""
    return Path(root) / "runs" / run_id


def sweep_dir(root: Path, name: str) -> Path:
    """<output_root>/sweeps/<name>: a sweep's record and report."""
    return Path(root) / "sweeps" / name


def run_dir(cfg) -> Path:
    return run_path(output_root(cfg), run_id(cfg))


