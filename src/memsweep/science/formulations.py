"""The formulations by name, and the one a run's config asks for.

A run reads train.formulation with .get(): no yaml sets it yet, so every run is rectified flow. Adding the key
to a config group would change every run id (store.identity), so whoever adds it must leave the id alone at
its default.
"""
from __future__ import annotations

from memsweep.errors import ConfigError
from memsweep.science.formulation import Formulation
from memsweep.science.rectified_flow import RectifiedFlow

DEFAULT = "rectified_flow"
FORMULATIONS: dict[str, type[Formulation]] = {RectifiedFlow.name: RectifiedFlow}


def build(name: str) -> Formulation:
    if name not in FORMULATIONS:
        raise ConfigError(f"train.formulation={name!r}: unknown (known: {', '.join(FORMULATIONS)})")
    return FORMULATIONS[name]()


def of_config(cfg) -> Formulation:
    """The formulation of a run's config: train.formulation, rectified flow when unset."""
    return build(str(cfg.train.get("formulation") or DEFAULT))
