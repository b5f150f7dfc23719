"""What a run's data config says without loading an image (no torch): its classes, how many images the
pool holds, whether its files are on this machine, its shape. config.validate reads these when a run is
composed; data.datasets loads the tensors.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

from memsweep import lazy


def conditional(cfg) -> bool:
    """data.conditional (true when absent: runs stored before the key existed are class-conditional)."""
    return bool(cfg.get("conditional", True))


def model_classes(cfg) -> int | None:
    """The classes the model is conditioned on: data.num_classes, or 0 for an unconditional run (None: a file
    source not read on this machine, planning)."""
    if not conditional(cfg):
        return 0
    return None if cfg.num_classes is None else int(cfg.num_classes)


# datasets read from the user's files: checked when the config is composed, decoded once into the reference cache;
# their modules (PIL, numpy) are loaded only for a run that reads such files (memsweep.lazy)
FILE_SOURCES = {"folder": "memsweep.data.folder", "npz": "memsweep.data.npz"}
DIGITS_COUNT = 1797  # scikit-learn's digits (digits.npz)


def file_source(name: str) -> ModuleType:
    """The module that reads data=`name`'s files (a key of FILE_SOURCES)."""
    return lazy.load(FILE_SOURCES[name])


def pool_size(cfg) -> int:
    """Images available for training subsets (the test subset is excluded)."""
    if cfg.name in FILE_SOURCES:
        return file_source(cfg.name).derive(cfg)["pool_size"]
    return {"digits": DIGITS_COUNT - cfg.test_size, "cifar10": 50000,
            "synthetic": cfg.get("pool_size", 0)}.get(cfg.name, 0)


# what is known of a dataset without its files (planning on a machine without the data): the image shape
KNOWN_SHAPES = {"cifar10": (32, 3, 10), "digits": (8, 1, 10)}  # (image_size, channels, num_classes)


def missing(cfg) -> str | None:
    """Why the dataset cannot be read on this machine (its files are elsewhere), or None. Only CIFAR-10 is read
    from data.root; file sources (data=folder, npz) are read when the config is composed (derive)."""
    if cfg.name != "cifar10" or cfg.get("download"):
        return None
    root = cfg.get("root")
    if root and (Path(str(root)).expanduser() / "cifar-10-batches-py").is_dir():
        return None
    return (f"data.root={root}: no cifar-10-batches-py folder there "
            "(set data.root, or data.download=true on a machine with internet)")


def class_mismatch(cfg) -> str | None:
    """A file source whose training subset and test subset hold different classes though they could hold the
    same (data.splits.class_problem), in words; None for the built-in datasets, whose orders mix the classes."""
    return file_source(cfg.name).class_mismatch(cfg) if cfg.name in FILE_SOURCES else None


def is_unreadable(cfg) -> bool:
    """A file source whose file or folder is not on this machine (planning elsewhere: a warning, not an error)."""
    paths = [cfg.get("path")] + ([cfg.get("test_path")] if cfg.get("test_path") else [])
    return cfg.name in FILE_SOURCES and any(p is None or not Path(str(p)).expanduser().exists() for p in paths)


def is_read(cfg) -> bool:
    """Whether derive() read the dataset's files (always true of the datasets that have none to read)."""
    return cfg.name not in FILE_SOURCES or "fingerprint" in cfg


def known_shape(cfg) -> dict:
    """image_size, channels, num_classes of a file source from its settings alone: data=folder with data.size
    gives the shape; the rest is None (unknown until the files are read)."""
    if cfg.name == "folder" and cfg.get("size"):
        return {"image_size": int(cfg.size), "channels": 1 if cfg.grayscale else 3, "num_classes": None}
    return {"image_size": None, "channels": None, "num_classes": None}


def derive(cfg) -> dict:
    """Settings a file source reads from its files when the config is composed (no decoding): image_size,
    channels, num_classes and a fingerprint of the data (in the run id; the path is not). {} for the others."""
    if cfg.name not in FILE_SOURCES:
        return {}
    return {k: v for k, v in file_source(cfg.name).derive(cfg).items() if k != "pool_size"}
