"""`data=folder`: a directory of images read with PIL, in a fixed order.

Layout: every image file under data.path (recursively, hidden entries skipped), in the order of the sorted
relative paths (POSIX), so "the first n images" is defined. Labels come from class subfolders (first path
component, sorted names -> 0..C-1); a flat folder is one class (unconditional). `data.order=interleave` takes the
classes in turn (class 0's first image, class 1's first, ...) so that the first n images cover every class;
`auto` (the default) is interleave with class subfolders and sorted without, resolved when the config is composed
(the config and the run id hold the resolved value: a flat folder's runs keep the ids they had under `sorted`).

Test subset: the first data.test_size images of data.test_path (a second folder, same layout), or else the last
data.test_size images of data.path (a held-out tail): training subsets [offset, offset + n) never reach it.

Decoding (docs/files.md has the table, mode by mode): images of 8 bits or fewer per channel (PIL's modes 1, L, P,
RGB, CMYK, YCbCr, HSV, LAB and those with alpha) are converted to L (data.grayscale) or RGB by PIL, exactly as
memsweep always has (alpha is dropped: the colour channels as stored); 16- and 32-bit images (I;16, I, F) are
scaled to 0..255 from the range their file declares (value_range), or refused when it declares none. Then resized
(shorter side to data.size, bilinear) and centre-cropped to data.size x data.size; without data.size all images
must share one square size. Counting and checking the files is cheap and done when the config is composed;
decoding happens once and is cached (datasets.load).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from memsweep.data.splits import class_problem, tail_problem
from memsweep.errors import ConfigError, path_problem

log = logging.getLogger(__name__)
EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
# bump when decoding changes: a new cache key. 2: 16- and 32-bit images scaled by their range (1 clipped them:
# a 16-bit PNG read as 255 everywhere); images of 8 bits or fewer decode to the same pixels.
DECODER = 2
# PIL's modes of one channel of 16 or 32 bits: scaled to 0..255 from their declared range (value_range). Every
# other mode PIL opens has 8 bits or fewer per channel and goes through PIL's own convert, as before.
WIDE = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


@dataclass(frozen=True)
class Listing:
    root: Path
    files: tuple[str, ...]      # relative POSIX paths, sorted
    sizes: tuple[int, ...]
    mtimes: tuple[int, ...]
    classes: tuple[str, ...]    # class subfolder names, sorted; () for a flat folder

    @cached_property
    def labels(self) -> tuple[int, ...]:
        """Every file's label, in one pass (a folder may hold a million images of a thousand classes)."""
        index = {c: k for k, c in enumerate(self.classes)}
        return tuple(index[f.split("/", 1)[0]] for f in self.files) if self.classes else (0,) * len(self.files)

    def describe(self, with_mtimes: bool) -> list:
        return [list(self.files), list(self.sizes), list(self.mtimes) if with_mtimes else None, list(self.classes)]


_listings: dict[tuple, Listing] = {}


def scan(path, setting: str = "data.path") -> Listing:
    """The images under `path`, remembered per process while the folder and its subfolders are unchanged."""
    if path is None or str(path) in ("", "None"):
        raise ConfigError(f"{setting} is not set: point it at a folder of images ({setting}=/data/celeba/img_align_celeba)")
    root = Path(str(path)).expanduser().resolve()
    problem = path_problem(root, "folder")
    if problem:
        raise ConfigError(f"{setting}={path}: {problem}")
    memo = (str(root), root.stat().st_mtime_ns,
            tuple((e.name, e.stat().st_mtime_ns) for e in os.scandir(root) if e.is_dir()))
    if memo not in _listings:
        _listings[memo] = _scan(root, setting)
    return _listings[memo]


def _scan(root: Path, setting: str) -> Listing:
    def unreadable(e: OSError):  # os.walk skips a folder it cannot list unless told otherwise
        raise ConfigError(f"{setting}: cannot read the folder {e.filename} ({e.strerror})")

    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
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


def resolved(listing: Listing, order: str) -> str:
    """data.order=auto as the files make it: interleave with class subfolders (sorted would put the classes one
    after another, so that the held-out tail is the last class and the first n images the first classes), sorted
    for a flat folder (where the two are the same order)."""
    if order == "auto":
        return "interleave" if listing.classes else "sorted"
    if order not in ("sorted", "interleave"):
        raise ConfigError(f"data.order={order!r}: use auto, sorted or interleave")
    return order


def ordered(listing: Listing, order: str) -> list[int]:
    """Indices into listing.files: sorted paths, or the classes taken in turn (interleave)."""
    if resolved(listing, order) == "sorted" or not listing.classes:
        return list(range(len(listing.files)))
    by_class: list[list[int]] = [[] for _ in listing.classes]
    for i, label in enumerate(listing.labels):
        by_class[label].append(i)
    longest = max(len(b) for b in by_class)
    return [b[k] for k in range(longest) for b in by_class if k < len(b)]


_splits: dict[tuple, tuple] = {}


def splits(cfg) -> tuple[list[int], list[int], list[int], list[int], int]:
    """(pool indices, pool labels, test indices, test labels, number of classes), in their fixed order. Indices
    point into data.path's listing; the test ones into data.test_path's when it is set. Remembered per process for
    the same listings and settings (a sweep's runs differ in n and offset, which the split does not depend on)."""
    test = scan(cfg.test_path, "data.test_path") if cfg.get("test_path") else None
    memo = (id(scan(cfg.path)), id(test), str(cfg.order), cfg.test_size)
    if memo not in _splits:
        _splits[memo] = _split(cfg)
    return _splits[memo]


def _split(cfg) -> tuple[list[int], list[int], list[int], list[int], int]:
    train = scan(cfg.path)
    pool = ordered(train, cfg.order)
    labels = [train.labels[i] for i in pool]
    num_classes = max(1, len(train.classes))
    if cfg.get("test_path"):
        test = scan(cfg.test_path, "data.test_path")
        if bool(test.classes) != bool(train.classes) or not set(test.classes) <= set(train.classes):
            raise ConfigError(f"data.test_path={cfg.test_path}: its class subfolders ({', '.join(test.classes) or 'none'})"
                              f" do not match data.path's ({', '.join(train.classes) or 'none'})")
        chosen = ordered(test, cfg.order)[:cfg.test_size]
        test_labels = [train.classes.index(test.files[i].split("/", 1)[0]) if test.classes else 0 for i in chosen]
        return pool, labels, chosen, test_labels, num_classes
    problem = tail_problem(cfg.test_size, len(pool), "data.path")
    if problem:
        raise ConfigError(problem + " (or give data.test_path)")
    k = len(pool) - cfg.test_size
    return pool[:k], labels[:k], pool[k:], labels[k:], num_classes


def class_mismatch(cfg) -> str | None:
    """Whether the training subset and the test subset hold different classes though they could hold the same
    (data.splits.class_problem): a warning, since with classes of unequal sizes some n may want it so."""
    pool, labels, _, test_labels, _ = splits(cfg)
    names = scan(cfg.path).classes or ("all",)
    order = resolved(scan(cfg.path), str(cfg.order))
    advice = ("data.order=interleave takes the classes in turn" if order == "sorted"
              else "with classes of unequal sizes, give data.test_path or choose n, offset and test_size so both "
                   "hold every class")
    return class_problem(labels[cfg.offset:cfg.offset + cfg.n], test_labels, names, advice)


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
        first = _header(path)[0]
        if first[0] != first[1]:
            raise ConfigError(f"data.path: {path} is {first[0]}x{first[1]}, not square: set data.size "
                              "(resize the shorter side and centre-crop)")
        size = first[0]
    elif isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"data.size={size}: must be a positive integer or null")
    listings = [scan(cfg.path)] + ([scan(cfg.test_path, "data.test_path")] if cfg.get("test_path") else [])
    lists = [listing.describe(False) for listing in listings]
    # a folder of 16- or 32-bit images (its first image's mode, one header read) decodes otherwise than under
    # DECODER 1, which clipped them: its runs get other ids. Folders of 8-bit images keep theirs.
    if any(_header(listing.root / listing.files[0])[1] in WIDE for listing in listings):
        lists.append("wide images scaled by their range")
    fingerprint = hashlib.sha256(json.dumps(lists).encode()).hexdigest()[:16]
    return {"image_size": int(size), "channels": 1 if cfg.grayscale else 3, "num_classes": num_classes,
            "fingerprint": fingerprint, "pool_size": len(pool), "order": resolved(scan(cfg.path), str(cfg.order))}


def cache_parts(cfg) -> dict:
    """The cache key of the decoded images: the file lists with sizes and mtimes, and the decoding settings."""
    parts = {"source": "folder", "decoder": DECODER, "grayscale": bool(cfg.grayscale), "size": cfg.get("size"),
             "train": [str(scan(cfg.path).root), *scan(cfg.path).describe(True)]}
    if cfg.get("test_path"):
        test = scan(cfg.test_path, "data.test_path")
        parts["test"] = [str(test.root), *test.describe(True)]
    return parts


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and PIL's mode of an image, from its header."""
    try:
        with Image.open(path) as im:
            return im.size, im.mode
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ConfigError(f"data.path: cannot read image {path} ({type(e).__name__})") from None


def _first(value):
    return value[0] if isinstance(value, tuple) else value


def value_range(im) -> tuple[float, float] | None:
    """The values a 16- or 32-bit image (WIDE) spans from black to white, as its file declares them: a TIFF's
    SMinSampleValue and SMaxSampleValue when it has them, else its BitsPerSample and SampleFormat (unsigned b bits:
    0 to 2^b - 1, signed: -2^(b-1) to 2^(b-1) - 1; a 12-bit TIFF is 0 to 4095); a 16-bit PNG's 0 to 65535; a 16-bit
    PGM's 0 to 65535 (PIL rescales its maxval to 16 bits). None: the file declares no range (a float TIFF without
    SMinSampleValue and SMaxSampleValue)."""
    tags = getattr(im, "tag_v2", None)
    if tags is not None:  # TIFF
        if 340 in tags and 341 in tags:
            return float(_first(tags[340])), float(_first(tags[341]))
        bits, kind = int(_first(tags.get(258, 0))), int(_first(tags.get(339, 1)))
        if kind == 1 and bits:
            return 0.0, 2.0 ** bits - 1
        if kind == 2 and bits:
            return -2.0 ** (bits - 1), 2.0 ** (bits - 1) - 1
        return None
    if im.mode.startswith("I;16") or (im.mode == "I" and im.format in ("PNG", "PPM")):
        return 0.0, 65535.0
    return None


def _wide_values(im, path: Path, setting: str) -> np.ndarray:
    """A 16- or 32-bit image's values scaled from its declared range to 0..255 (float64, H x W), or a refusal
    naming the file and its mode."""
    span = value_range(im)
    if span is None:
        kind = "32-bit float" if im.mode == "F" else "32-bit integer"
        raise ConfigError(f"{setting}: {path} is a {im.mode} image (PIL's mode: {kind}) with no declared range, so "
                          "which values are black and white is unknown; save it as 8- or 16-bit integers, or declare "
                          "its range (TIFF SMinSampleValue and SMaxSampleValue)")
    lo, hi = span
    a = np.asarray(im)
    if a.dtype == np.int32 and lo >= 0 and hi > np.iinfo(np.int32).max:
        a = a.view(np.uint32)  # PIL reads an unsigned 32-bit TIFF into int32
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ConfigError(f"{setting}: {path} ({im.mode} image) holds nan or inf values")
    if hi <= lo or a.min() < lo or a.max() > hi:
        raise ConfigError(f"{setting}: {path} ({im.mode} image) holds values in [{a.min():g}, {a.max():g}], outside "
                          f"its declared range [{lo:g}, {hi:g}]")
    return (a - lo) * (255.0 / (hi - lo))


def _fit(im, size: int):
    """Resized (shorter side to size, bilinear) and centre-cropped to size x size."""
    w, h = im.size
    scale = size / min(w, h)
    im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)
    left, top = round((im.size[0] - size) / 2), round((im.size[1] - size) / 2)
    return im.crop((left, top, left + size, top + size))


# what decoding leaves out, said once per decoding (decode): (what the images have, what memsweep does)
NOTES = {"alpha": ("have transparency (alpha below opaque, or a transparent colour)",
                   "their colour channels are read as stored and alpha is ignored (composite them onto a background "
                   "first if that is what they show)"),
         "frames": ("have several frames", "the first frame is read"),
         "orientation": ("carry an EXIF orientation", "their pixels are read as stored, not rotated")}


def _notes(im) -> list[str]:
    notes = []
    if "transparency" in im.info or (im.mode in ("LA", "PA", "RGBA") and im.getextrema()[-1][0] < 255):
        notes.append("alpha")
    if getattr(im, "n_frames", 1) > 1:
        notes.append("frames")
    if im.getexif().get(0x0112, 1) != 1:
        notes.append("orientation")
    return notes


def read_image(path: Path, grayscale: bool, size: int | None, setting: str = "data.path",
               notes: dict | None = None) -> np.ndarray:
    """One image as uint8 HWC (C = 1 or 3), resized and centre-cropped to size x size if size is set. `notes`
    (NOTES' kinds, and "wide" for 16- and 32-bit images -> files) collects what decoding leaves out."""
    target = "L" if grayscale else "RGB"
    try:
        with Image.open(path) as im:
            for kind in _notes(im) if notes is not None else ():
                notes.setdefault(kind, []).append(f"{path.name} ({im.mode})")
            if im.mode in WIDE:
                if notes is not None:
                    notes.setdefault("wide", []).append(f"{path.name} ({im.mode})")
                values = _wide_values(im, path, setting)
                if size:  # resized in floats, then rounded once
                    values = np.asarray(_fit(Image.fromarray(values.astype(np.float32)), size), dtype=np.float64)
                a = np.clip(np.round(values), 0, 255).astype(np.uint8)
                return a[..., None] if grayscale else np.repeat(a[..., None], 3, axis=2)
            mode = im.mode
            try:
                im = im.convert(target)  # 8 bits or fewer: PIL's conversion, the pixels memsweep always read
            except ValueError:
                raise ConfigError(f"{setting}: {path} is a {mode} image, which PIL cannot convert to {target}; "
                                  f"convert it first{' or set data.grayscale=false' if grayscale else ''}") from None
    except ConfigError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ConfigError(f"{setting}: cannot read image {path} ({type(e).__name__})") from None
    if size:
        im = _fit(im, size)
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
        notes: dict[str, list[str]] = {}
        images = [read_image(f, bool(cfg.grayscale), cfg.get("size"), setting, notes) for f in files]
        for kind, (have, done) in NOTES.items():
            if kind in notes:
                log.warning(f"{setting}: {len(notes[kind])} of {len(files)} images {have} (first: "
                            f"{notes[kind][0]}); {done}")
        for f, a in zip(files, images):
            if a.shape != images[0].shape:
                raise ConfigError(f"{setting}: {f} is {a.shape[1]}x{a.shape[0]} but {files[0]} is "
                                  f"{images[0].shape[1]}x{images[0].shape[0]}: set data.size to resize them all")
        if images[0].shape[0] != images[0].shape[1]:
            raise ConfigError(f"{setting}: {files[0]} is not square: set data.size")
        out[key] = np.stack(images)
        lo, hi = int(out[key].min()), int(out[key].max())
        # at most 1/16 of 0..255 spanned, 4 bits' worth: e.g. 12-bit values in files that say 16 bits
        if hi - lo <= 16 and "wide" in notes:
            raise ConfigError(f"{setting}: its 16- or 32-bit images (first: {notes['wide'][0]}), read by the range "
                              f"their files declare, span only {lo}..{hi} of 0..255 (12-bit values in 16-bit files? "
                              "counts in 32-bit ones?); rescale them to their range, or declare it (TIFF "
                              "SMinSampleValue and SMaxSampleValue)")
        if hi - lo <= 16:  # 8-bit images read as always, but nearly uniform: said, not refused
            log.warning(f"{setting}: every decoded pixel is in {lo}..{hi} of 0..255: the images are nearly "
                        "uniform; check them")
    return out
