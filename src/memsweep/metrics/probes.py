"""What the model learns before it memorizes: three probes of an evaluation's weights, from its fixed sample
noise and labels (metrics.fixed_inputs), each a few keys of the evaluation's metrics row.

  hybrid  (Bertrand et al. 2025) the closed-form memorizer on t < tau, the network after, for tau on a grid:
          hybrid_tau, hybrid_mem_ratio (the 1/3 rule on the hybrid samples), hybrid_dist (mean pixel L2 to the
          network's own samples), lists over the grid
  els     (Kamb & Ganguli 2025) samples of the equivariant local score machine from the same noise:
          els_dist (mean pixel L2 between the network's and the ELS machine's samples), els_mem_dist (the same
          to the closed-form memorizer's samples), els_mem_ratio (the ELS samples' own mem_ratio), els_patch;
          with Kamb & Ganguli's interior patch bank and/or the patch size calibrated against the network, the
          keys end in _interior, _calibrated (els_dist_interior_calibrated, ...; els_suffix), so every variant
          has its own keys in one row; calibrated: els_patch is the size per sampler time els_patch_t, and
          els_cos the mean cosine similarity of the scores at the chosen size
  traj    where the sampler's states go: traj_t (the sampler's times before each step), traj_state, traj_train,
          traj_test (mean over samples of science.trajectory.domain_distance of the states, of noised training
          images and of noised test images), lists over the sampler's steps

Settings: metrics.probe_settings.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from memsweep.metrics.memorization import MEM_THRESHOLD, is_copy, nearest_neighbours
from memsweep.metrics.probe_settings import HYBRID_TAU, PROBES, ProbeSettings, els_suffix
from memsweep.science.els import calibrate, els_field
from memsweep.science.hybrid import switch_at
from memsweep.science.trajectory import domain_distance, noised

@dataclass
class ProbeInputs:
    """Everything the probes need of an evaluation: the formulation, the network, the fixed noise and labels,
    the sampler, the data."""
    formulation: object
    model: object
    x0: torch.Tensor
    labels: torch.Tensor
    steps: int
    method: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    null_label: int | None = None
    cfg_weight: float = 0.0
    threshold: float = MEM_THRESHOLD
    noise_seed: int = 0

    def network(self):
        f = self.formulation
        return lambda x, t, y: f.guided(self.model, x, t, y, self.null_label, self.cfg_weight)

    def memorizer(self):
        return lambda x, t, y: self.formulation.conditional_closed_form(x, t, y, self.train_x, self.train_y)

    def sample(self, field, record=None) -> torch.Tensor:
        return self.formulation.sample_field(field, self.x0, self.labels, self.steps, self.method,
                                             record).clamp(-1, 1)

    def mem_ratio(self, samples) -> float:
        d, _ = nearest_neighbours(samples, self.train_x, k=2)
        return is_copy(d, self.threshold).float().mean().item()


def _mean_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).flatten(1).norm(dim=1).mean().item()


def hybrid(inp: ProbeInputs, own: torch.Tensor, taus=HYBRID_TAU, memorized: torch.Tensor | None = None) -> dict:
    """mem_ratio and distance to the network's own samples `own` of the hybrid sampler at each tau (tau = 0 is
    `own`, tau = 1 the memorizer's samples `memorized` when given)."""
    net, mem = inp.network(), inp.memorizer()
    ratios, dists = [], []
    for tau in taus:
        if tau <= 0:
            s = own
        elif tau >= 1 and memorized is not None:
            s = memorized
        else:
            s = inp.sample(switch_at(float(tau), mem, net))
        ratios.append(inp.mem_ratio(s))
        dists.append(_mean_l2(s, own))
    return {"hybrid_tau": [float(t) for t in taus], "hybrid_mem_ratio": ratios, "hybrid_dist": dists}


def els(inp: ProbeInputs, own: torch.Tensor, memorized: torch.Tensor, settings: ProbeSettings) -> tuple[dict, torch.Tensor]:
    """The ELS machine's samples from the same noise, and their distances to the network's and the memorizer's.
    A calibrated patch size is first calibrated against the network on the evaluation's first
    els_calibration_samples noises and labels (science.els.calibrate), and recorded per sampler time."""
    sfx, patch = els_suffix(settings), settings.els_patch
    recorded = {f"els_patch{sfx}": list(patch) if isinstance(patch, tuple) else patch}
    if settings.calibrated:
        m = settings.els_calibration_samples
        cal = calibrate(inp.formulation, inp.network(), inp.x0[:m], inp.labels[:m], inp.steps, inp.method,
                        inp.train_x, inp.train_y, settings.els_calibration_sizes, settings.els_padding,
                        settings.els_bank)
        patch = cal["schedule"]
        recorded = {f"els_patch{sfx}": cal["patch"], f"els_patch_t{sfx}": cal["t"], f"els_cos{sfx}": cal["cos"]}
    machine = els_field(inp.formulation, inp.train_x, inp.train_y, patch, settings.els_equivariant,
                        settings.els_padding, settings.els_bank)
    s = inp.sample(machine)
    return {f"els_dist{sfx}": _mean_l2(own, s), "els_mem_dist": _mean_l2(own, memorized),
            f"els_mem_ratio{sfx}": inp.mem_ratio(s), **recorded}, s


def traj(inp: ProbeInputs, states: list, settings: ProbeSettings) -> dict:
    """domain_distance of the recorded sampler states and of noised training and test images, at each step."""
    g = torch.Generator().manual_seed(int(inp.noise_seed) * 1000 + int(settings.traj_seed))
    count = len(inp.x0)
    train = inp.train_x[torch.arange(count, device=inp.train_x.device) % len(inp.train_x)]
    test = inp.test_x[torch.arange(count, device=inp.test_x.device) % len(inp.test_x)]
    out = {"traj_t": [], "traj_state": [], "traj_train": [], "traj_test": []}
    f = inp.formulation
    for x, t in states:
        out["traj_t"].append(float(t[0]))
        out["traj_state"].append(domain_distance(f, x, t, inp.train_x).mean().item())
        for key, images in (("traj_train", train), ("traj_test", test)):
            tt = t[:1].expand(len(images))
            out[key].append(domain_distance(f, noised(f, images, tt, g), tt, inp.train_x).mean().item())
    return out


@torch.inference_mode()
def run_probes(inp: ProbeInputs, names=PROBES, settings: ProbeSettings | None = None) -> tuple[dict, dict]:
    """The keys of the probes `names` (the network's and the memorizer's samples computed once, shared), and
    the samples drawn ({"network", "memorizer", "els"}: for figures)."""
    settings = settings or ProbeSettings()
    states: list = []
    record = (lambda x, t: states.append((x.clone(), t.clone()))) if "traj" in names else None
    own = inp.sample(inp.network(), record)
    memorized = inp.sample(inp.memorizer()) if {"hybrid", "els"} & set(names) else None
    row, samples = {}, {"network": own, "memorizer": memorized}
    if "hybrid" in names:
        row.update(hybrid(inp, own, settings.hybrid_tau, memorized))
    if "els" in names:
        keys, samples["els"] = els(inp, own, memorized, settings)
        row.update(keys)
    if "traj" in names:
        row.update(traj(inp, states, settings))
    return row, samples
