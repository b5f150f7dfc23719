"""One evaluation of a model: the row appended to metrics.jsonl, and a sample grid.

Everything random here (loss noise and t, initial noise and labels for samples, SW projections) is drawn
once from eval.noise_seed, so two evaluations differ only by the model.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from . import flow
from .metrics import features as feat
from .metrics.fid import frechet_distance, gaussian_stats
from .metrics.loss import FixedLossBatch, fixed_loss
from .metrics.memorization import nearest_neighbours
from .metrics.sliced_wasserstein import projections, sliced_wasserstein

log = logging.getLogger("memsweep")


class Evaluator:
    def __init__(self, cfg, data, device):
        ev = cfg.eval
        self.cfg, self.data, self.device = ev, data, device
        g = torch.Generator().manual_seed(ev.noise_seed)
        self.train_batch = FixedLossBatch.make(data.train_x, data.train_y, ev.loss_points, g)
        self.test_batch = FixedLossBatch.make(data.test_x, data.test_y, ev.loss_points, g)
        self.sample_noise = torch.randn((ev.num_samples, *data.train_x.shape[1:]), generator=g).to(device)
        # sample labels follow the training set's labels, in order (its class proportions)
        self.sample_labels = data.train_y[torch.arange(ev.num_samples, device=data.train_y.device) % len(data.train_y)]
        self.null_label = data.num_classes
        self.sw_space = self._space(ev.sw_features)
        self.fid_space = self._space(ev.fid_features)
        self.sw_refs = self._refs(self.sw_space)
        if self.sw_space is not None:
            dim = self.sw_refs["train"].shape[1]
            self.sw_proj = projections(dim, ev.sw_projections, seed=ev.sw_seed).to(device)
        self.fid_refs = {k: gaussian_stats(v) for k, v in self._refs(self.fid_space).items()}

    def _space(self, spec):
        if spec == "none":
            return None
        try:
            return feat.build(spec, self.device, self.cfg.inception_path)
        except feat.FeatureUnavailable as e:
            log.warning("%s: no metric in this space is computed or logged. %s", spec, e)
            return None

    def _refs(self, space):
        if space is None:
            return {}
        return {"train": space(self.data.train_x), "test": space(self.data.test_x)}

    @torch.inference_mode()  # lighter than no_grad: sampling is most of an evaluation's time
    def generate(self, model) -> torch.Tensor:
        def field(x, t):
            return flow.velocity(model, x, t, self.sample_labels, self.null_label, self.cfg.cfg_weight)
        return flow.sample(field, self.sample_noise, self.cfg.sampler_steps, self.cfg.sampler).clamp(-1, 1)

    @torch.no_grad()
    def __call__(self, model, step: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """The metrics row, the generated samples, and the index of each sample's nearest training image."""
        was_training = model.training
        model.eval()
        row = {"step": step}
        row["train_loss"], row["train_loss_by_t"] = fixed_loss(model, self.train_batch, self.cfg.t_bins)
        row["test_loss"], row["test_loss_by_t"] = fixed_loss(model, self.test_batch, self.cfg.t_bins)
        row["loss_gap"] = row["test_loss"] - row["train_loss"]
        samples = self.generate(model)
        dist, idx = nearest_neighbours(samples, self.data.train_x, k=2)
        ratio = dist[:, 0] / dist[:, 1].clamp_min(1e-12)
        row["mem_ratio"] = (ratio < self.cfg.mem_threshold).float().mean().item()
        row["nn_dist"] = dist[:, 0].mean().item()  # mean pixel L2 to the nearest training image
        if self.sw_space is not None:
            f = self.sw_space(samples)
            for split in ("train", "test"):
                row[f"sw_{split}"] = sliced_wasserstein(f, self.sw_refs[split], self.sw_proj)
        if self.fid_space is not None:
            stats = gaussian_stats(self.fid_space(samples))
            for split in ("train", "test"):
                row[f"fid_{split}"] = frechet_distance(stats, self.fid_refs[split])
        model.train(was_training)
        return row, samples, idx[:, 0]

    def save_grid(self, path: Path, samples: torch.Tensor, nn_idx: torch.Tensor) -> None:
        """Generated samples (top row) above their nearest training images (bottom row)."""
        k = min(self.cfg.grid_samples, len(samples))
        pairs = torch.cat([samples[:k], self.data.train_x[nn_idx[:k]]]).cpu()
        scale = max(1, math.ceil(32 / pairs.shape[-1]))  # small images are enlarged to be seen
        pairs = F.interpolate(pairs, scale_factor=scale, mode="nearest")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(make_grid(pairs, nrow=k, padding=2, normalize=True, value_range=(-1, 1)), path)
