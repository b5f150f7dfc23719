"""`data=folder`: a directory of images read with PIL, in a fixed order.

Layout: every image file under data.path (recursively, hidden entries skipped), in the order of the sorted
relative paths (POSIX), so "the first n images" is defined. Labels come from class subfolders (first path
component, sorted names -> 0..C-1); a flat folder is one class (unconditional). `data.order=interleave` takes the
classes in turn (class 0's first image, class 1's first, ...) so that the first n images cover every class.

Test subset: the first data.test_size images of data.test_path (a second folder, same layout), or else the last
data.test_size images of data.path (a held-out tail): training subsets [offset, offset + n) never reach it.

Decoding: converted to L (data.grayscale) or RGB, resized (shorter side to data.size, bilinear) and centre-cropped
to data.size x data.size; without data.size all images must share one square size. Counting and checking the
files is cheap and done when the config is composed; decoding happens once and is cached (datasets.load).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from memsweep.errors import ConfigError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
DECODER = 1  # bump when decoding changes: a new cache key


@dataclass(frozen=True)
class Listing:
    root: Path
    files: tuple[str, ...]      # relative POSIX paths, sorted
    sizes: tuple[int, ...]
    mtimes: tuple[int, ...]
    classes: tuple[str, ...]    # class subfolder names, sorted; () for a flat folder

    def label(self, rel: str) -> int:
        return self.classes.index(rel.split("/", 1)[0]) if self.classes else 0

    def describe(self, with_mtimes: bool) -> list:
        return [list(self.files), list(self.sizes), list(self.mtimes) if with_mtimes else None, list(self.classes)]


_listings: dict[tuple, Listing] = {}


def scan(path, setting: str = "data.path") -> Listing:
    """The images under `path`, remembered per process while the folder and its subfolders are unchanged."""
    if path is None or str(path) in ("", "None"):
        raise ConfigError(f"{setting} is not set: point it at a folder of images ({setting}=/data/celeba/img_align_celeba)")
    root = Path(str(path)).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"{setting}={path}: no such folder")
    memo = (str(root), root.stat().st_mtime_ns,
            tuple((e.name, e.stat().st_mtime_ns) for e in os.scandir(root) if e.is_dir()))
    if memo not in _listings:
        _listings[memo] = _scan(root, setting)
    return _listings[memo]


def _scan(root: Path, setting: str) -> Listing:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in EXTENSIONS:
                full = Path(dirpath) / name
                found.append((full.relative_to(root).as_posix(), full.stat()))
    if not found:
        raise ConfigError(f"{setting}={root}: no images there (looked for {', '.join(sorted(EXTENSIONS))})")
    found.sort(key=lambda item: item[0])
    nested = {rel.split("/", 1)[0] for rel, _ in found if "/" in rel}
    flat = [rel for rel, _ in found if "/" not in rel]
    if nested and flat:
        raise ConfigError(f"{setting}={root}: holds both images ({flat[0]}) and class subfolders; use one layout")
    return Listing(root, tuple(r for r, _ in found), tuple(s.st_size for _, s in found),
                   tuple(s.st_mtime_ns for _, s in found), tuple(sorted(nested)))


def ordered(listing: Listing, order: str) -> list[int]:
    """Indices into listing.files: sorted paths, or the classes taken in turn (interleave)."""
    if order == "sorted" or not listing.classes:
        return list(range(len(listing.files)))
    if order != "interleave":
        raise ConfigError(f"data.order={order!r}: use sorted or interleave")
    by_class = [[i for i, f in enumerate(listing.files) if listing.label(f) == c] for c in range(len(listing.classes))]
    longest = max(len(b) for b in by_class)
    return [b[k] for k in range(longest) for b in by_class if k < len(b)]


def splits(cfg) -> tuple[list[int], list[int], list[int], list[int], int]:
    """(pool indices, pool labels, test indices, test labels, number of classes), in their fixed order. Indices
    point into data.path's listing; the test ones into data.test_path's when it is set."""
    train = scan(cfg.path)
    pool = ordered(train, cfg.order)
    labels = [train.label(train.files[i]) for i in pool]
    num_classes = max(1, len(train.classes))
    if cfg.get("test_path"):
        test = scan(cfg.test_path, "data.test_path")
        if bool(test.classes) != bool(train.classes) or not set(test.classes) <= set(train.classes):
            raise ConfigError(f"data.test_path={cfg.test_path}: its class subfolders ({', '.join(test.classes) or 'none'})"
                              f" do not match data.path's ({', '.join(train.classes) or 'none'})")
        chosen = ordered(test, cfg.order)[:cfg.test_size]
        test_labels = [train.classes.index(test.files[i].split("/", 1)[0]) if test.classes else 0 for i in chosen]
        return pool, labels, chosen, test_labels, num_classes
    if cfg.test_size >= len(pool):
        raise ConfigError(f"data.test_size={cfg.test_size}: data.path has only {len(pool)} images "
                          "(the held-out tail must leave training images)")
    k = len(pool) - cfg.test_size
    return pool[:k], labels[:k], pool[k:], labels[k:], num_classes


def assemble(cfg, raw: dict):
    """The decoded images (datasets' cache value) cut into (pool_x, pool_y, test_x, test_y, num_classes)."""
    pool, pool_y, test, test_y, num_classes = splits(cfg)
    test_x = raw["test"] if cfg.get("test_path") else raw["train"]
    if test_x.shape[1:] != raw["train"].shape[1:]:
        raise ConfigError(f"data.test_path: its images are {test_x.shape[2]}x{test_x.shape[1]}, data.path's "
                          f"{raw['train'].shape[2]}x{raw['train'].shape[1]}: set data.size")
    return raw["train"][pool], np.asarray(pool_y), test_x[test], np.asarray(test_y), num_classes


def check_disjoint(cfg) -> None:
    """data.test_path must share no image with data.path: no same file, no same content."""
    if not cfg.get("test_path"):
        return
    train, test = scan(cfg.path), scan(cfg.test_path, "data.test_path")
    train_files = {(train.root / f).resolve(): (train.root / f, s) for f, s in zip(train.files, train.sizes)}
    by_size: dict[int, list[Path]] = {}
    for full, size in train_files.values():
        by_size.setdefault(size, []).append(full)
    for f, size in zip(test.files, test.sizes):
        full = test.root / f
        if full.resolve() in train_files:
            raise ConfigError(f"data.test_path: {full} is also a training image in data.path (the test subset must be disjoint)")
        for other in by_size.get(size, []):
            if _sha(full) == _sha(other):
                raise ConfigError(f"data.test_path: {full} has the same content as the training image {other}")


_hashes: dict[tuple, str] = {}


def _sha(path: Path) -> str:
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo not in _hashes:
        _hashes[memo] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _hashes[memo]


_derived: dict[tuple, dict] = {}


def derive(cfg) -> dict:
    """What the config needs from the files (cheap: no decoding): image_size, channels, num_classes, and a
    fingerprint of the file lists (names and sizes) that stands for the data in the run id. Remembered per
    process for the same listings and settings (a sweep composes many runs of one folder)."""
    listings = (id(scan(cfg.path)), id(scan(cfg.test_path, "data.test_path")) if cfg.get("test_path") else None)
    memo = (listings, str(cfg.order), cfg.test_size, cfg.get("size"), bool(cfg.grayscale))
    if memo not in _derived:
        _derived[memo] = _derive(cfg)
    return dict(_derived[memo])


def _derive(cfg) -> dict:
    pool, _, _, _, num_classes = splits(cfg)
    check_disjoint(cfg)
    size = cfg.get("size")
    if size is None:
        path = scan(cfg.path).root / scan(cfg.path).files[pool[0]]
        first = _header_size(path)
        if first[0] != first[1]:
            raise ConfigError(f"data.path: {path} is {first[0]}x{first[1]}, not square: set data.size "
                              "(resize the shorter side and centre-crop)")
        size = first[0]
    elif isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"data.size={size}: must be a positive integer or null")
    lists = [scan(cfg.path).describe(False)]
    if cfg.get("test_path"):
        lists.append(scan(cfg.test_path, "data.test_path").describe(False))
    fingerprint = hashlib.sha256(json.dumps(lists).encode()).hexdigest()[:16]
    return {"image_size": int(size), "channels": 1 if cfg.grayscale else 3, "num_classes": num_classes,
            "fingerprint": fingerprint, "pool_size": len(pool)}


def cache_parts(cfg) -> dict:
    """The cache key of the decoded images: the file lists with sizes and mtimes, and the decoding settings."""
    parts = {"source": "folder", "decoder": DECODER, "grayscale": bool(cfg.grayscale), "size": cfg.get("size"),
             "train": [str(scan(cfg.path).root), *scan(cfg.path).describe(True)]}
    if cfg.get("test_path"):
        test = scan(cfg.test_path, "data.test_path")
        parts["test"] = [str(test.root), *test.describe(True)]
    return parts


def _header_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ConfigError(f"data.path: cannot read image {path} ({type(e).__name__})") from None


def read_image(path: Path, grayscale: bool, size: int | None, setting: str = "data.path") -> np.ndarray:
    """One image as uint8 HWC (C = 1 or 3), resized and centre-cropped to size x size if size is set."""
    try:
        with Image.open(path) as im:
            im = im.convert("L" if grayscale else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ConfigError(f"{setting}: cannot read image {path} ({type(e).__name__})") from None
    if size:
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)
        left, top = round((im.size[0] - size) / 2), round((im.size[1] - size) / 2)
        im = im.crop((left, top, left + size, top + size))
    a = np.asarray(im, dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a


def decode(cfg) -> dict:
    """Every image of data.path (and data.test_path), decoded, in sorted-path order: what the cache keeps."""
    out = {}
    for key, setting in (("train", "data.path"), ("test", "data.test_path")):
        if key == "test" and not cfg.get("test_path"):
            continue
        listing = scan(cfg.path if key == "train" else cfg.test_path, setting)
        files = [listing.root / f for f in listing.files]
        images = [read_image(f, bool(cfg.grayscale), cfg.get("size"), setting) for f in files]
        for f, a in zip(files, images):
            if a.shape != images[0].shape:
                raise ConfigError(f"{setting}: {f} is {a.shape[1]}x{a.shape[0]} but {files[0]} is "
                                  f"{images[0].shape[1]}x{images[0].shape[0]}: set data.size to resize them all")
        if images[0].shape[0] != images[0].shape[1]:
            raise ConfigError(f"{setting}: {files[0]} is not square: set data.size")
        out[key] = np.stack(images)
    return out
