"""`data=npz`: images from one .npz file (numpy.savez), an array `x` and optionally integer labels `y`.

x layouts: [N, H, W] (grayscale), [N, H, W, C] or [N, C, H, W] with C = 1 or 3 (channels last wins when both
read as channels). Values (to_uint8; docs/files.md): uint8 as they are; any integer type with every value in
0..255 as 8-bit values (as memsweep always read them); 16-bit integers (uint16, int16) beyond that scaled from their
type's range (uint16: 0..65535) to 0..255; bool as 0 and 255; floats in [0, 1] or [-1, 1] -- a float array with any
negative value is read as [-1, 1], otherwise as [0, 1]. Anything else is refused (a 32- or 64-bit integer beyond
255 has no known range). Without `y` the data are one class (unconditional); `y` holds labels 0..C-1.

The order is the array's; the test subset is the last data.test_size images (a held-out tail, disjoint from every
training subset). The shapes are read from the file's headers when the config is composed (no decoding).
"""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

from memsweep.data.splits import class_problem, tail_problem
from memsweep.errors import ConfigError, path_problem
from memsweep.hashing import file_hash

log = logging.getLogger(__name__)
_headers: dict[tuple, dict] = {}
_labels: dict[tuple, np.ndarray | None] = {}


def _file(cfg) -> Path:
    if cfg.path is None or str(cfg.path) in ("", "None"):
        raise ConfigError("data.path is not set: point it at an .npz file holding an array x (data=npz)")
    path = Path(str(cfg.path)).expanduser().resolve()
    problem = path_problem(path)
    if problem:
        raise ConfigError(f"data.path={cfg.path}: {problem}")
    return path


def _memo(path: Path) -> tuple:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


def headers(path: Path) -> dict[str, tuple[tuple, np.dtype]]:
    """name -> (shape, dtype) of every array in the .npz, read from the headers only."""
    memo = _memo(path)
    if memo not in _headers:
        out = {}
        try:
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    if name.endswith(".npy"):
                        with z.open(name) as f:
                            version = np.lib.format.read_magic(f)
                            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                    else np.lib.format.read_array_header_2_0)
                            shape, _, dtype = read(f)
                        out[name[:-4]] = (tuple(shape), dtype)
        except (zipfile.BadZipFile, ValueError, OSError) as e:
            raise ConfigError(f"data.path: {path} is not an .npz file ({type(e).__name__}: {e})") from None
        _headers[memo] = out
    return _headers[memo]


def layout(shape: tuple, path: Path) -> tuple[str, int, int]:
    """('nhw' | 'nhwc' | 'nchw', image size, channels) of an x of this shape; square images only."""
    if len(shape) == 3:
        kind, (h, w), c = "nhw", shape[1:], 1
    elif len(shape) == 4 and shape[3] in (1, 3):
        kind, (h, w, c) = "nhwc", shape[1:]
    elif len(shape) == 4 and shape[1] in (1, 3):
        kind, (c, h, w) = "nchw", shape[1:]
    else:
        raise ConfigError(f"data.path: {path}: x has shape {list(shape)}; use [N, H, W], [N, H, W, C] or "
                          "[N, C, H, W] with C = 1 or 3")
    if h != w:
        raise ConfigError(f"data.path: {path}: x holds {h}x{w} images; memsweep needs square ones")
    return kind, int(h), int(c)


def _arrays(path: Path) -> tuple[tuple, dict]:
    found = headers(path)
    if "x" not in found:
        raise ConfigError(f"data.path: {path} has no array 'x' (it has: {', '.join(sorted(found)) or 'no arrays'})")
    return found["x"][0], found


def labels(path: Path, count: int) -> np.ndarray | None:
    """y (None without it), after checking it holds `count` integer labels >= 0; read once per file version."""
    memo = _memo(path)
    if memo not in _labels:
        try:
            with np.load(path, allow_pickle=False) as z:
                y = np.asarray(z["y"]) if "y" in z.files else None
        except ValueError as e:  # an object array (needs pickle): refused
            raise ConfigError(f"data.path: {path}: cannot read y ({e})") from None
        if y is not None and (y.ndim != 1 or len(y) != count or not np.issubdtype(y.dtype, np.integer)
                              or (len(y) and y.min() < 0)):
            raise ConfigError(f"data.path: {path}: y must hold {count} integer labels >= 0 (got {y.dtype} {list(y.shape)})")
        _labels[memo] = y
    return _labels[memo]


def _num_classes(path: Path, count: int) -> int:
    """1 without y; else max(y) + 1."""
    y = labels(path, count)
    return int(y.max()) + 1 if y is not None and len(y) else 1


def class_mismatch(cfg) -> str | None:
    """Whether the training subset and the tail hold different classes though they could hold the same
    (data.splits.class_problem; e.g. x sorted by class): a warning."""
    path = _file(cfg)
    count = _arrays(path)[0][0]
    y = labels(path, count)
    if y is None:
        return None
    names = {c: c for c in range(int(y.max()) + 1)} if len(y) else {}
    return class_problem(y[cfg.offset:cfg.offset + cfg.n], y[count - cfg.test_size:], names,
                         "shuffle x and y together, or order them with the classes in turn")


def derive(cfg) -> dict:
    """image_size, channels, num_classes, a content fingerprint (sha256 of the file), and the pool size."""
    path = _file(cfg)
    shape, _ = _arrays(path)
    _, size, channels = layout(shape, path)
    problem = tail_problem(cfg.test_size, shape[0], str(path))
    if problem:
        raise ConfigError(problem)
    return {"image_size": size, "channels": channels, "num_classes": _num_classes(path, shape[0]),
            "fingerprint": file_hash(path)[:16], "pool_size": shape[0] - cfg.test_size}




def cache_parts(cfg) -> dict:
    path = _file(cfg)
    return {"source": "npz", "file": list(_memo(path))}


def to_uint8(x: np.ndarray, path: Path) -> np.ndarray:
    """uint8 in 0..255 from: uint8; integers of any type in 0..255 (8-bit values, as memsweep always read them);
    16-bit integers beyond that, scaled from their type's range (uint16 0..65535, int16 -32768..32767: their bit
    depth, as a 16-bit image's); bool (0 and 255); floats in [0, 1] / [-1, 1] (any negative value: [-1, 1])."""
    if x.dtype == np.uint8:
        return x
    if x.dtype == np.bool_:
        return x.astype(np.uint8) * np.uint8(255)
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if np.issubdtype(x.dtype, np.integer) and 0 <= lo and hi <= 255:
        if x.dtype in (np.uint16, np.int16):  # the one reading of a 16-bit array that is not by its bit depth
            log.warning(f"data.path: {path}: x is {x.dtype} with every value in 0..255: read as 8-bit values (as "
                        "memsweep always has); if they are 16-bit intensities, store x / 65535 as floats")
        return x.astype(np.uint8)
    if x.dtype in (np.uint16, np.int16):
        info = np.iinfo(x.dtype)
        scaled = (x.astype(np.float64) - info.min) * (255.0 / (float(info.max) - info.min))
        return np.round(scaled).astype(np.uint8)
    if np.issubdtype(x.dtype, np.floating) and np.isfinite(x).all() and -1 <= lo and hi <= 1:
        scaled = (x + 1.0) * 127.5 if lo < 0 else x * 255.0
        return np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    raise ConfigError(f"data.path: {path}: x is {x.dtype} with values in [{lo:.4g}, {hi:.4g}], which has no known "
                      "range; use uint8 0..255, uint16 (0..65535) or floats in [0, 1] or [-1, 1]")


def decode(cfg) -> dict:
    """x as uint8 NHWC and y (zeros without it): what the cache keeps."""
    path = _file(cfg)
    shape, _ = _arrays(path)
    kind, _, _ = layout(shape, path)
    _num_classes(path, shape[0])
    with np.load(path, allow_pickle=False) as z:
        try:
            x = np.asarray(z["x"])
            y = np.asarray(z["y"], dtype=np.int64) if "y" in z.files else np.zeros(len(x), dtype=np.int64)
        except ValueError as e:  # an object array (needs pickle): refused
            raise ConfigError(f"data.path: {path}: cannot read x ({e})") from None
    x = x[..., None] if kind == "nhw" else x.transpose(0, 2, 3, 1) if kind == "nchw" else x
    return {"train": np.ascontiguousarray(to_uint8(x, path)), "labels": y}


def assemble(cfg, raw: dict):
    """The decoded arrays cut into (pool_x, pool_y, test_x, test_y, num_classes): the tail is the test subset."""
    x, y = raw["train"], raw["labels"]
    k = len(x) - cfg.test_size
    num_classes = int(y.max()) + 1 if len(y) else 1
    return x[:k], y[:k], x[k:], y[k:], num_classes
