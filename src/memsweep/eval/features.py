"""Feature spaces behind one interface: images in [-1, 1] (N, C, H, W) -> features (N, D), float32.

Specs (eval.sw_features, eval.fid_features, eval.copy_features, `memsweep eval --features`):

- `pixels`: the flattened image (works everywhere, offline).
- `inception`: clean-fid's Inception-v3 (the FID network, 2048-d pool features), with clean-fid's own
  resizing to 299x299. Its weights file `inception-2015-12-05.pt` comes from `eval.inception_path` (a file or
  a folder) or clean-fid's cache (/tmp); memsweep never downloads it.
- `torchscript:<path>` or `torchscript:<name>=<path>`: any TorchScript model taking the images as they are
  (N, C, H, W) in [-1, 1] and returning (N, ...) features; export it with its own preprocessing (resizing,
  ImageNet normalization, grayscale to RGB). E.g. SSCD (copy detection), DINOv2 (Frechet distance). Its
  name in metric keys is <name>, or the file name up to its first dot (sscd_disc_mixup.torchscript.pt ->
  sscd_disc_mixup).
- `digitnet`: offline, for data=digits: the 64-d penultimate layer of a small CNN classifier trained
  deterministically on the digits training pool (never on the test subset), the analogue for 8x8 digits of
  the Inception network of FID (like LeNet features for MNIST). Trained once per cache (about a minute on a
  busy CPU) and kept in <output_root>/cache/models, keyed by its recipe and the pool's content. A class-level
  space: held-out digits are as close to the training set in it as copies are, so it suits Frechet and SW
  distances, not copy detection.

Each space has a `name` (used in metric keys: fd_<name>_test, copy_<name>, ...) and an `identity()` (what
determines its features, including a hash of its weights: part of the reference-feature cache key).
"""
from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from cleanfid.inception_torchscript import InceptionV3W
from cleanfid.resize import build_resizer
from omegaconf import OmegaConf

from memsweep.data import sources
from memsweep.data.datasets import load
from memsweep.eval.feature_specs import INCEPTION_FILE, SPACES, find_inception_weights, torchscript_name_and_path
from memsweep.hashing import file_hash
from memsweep.store.cache import Cache, digest, tensor_hash

INCEPTION_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
                 "inception-2015-12-05.pt")


class FeatureUnavailable(RuntimeError):
    """A feature space cannot be built here (e.g. missing weights); the message says how to fix it."""


class FeatureSpace:
    name = "abstract"
    cache_features = True  # worth caching (False for pixels, which are the images themselves)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def identity(self) -> dict:
        raise NotImplementedError


class Pixels(FeatureSpace):
    name = "pixels"
    cache_features = False

    def __call__(self, images):
        return images.flatten(1).float()

    def identity(self):
        return {"space": "pixels"}


class Inception(FeatureSpace):
    name = "inception"

    def __init__(self, weights_path: str | None, device, batch_size: int = 64):
        path = find_inception_weights(weights_path)
        if path is None:
            raise FeatureUnavailable(
                f"Inception weights ({INCEPTION_FILE}) not found at eval.inception_path={weights_path} "
                f"nor in clean-fid's cache /tmp; download {INCEPTION_URL} and set eval.inception_path to it")
        if path.name != INCEPTION_FILE:  # clean-fid loads the network by its folder and this file name
            raise FeatureUnavailable(f"eval.inception_path={weights_path}: the file must be named {INCEPTION_FILE}")
        self.path = path
        self.model = InceptionV3W(str(path.parent), download=False).to(device).eval()
        self.resize = build_resizer("clean")
        self.device, self.batch_size = device, batch_size

    def identity(self):
        return {"space": "inception", "weights_sha256": file_hash(self.path), "resize": "clean",
                "clean_fid": version("clean-fid")}

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
    def __init__(self, spec_rest: str, device, batch_size: int = 256):
        self.name, path = torchscript_name_and_path(spec_rest)
        p = Path(path).expanduser()
        if not p.is_file():
            raise FeatureUnavailable(f"feature model {p} not found (a TorchScript file is expected)")
        self.path = p
        self.model = torch.jit.load(str(p), map_location=device).eval()
        self.device, self.batch_size = device, batch_size

    def identity(self):
        return {"space": "torchscript", "sha256": file_hash(self.path)}

    @torch.no_grad()
    def __call__(self, images):
        return torch.cat([self.model(images[s:s + self.batch_size].to(self.device)).flatten(1).float()
                          for s in range(0, len(images), self.batch_size)])


# -- digitnet: the offline feature space for 8x8 digits ---------------------------------------------------
DIGITNET_RECIPE = {"version": 1, "arch": "conv16-conv32-maxpool-conv32-fc128-fc64-fc10", "features": "fc64",
                   "optimizer": "adam", "lr": 2e-3, "steps": 500, "batch_size": 128, "seed": 0,
                   "augment": "shift<=1px, gaussian noise 0.1"}


class _DigitCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.c3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc, self.features = nn.Linear(32 * 4 * 4, 128), nn.Linear(128, 64)
        self.head = nn.Linear(64, 10)

    def embed(self, x):
        h = F.max_pool2d(F.relu(self.c2(F.relu(self.c1(x)))), 2)
        h = F.relu(self.c3(h))
        return self.features(F.relu(self.fc(h.flatten(1))))

    def forward(self, x):
        return self.head(F.relu(self.embed(x)))


def _shift_and_noise(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Each image shifted by up to one pixel (background filled in), plus Gaussian noise."""
    n = len(x)
    windows = F.pad(x, (1, 1, 1, 1), value=-1.0).unfold(2, 8, 1).unfold(3, 8, 1)  # (n, 1, 3, 3, 8, 8)
    dy, dx = torch.randint(0, 3, (n,), generator=g), torch.randint(0, 3, (n,), generator=g)
    shifted = windows[torch.arange(n), :, dy, dx]
    return (shifted + 0.1 * torch.randn(shifted.shape, generator=g)).clamp(-1, 1)


def train_digitnet(pool_x: torch.Tensor, pool_y: torch.Tensor, test_x=None, test_y=None) -> dict:
    """The recipe DIGITNET_RECIPE, on CPU, with its own random streams (the global RNG is left untouched)."""
    r = DIGITNET_RECIPE
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(r["seed"])
        net = _DigitCNN()
        g = torch.Generator().manual_seed(r["seed"])
        opt = torch.optim.Adam(net.parameters(), lr=r["lr"])
        x, y = pool_x.float().cpu(), pool_y.long().cpu()
        for _ in range(r["steps"]):
            idx = torch.randint(len(x), (r["batch_size"],), generator=g)
            loss = F.cross_entropy(net(_shift_and_noise(x[idx], g)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    out = {"state_dict": net.state_dict()}
    with torch.no_grad():
        out["train_accuracy"] = float((net(x).argmax(1) == y).float().mean())
        if test_x is not None:  # a sanity figure only; the test subset is never trained on
            out["test_accuracy"] = float((net(test_x.float().cpu()).argmax(1) == test_y.cpu()).float().mean())
    return out


class DigitNet(FeatureSpace):
    name = "digitnet"

    def __init__(self, device, data_cfg=None, cache=None):
        if data_cfg is None or data_cfg.get("name") != "digits":
            raise FeatureUnavailable("the digitnet feature space is for data=digits (8x8 grayscale digits)")
        pool_cfg = {"name": "digits", "test_size": int(data_cfg.test_size), "offset": 0}
        pool_cfg["n"] = sources.pool_size(OmegaConf.create(pool_cfg))
        pool = load(OmegaConf.create(pool_cfg))  # the whole training pool, and the test subset
        parts = {"recipe": DIGITNET_RECIPE, "pool": pool_cfg, "images": tensor_hash(pool.train_x),
                 "labels": tensor_hash(pool.train_y), "torch": torch.__version__.split("+")[0]}
        trained = (cache or Cache(None)).get("models", parts, lambda: train_digitnet(
            pool.train_x, pool.train_y, pool.test_x, pool.test_y), what=f"digitnet (test_size={data_cfg.test_size})")
        self.net = _DigitCNN()
        self.net.load_state_dict(trained["state_dict"])
        self.net = self.net.to(device).eval()
        self.test_accuracy = trained.get("test_accuracy")
        self.weights = digest({k: tensor_hash(v) for k, v in trained["state_dict"].items()})
        self.device = device

    def identity(self):
        return {"space": "digitnet", "recipe": DIGITNET_RECIPE, "weights": self.weights}

    @torch.no_grad()
    def __call__(self, images):
        if tuple(images.shape[1:]) != (1, 8, 8):
            raise FeatureUnavailable(f"digitnet takes 8x8 grayscale images, not {tuple(images.shape[1:])}")
        return torch.cat([self.net.embed(images[s:s + 4096].to(self.device).float())
                          for s in range(0, len(images), 4096)])


# -- building a space from its spec ---------------------------------------------------------------------
def build(spec: str, device="cpu", inception_path: str | None = None, data_cfg=None, cache=None) -> FeatureSpace:
    """`spec` is `pixels`, `inception`, `digitnet` or `torchscript:[<name>=]<path>`."""
    spec = str(spec)
    if spec == "pixels":
        return Pixels()
    if spec == "inception":
        return Inception(inception_path, device)
    if spec == "digitnet":
        return DigitNet(device, data_cfg, cache)
    if spec.startswith("torchscript:"):
        return TorchScript(spec.split(":", 1)[1], device)
    raise ValueError(f"unknown feature space {spec!r} (use {', '.join(SPACES)})")
