"""A run directory with its tensors: checkpoints, each evaluation's samples and weights (torch). The layout and
everything else of a run directory: store.run_dir."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch

from memsweep.store.files import atomic_write, atomic_write_bytes
from memsweep.store.run_dir import RunDir


class RunStore(RunDir):
    """A run directory (store.run_dir.RunDir) that also saves and loads its checkpoints, samples and weights."""

    def save_checkpoint(self, state: dict, step: int, keep_last: int = 2, keep_steps=()) -> Path:
        """Write step_<step>.pt atomically; prune older ones beyond the last `keep_last`, except `keep_steps`."""
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        path = atomic_write(self.path("checkpoint", step), lambda f: torch.save(state, f), point="checkpoint")
        keep = set(self.checkpoint_steps()[-keep_last:]) | set(keep_steps)
        for s in self.checkpoint_steps():
            if s not in keep:
                self.path("checkpoint", s).unlink(missing_ok=True)
        return path

    def load_checkpoint(self, step: int, map_location="cpu") -> dict:
        return torch.load(self.path("checkpoint", step), map_location=map_location, weights_only=True)

    def load_latest_checkpoint(self, map_location="cpu") -> dict | None:
        """The newest loadable checkpoint; a truncated or corrupt one is skipped with a warning."""
        for tmp in self.ckpt_dir.glob(".*.tmp") if self.ckpt_dir.exists() else ():
            tmp.unlink(missing_ok=True)  # left by a writer killed before its rename (we hold the lock)
        for step in reversed(self.checkpoint_steps()):
            try:
                return self.load_checkpoint(step, map_location)
            except Exception as e:  # a torn file: fall back to the one before
                warnings.warn(f"{self.run_id}: checkpoint at step {step} is unreadable ({type(e).__name__}); "
                              "falling back to the previous one")
        return None

    # -- what each evaluation saw, for metrics computed after the fact ----------------------------------
    def save_samples(self, step: int, samples: torch.Tensor, labels: torch.Tensor) -> Path:
        """Generated samples as compressed uint8 images (NCHW) with their labels."""
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        path = self.path("samples", step)
        u8 = ((samples.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
        buf = io.BytesIO()
        np.savez_compressed(buf, images=u8, labels=labels.cpu().numpy())
        atomic_write_bytes(path, buf.getvalue())
        return path

    def load_samples(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples saved at `step`, back in [-1, 1] (quantized to 8 bits), and their labels."""
        with np.load(self.path("samples", step), allow_pickle=False) as z:
            return torch.from_numpy(z["images"]).float() / 127.5 - 1, torch.from_numpy(z["labels"])

    def save_eval_weights(self, step: int, state_dict: dict) -> Path:
        """The weights an evaluation used (EMA by default): small, kept for every evaluation."""
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        return atomic_write(self.path("eval_weights", step), lambda f: torch.save(state_dict, f))

    def load_eval_weights(self, step: int, map_location="cpu") -> dict:
        return torch.load(self.path("eval_weights", step), map_location=map_location, weights_only=True)
