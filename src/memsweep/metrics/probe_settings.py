"""The probes' settings and the keys they write, without torch: a run config's optional `probes` section is
checked when the run is composed (config.validate) and `memsweep eval --els-*` parses them; metrics.probes runs
the probes.

Settings (a run config's optional `probes` section, +probes.KEY=VALUE; not part of the run id, absent from the
shipped configs): probes.hybrid_tau, probes.els (false: the report does not compute it), probes.els_patch (a
size, sizes per equal bin of t, or `calibrated`), probes.els_equivariant, probes.els_padding, probes.els_bank
(padded or interior), probes.els_calibration_sizes, probes.els_calibration_samples, probes.traj_seed.
"""
from __future__ import annotations

from dataclasses import dataclass

from memsweep.science.els_settings import CALIBRATION_SIZES, DEFAULT_PATCH, candidate_sizes

HYBRID_TAU = tuple(i / 10 for i in range(11))   # the hybrid probe's default grid of switching times (science.hybrid)
PROBES = ("hybrid", "els", "traj")
KEYS = {"hybrid": ("hybrid_tau", "hybrid_mem_ratio", "hybrid_dist"),
        "els": ("els_dist", "els_mem_dist", "els_mem_ratio", "els_patch"),
        "traj": ("traj_t", "traj_state", "traj_train", "traj_test")}
CALIBRATED = "calibrated"   # probes.els_patch: the size per sampler step calibrated against the network


@dataclass
class ProbeSettings:
    hybrid_tau: tuple = HYBRID_TAU
    els: bool = True
    els_patch: object = DEFAULT_PATCH
    els_equivariant: bool = True
    els_padding: str = "zeros"
    els_bank: str = "padded"     # memsweep's; "interior": Kamb & Ganguli's (science.els)
    els_calibration_sizes: tuple = CALIBRATION_SIZES
    els_calibration_samples: int = 20   # Kamb & Ganguli's nsamps: the first samples of the evaluation's noise
    traj_seed: int = 1           # the fresh noise of the noised training and test images (with eval.noise_seed)

    @classmethod
    def of_config(cls, cfg, **overrides) -> "ProbeSettings":
        """The run config's `probes` section, then `overrides` (memsweep eval's --els-* options, None: unset)."""
        p = dict(cfg.get("probes") or {}) if hasattr(cfg, "get") else {}
        p.update({k: v for k, v in overrides.items() if v is not None})
        out = cls(**{k: v for k, v in p.items() if k in cls.__dataclass_fields__})
        out.hybrid_tau = tuple(float(v) for v in out.hybrid_tau)
        out.els_patch = parse_patch(out.els_patch)
        out.els_calibration_sizes = tuple(int(v) for v in out.els_calibration_sizes)
        return out

    @property
    def calibrated(self) -> bool:
        return self.els_patch == CALIBRATED


def parse_patch(value):
    """probes.els_patch as given (a size, sizes per bin of t, `calibrated`, or their text from the command line)."""
    if isinstance(value, str):
        value = value.strip()
        if value == CALIBRATED:
            return value
        value = [int(v) for v in value.strip("[]()").split(",")] if "," in value else int(value)
    return int(value) if isinstance(value, (int, float)) else tuple(int(v) for v in value)


def settings_problem(settings: ProbeSettings, image_size: int | None) -> str | None:
    """What the ELS machine cannot do with these settings, naming the setting (None: nothing)."""
    if settings.els_bank == "interior" and not settings.els_equivariant:
        return ("probes.els_bank=interior: the LS machine (probes.els_equivariant=false) compares patches at the "
                "same pixel, which only the padded bank has")
    sizes = () if settings.calibrated else (settings.els_patch if isinstance(settings.els_patch, tuple)
                                            else (settings.els_patch,))
    if settings.els_bank == "interior" and image_size and any(k > int(image_size) for k in sizes):
        return (f"probes.els_patch={list(sizes) if len(sizes) > 1 else sizes[0]}: an interior patch "
                f"(probes.els_bank=interior) must fit in the {image_size}x{image_size} image")
    if settings.calibrated and image_size and not candidate_sizes(int(image_size), settings.els_bank,
                                                                  settings.els_calibration_sizes):
        return (f"probes.els_calibration_sizes={list(settings.els_calibration_sizes)}: none fits the "
                f"{image_size}x{image_size} image with probes.els_bank={settings.els_bank}")
    return None


def els_suffix(settings: ProbeSettings) -> str:
    """The key suffix of an ELS variant: "" (memsweep's padded bank, the schedule given), _interior (Kamb &
    Ganguli's bank), _calibrated (the size calibrated against the network), or both."""
    return ("_interior" if settings.els_bank == "interior" else "") + ("_calibrated" if settings.calibrated else "")


def probe_keys(probe: str, settings: ProbeSettings | None = None) -> tuple:
    """The keys a probe writes under `settings` (the ELS machine's depend on its variant)."""
    if probe != "els" or settings is None or not els_suffix(settings):
        return KEYS[probe]
    sfx = els_suffix(settings)
    return (f"els_dist{sfx}", "els_mem_dist", f"els_mem_ratio{sfx}", f"els_patch{sfx}")
