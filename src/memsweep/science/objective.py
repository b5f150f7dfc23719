"""The formulations by name, and the one a run's config asks for (its `objective` group).

This is the one place that builds a config's formulation; its settings and the rules they obey together are
science.objective_settings (no torch: config.validate checks them when a run is composed).
"""
from __future__ import annotations

from memsweep.errors import ConfigError
from memsweep.science.edm import EDM
from memsweep.science.formulation import Formulation
from memsweep.science.objective_settings import block
from memsweep.science.rectified_flow import EmpiricalTargetFlow, RectifiedFlow
from memsweep.science.vp import VP

FORMULATIONS: dict[str, type[Formulation]] = {RectifiedFlow.name: RectifiedFlow, VP.name: VP, EDM.name: EDM}


def build(name: str, **settings) -> Formulation:
    if name not in FORMULATIONS:
        raise ConfigError(f"objective={name}: unknown objective (choose from: {', '.join(FORMULATIONS)})")
    try:
        return FORMULATIONS[name](**settings)
    except TypeError as e:
        raise ConfigError(f"objective={name}: {e}") from None


def of_config(cfg, data=None) -> Formulation:
    """The formulation of a run's config (checked when it was composed: objective_settings.check). With the
    run's data, the training objective: rectified flow with objective.target=closed_form regresses onto the
    empirical optimal velocity over data's training set (Bertrand et al. 2025); without, the formulation that
    evaluates and samples."""
    settings = block(cfg)
    name = str(settings.pop("name"))
    target = str(settings.pop("target", "velocity"))
    formulation = build(name, **settings)
    if data is not None and target == "closed_form":
        return EmpiricalTargetFlow(data.train_x, data.train_y)
    return formulation
