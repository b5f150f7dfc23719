"""Datasets as tensors: the first n images of a fixed order for training, a fixed disjoint test subset.

Every dataset is small enough (or subset enough) to live on the device whole; the training loop indexes
batches from it, so there is no DataLoader in the hot loop. Images are float32 in [-1, 1], NCHW.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from memsweep import lazy
from memsweep.data.sources import FILE_SOURCES, conditional, file_source
from memsweep.data.splits import subset_problem
from memsweep.errors import ConfigError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


@dataclass
class Dataset:
    train_x: torch.Tensor  # (n, C, H, W) in [-1, 1]: the first n images of the pool (after the offset)
    train_y: torch.Tensor  # (n,) int64 class labels
    test_x: torch.Tensor   # fixed test subset, disjoint from every training subset
    test_y: torch.Tensor
    num_classes: int

    def to(self, device) -> "Dataset":
        return Dataset(self.train_x.to(device), self.train_y.to(device), self.test_x.to(device),
                       self.test_y.to(device), self.num_classes)

    def unlabeled(self) -> "Dataset":
        """The same images with no classes: every label 0, which is the null label of num_classes = 0."""
        return Dataset(self.train_x, torch.zeros_like(self.train_y), self.test_x, torch.zeros_like(self.test_y), 0)


def decoded(cfg, cache=None) -> dict:
    """A file source's images decoded (uint8 NHWC arrays), through `cache` (store.cache.Cache: decoded once for
    all the runs of a sweep) when given. Bad files raise a ConfigError naming them."""
    source = file_source(cfg.name)
    compute = lambda: {k: torch.from_numpy(v) for k, v in source.decode(cfg).items()}  # noqa: E731
    raw = cache.get("data", source.cache_parts(cfg), compute, what=f"data={cfg.name} {cfg.path}") if cache else compute()
    return {k: v.numpy() for k, v in raw.items()}


def load_for_model(cfg, cache=None) -> Dataset:
    """The dataset as the run's model sees it: its classes, or none at all when data.conditional=false."""
    data = load(cfg, cache)
    return data if conditional(cfg) else data.unlabeled()


def load(cfg, cache=None) -> Dataset:
    """Build the dataset described by the `data` config group, with its classes whatever data.conditional
    (`cache`: see `decoded`)."""
    loaders = {"digits": _digits, "cifar10": _cifar10, "synthetic": _synthetic}
    if cfg.name in FILE_SOURCES:
        pool_x, pool_y, test_x, test_y, num_classes = file_source(cfg.name).assemble(cfg, decoded(cfg, cache))
    elif cfg.name in loaders:
        pool_x, pool_y, test_x, test_y, num_classes = loaders[cfg.name](cfg)
    else:
        raise ConfigError(f"data.name={cfg.name!r}: unknown dataset (known: {', '.join([*loaders, *FILE_SOURCES])})")
    lo, hi = cfg.offset, cfg.offset + cfg.n
    problem = subset_problem(cfg.n, cfg.offset, len(pool_x), cfg.name)
    if problem:
        raise ConfigError(problem)
    return Dataset(_to_tensor(pool_x[lo:hi]), torch.as_tensor(pool_y[lo:hi], dtype=torch.long),
                   _to_tensor(test_x), torch.as_tensor(test_y, dtype=torch.long), num_classes)


def _to_tensor(images_uint8_nhwc: np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.ascontiguousarray(images_uint8_nhwc), dtype=torch.float32)
    return (x.permute(0, 3, 1, 2) / 127.5 - 1.0).contiguous()


DIGITS = Path(__file__).resolve().parent / "digits.npz"


def _digits(cfg):
    """scikit-learn's 1,797 8x8 digits (values 0..16, sklearn.datasets.load_digits: the UCI optical digits,
    CC BY 4.0), in their shipped order, from the copy shipped in this package (digits.npz, 45 kB; equal to
    scikit-learn's, tests/test_data.py): importing scikit-learn took 2.5-7.6 s of every digits run's start
    here. The test subset is the last `test_size` images, the training pool everything before it."""
    with np.load(DIGITS) as d:
        images, target = d["images"], d["target"].astype(np.int64)
    images = np.round(images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # NHWC, 1 channel
    cut = len(images) - cfg.test_size
    return images[:cut], target[:cut], images[cut:], target[cut:], 10


def _cifar10(cfg):
    """The standard CIFAR-10 python batches (data_batch_1..5, test_batch) under `data.root`.

    We read the pickles ourselves rather than through torchvision.datasets.CIFAR10 because that class
    insists on the md5 of each full batch file, which rules out the small files in the real format
    that the tests write; torchvision still does the opt-in download."""
    root = Path(str(cfg.root)).expanduser() if cfg.root else None
    if root is None:
        raise ConfigError("data.root is not set: point it at the folder holding cifar-10-batches-py "
                          "(or set data.download=true on a machine with internet)")
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir() and cfg.get("download", False):
        # torchvision loaded here (memsweep.lazy): ~1 s of import, only ever with data.download=true
        lazy.load("torchvision.datasets.utils").download_and_extract_archive(CIFAR10_URL, str(root), md5=CIFAR10_MD5)
    if not folder.is_dir():
        raise ConfigError(f"data.root={cfg.root}: no cifar-10-batches-py folder there "
                          "(download it, or set data.download=true on a machine with internet)")
    train = [_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    train_x = np.concatenate([b[0] for b in train])
    train_y = np.concatenate([b[1] for b in train])
    test_x, test_y = _cifar_batch(folder / "test_batch")
    k = min(cfg.test_size, len(test_x))
    return train_x, train_y, test_x[:k], test_y[:k], 10


def _cifar_batch(path: Path):
    if not path.is_file():
        raise ConfigError(f"data.root: missing CIFAR-10 batch file {path}")
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()  # the format CIFAR-10 ships in
        x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"data.root: {path} is not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None


class _BatchUnpickler(pickle.Unpickler):
    """CIFAR-10 batches are pickles; a pickle can run code, so only the numpy classes an array needs load."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def write_cifar_batch(path: Path, images_nhwc: np.ndarray, labels) -> None:
    """Write images in the CIFAR-10 python batch format (used by tests and tools)."""
    data = np.asarray(images_nhwc, dtype=np.uint8).transpose(0, 3, 1, 2).reshape(len(images_nhwc), -1)
    with open(path, "wb") as f:
        pickle.dump({b"data": data, b"labels": list(map(int, labels))}, f)


def make_synthetic_cifar(root: Path, per_batch: int = 20, seed: int = 0) -> Path:
    """A tiny CIFAR-10 lookalike in the real on-disk format, for tests and offline dry runs."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_cifar_batch(folder / name, rng.integers(0, 256, (per_batch, 32, 32, 3)),
                          rng.integers(0, 10, per_batch))
    return folder


def _synthetic(cfg):
    """A Gaussian mixture in image space: one random mean image per class, isotropic spread.
    Drawn from `data.data_seed`, so every run of a sweep sees the same data whatever its seed."""
    rng = np.random.default_rng(cfg.data_seed)
    size, ch, k = cfg.image_size, cfg.channels, cfg.num_classes
    means = rng.uniform(-0.8, 0.8, (k, size, size, ch))
    total = cfg.pool_size + cfg.test_size
    labels = rng.integers(0, k, total)
    x = means[labels] + cfg.spread * rng.standard_normal((total, size, size, ch))
    images = np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8)
    cut = cfg.pool_size
    return images[:cut], labels[:cut], images[cut:], labels[cut:], k

