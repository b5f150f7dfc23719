"""Feature spaces behind one interface: images in [-1, 1] (N, C, H, W) -> features (N, D).

- `pixels`: the flattened image (works everywhere, offline).
- `inception`: clean-fid's Inception-v3 (the FID network), with clean-fid's own resizing to 299x299.
  Its weights file `inception-2015-12-05.pt` comes from `eval.inception_path` (a file or a folder) or
  clean-fid's cache (/tmp); it is never downloaded by memsweep.
- `torchscript:/path/model.pt`: any TorchScript model taking images in [-1, 1] (e.g. SSCD, DINOv2 exports).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
                 "inception-2015-12-05.pt")


class FeatureUnavailable(RuntimeError):
    """A feature space cannot be built here (e.g. missing weights); the message says how to fix it."""


class FeatureSpace:
    name = "abstract"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Pixels(FeatureSpace):
    name = "pixels"

    def __call__(self, images):
        return images.flatten(1).float()


def find_inception_weights(configured: str | None) -> Path | None:
    candidates = []
    if configured:
        p = Path(str(configured)).expanduser()
        candidates.append(p / INCEPTION_FILE if p.is_dir() else p)
    candidates.append(Path("/tmp") / INCEPTION_FILE)  # where clean-fid caches it
    return next((c for c in candidates if c.is_file()), None)


class Inception(FeatureSpace):
    name = "inception"

    def __init__(self, weights_path: str | None, device, batch_size: int = 64):
        path = find_inception_weights(weights_path)
        if path is None:
            raise FeatureUnavailable(
                f"Inception weights ({INCEPTION_FILE}) not found at eval.inception_path={weights_path} "
                f"nor in clean-fid's cache /tmp; download {INCEPTION_URL} and set eval.inception_path to it")
        from cleanfid.inception_torchscript import InceptionV3W
        from cleanfid.resize import build_resizer

        self.model = InceptionV3W(str(path.parent), download=False).to(device).eval()
        self.resize = build_resizer("clean")
        self.device, self.batch_size = device, batch_size

    @torch.no_grad()
    def __call__(self, images):
        # clean-fid's protocol: uint8 images, PIL bicubic resize to 299 in float, then the network
        u8 = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
        if u8.shape[1] == 1:
            u8 = u8.expand(-1, 3, -1, -1)
        u8 = u8.permute(0, 2, 3, 1).numpy()
        out = []
        for start in range(0, len(u8), self.batch_size):
            batch = np.stack([self.resize(img) for img in u8[start:start + self.batch_size]])
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)
            out.append(self.model(x).float().cpu())
        return torch.cat(out)


class TorchScript(FeatureSpace):
    def __init__(self, path: str, device):
        p = Path(path).expanduser()
        if not p.is_file():
            raise FeatureUnavailable(f"feature model {p} not found (a TorchScript file is expected)")
        self.model = torch.jit.load(str(p), map_location=device).eval()
        self.name = f"torchscript:{p.name}"
        self.device = device

    @torch.no_grad()
    def __call__(self, images):
        return self.model(images.to(self.device)).flatten(1).float()


def build(spec: str, device="cpu", inception_path: str | None = None) -> FeatureSpace:
    """`spec` is `pixels`, `inception` or `torchscript:<path>`."""
    if spec == "pixels":
        return Pixels()
    if spec == "inception":
        return Inception(inception_path, device)
    if spec.startswith("torchscript:"):
        return TorchScript(spec.split(":", 1)[1], device)
    raise ValueError(f"unknown feature space {spec!r} (pixels, inception, torchscript:<path>)")
