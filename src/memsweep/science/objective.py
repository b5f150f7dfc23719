"""The formulations by name, and the one a run's config asks for (its `objective` group).

This is the one place that reads a config's objective: objective.name and the formulation's settings
(configs/objective/*.yaml). A run stored before the group existed has no objective block and is rectified flow
(store.identity leaves the run id alone at the default block).
"""
from __future__ import annotations

from memsweep.errors import ConfigError
from memsweep.science.edm import EDM
from memsweep.science.formulation import Formulation
from memsweep.science.rectified_flow import EmpiricalTargetFlow, RectifiedFlow
from memsweep.science.vp import VP

DEFAULT = "rectified_flow"
FORMULATIONS: dict[str, type[Formulation]] = {RectifiedFlow.name: RectifiedFlow, VP.name: VP, EDM.name: EDM}
TARGETS = ("velocity", "closed_form")   # rectified flow's regression target (objective.target)


def build(name: str, **settings) -> Formulation:
    if name not in FORMULATIONS:
        raise ConfigError(f"objective={name}: unknown objective (choose from: {', '.join(FORMULATIONS)})")
    try:
        return FORMULATIONS[name](**settings)
    except TypeError as e:
        raise ConfigError(f"objective={name}: {e}") from None


def block(cfg) -> dict:
    """A run's objective block as a plain dict ({"name": "rectified_flow"} when the config has none)."""
    block = cfg.get("objective") if hasattr(cfg, "get") else None
    out = dict(block) if block else {}
    out.setdefault("name", DEFAULT)
    return out


def of_config(cfg, data=None) -> Formulation:
    """The formulation of a run's config. With the run's data, the training objective: rectified flow with
    objective.target=closed_form regresses onto the empirical optimal velocity over data's training set
    (Bertrand et al. 2025); without, the formulation that evaluates and samples."""
    settings = block(cfg)
    name = str(settings.pop("name"))
    target = str(settings.pop("target", "velocity"))
    if name == RectifiedFlow.name and target not in TARGETS:
        raise ConfigError(f"objective.target={target}: use {' or '.join(TARGETS)}")
    if name != RectifiedFlow.name and target != "velocity":
        raise ConfigError(f"objective.target={target}: only rectified flow has another target")
    formulation = build(name, **settings)
    if data is not None and target == "closed_form":
        return EmpiricalTargetFlow(data.train_x, data.train_y)
    return formulation


def trains_on_closed_form(cfg) -> bool:
    return block(cfg).get("target", "velocity") == "closed_form"
