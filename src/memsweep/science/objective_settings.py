"""A run's objective block and the rules its settings obey together, without torch: config.validate checks a
composed run with them, so commands that only read (`--cfg job`, a planned dry run) load no tensor library;
science.objective builds the formulation they describe.

A run stored before the objective group existed has no objective block and is rectified flow (store.identity
leaves the run id alone at the default block).
"""
from __future__ import annotations

import math

from memsweep.errors import ConfigError

DEFAULT = "rectified_flow"
TARGETS = ("velocity", "closed_form")   # rectified flow's regression target (objective.target)
SAMPLERS = {"rectified_flow": ("euler", "heun"),            # the values eval.sampler may take, per objective
            "vp": ("ddpm", "ddim", "ddim_bonnaire"),
            "edm": ("heun",)}

# The samplers start from pure noise (N(0, I), or sigma_max N(0, I) for EDM), which is the law of x at t = 0
# only when the data are drowned there: at most this SNR (unit-variance data), where the data's amplitude is a
# tenth of the noise's. Ho et al.'s schedule has 4e-5 at t = 0, Karras et al.'s 1.6e-4.
START_SNR = 1e-2


def block(cfg) -> dict:
    """A run's objective block as a plain dict ({"name": "rectified_flow"} when the config has none)."""
    block = cfg.get("objective") if hasattr(cfg, "get") else None
    out = dict(block) if block else {}
    out.setdefault("name", DEFAULT)
    return out


def trains_on_closed_form(cfg) -> bool:
    """Whether the run regresses onto the empirical optimal velocity over its own training set (objective.target)."""
    return block(cfg).get("target", "velocity") == "closed_form"


def linear_betas(beta_start: float, beta_end: float, timesteps: int) -> list[float]:
    """beta_1 .. beta_T of VP's linear schedule (Ho et al. 2020, section 4), from beta_start to beta_end."""
    T = int(timesteps)
    step = (float(beta_end) - float(beta_start)) / (T - 1) if T > 1 else 0.0
    return [float(beta_start) + k * step for k in range(T)]


def check(cfg) -> None:
    """Refuse (ConfigError, one line naming the setting) what the run's formulation cannot use: an unknown
    objective or target, a sampler of another objective, settings that contradict each other, or a number of
    sampler steps its sampler cannot take."""
    settings = block(cfg)
    name, target = str(settings["name"]), str(settings.get("target", "velocity"))
    if name not in SAMPLERS:
        raise ConfigError(f"objective={name}: unknown objective (choose from: {', '.join(SAMPLERS)})")
    if name == DEFAULT and target not in TARGETS:
        raise ConfigError(f"objective.target={target}: use {' or '.join(TARGETS)}")
    if name != DEFAULT and target != "velocity":
        raise ConfigError(f"objective.target={target}: only rectified flow has another target")
    sampler, steps = str(cfg.eval.sampler), int(cfg.eval.sampler_steps)
    problem = sampler_problem(name, sampler) or {"vp": _vp_problem, "edm": _edm_problem}.get(
        name, lambda s, sampler, steps: None)(settings, sampler, steps)
    if problem:
        raise ConfigError(problem)


def sampler_problem(name: str, sampler: str) -> str | None:
    """Why objective `name` cannot sample with `sampler` (None: it can)."""
    if sampler in SAMPLERS[name]:
        return None
    return f"eval.sampler={sampler}: objective {name} samples with {' or '.join(SAMPLERS[name])}"


def _vp_problem(s: dict, sampler: str, steps: int) -> str | None:
    """Each beta_k is in (0, 1) (the schema: 1 - beta_k is the signal kept at step k), and here: the betas
    increase (the linear schedule of Ho et al. 2020, section 4, from beta_start to beta_end; a constant one is
    allowed), the chain ends in noise (alpha_bar_T small enough that sampling may start from N(0, I)), and the
    sampler's steps are steps of the chain (at most T; ddim_bonnaire's last state costs no network evaluation,
    so it needs 2)."""
    start, end, T = float(s["beta_start"]), float(s["beta_end"]), int(s["timesteps"])
    if start > end:
        return (f"objective.beta_start={start:g}: above objective.beta_end={end:g} "
                "(the betas increase linearly from beta_start to beta_end, Ho et al. 2020)")
    a = math.prod(1 - b for b in linear_betas(start, end, T))   # alpha_bar_T, where sampling starts
    if a / (1 - a) > START_SNR:
        return (f"objective.beta_end={end:g} with objective.timesteps={T}: the chain ends "
                f"at alpha_bar_T = {a:.3g}, SNR {a / (1 - a):.3g}, but sampling starts from pure noise "
                f"(needs SNR <= {START_SNR:g}: raise beta_end or timesteps)")
    if steps > T:
        return (f"eval.sampler_steps={steps}: more than objective.timesteps={T} (the sampler "
                "visits steps of the T-step chain)")
    if sampler == "ddim_bonnaire" and steps < 2:
        return (f"eval.sampler_steps={steps}: ddim_bonnaire needs at least 2 (its last state, k = 1, "
                "is not denoised: 1 step would return the noise)")
    return None


def _edm_problem(s: dict, sampler: str, steps: int) -> str | None:
    """The noise range runs down from sigma_max to sigma_min (EDM.t_of divides by their difference), sampling
    starts from noise that drowns the data (sigma_max: SNR 1 / sigma_max^2 at most START_SNR), and the training
    noise levels' median exp(P_mean) lies in the range (training sigmas are clamped to it: outside, most would
    sit at one end)."""
    lo, hi, p_mean = float(s["sigma_min"]), float(s["sigma_max"]), float(s["p_mean"])
    if not lo < hi:
        return (f"objective.sigma_min={lo:g}: must be below objective.sigma_max={hi:g} "
                "(the sampler's schedule runs from sigma_max down to sigma_min)")
    if hi ** -2 > START_SNR:
        return (f"objective.sigma_max={hi:g}: sampling starts from pure noise at sigma_max, "
                f"SNR 1/sigma_max^2 = {hi ** -2:.3g} (needs <= {START_SNR:g}: sigma_max >= {START_SNR ** -0.5:g})")
    median = math.exp(p_mean)
    if not lo <= median <= hi:
        return (f"objective.p_mean={p_mean:g}: the median training noise level exp(p_mean) = "
                f"{median:.3g} is outside [objective.sigma_min, objective.sigma_max] = "
                f"[{lo:g}, {hi:g}], to which training sigmas are clamped")
    return None
