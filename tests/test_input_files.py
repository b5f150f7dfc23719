"""Every file a user hands memsweep is read faithfully or refused in one line (issue 30): images of every mode PIL
opens, npz arrays of every integer width, config folders and their YAML, sweep files, TorchScript models, the
Inception weights, run directories; each formulation's settings checked together; every documented key settable
for every option of its group; splits whose subsets hold the same classes. docs/files.md has the tables."""
import hashlib
import json
import logging
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image

from memsweep import config, schema
from memsweep.cli import main
from memsweep.data import datasets, folder
from memsweep.eval.features import INCEPTION_FILE
from memsweep.store import identity

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(30)
COUNT = 4  # images per case: 2 to train on, 2 held out


def refused(capsys, args, named, out=None):
    """`memsweep ARGS` exits 2 with one line `memsweep: error: ...` naming `named`, no traceback, nothing written."""
    assert main(args) == 2, args
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("memsweep: error:") and named in err[0], (args, err)
    assert "Traceback" not in captured.err + captured.out
    if out is not None:
        assert not (out / "runs").exists()
    return err[0]


# -- writers of test images: each returns the values an independent reading gives (numpy, not PIL's convert) --
def luma(rgb):
    """ITU-R 601-2 luma, PIL's documented L of an RGB image (rounded: PIL's fixed point within 1 level)."""
    return np.round(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)


def png(path: Path, array: np.ndarray, color_type: int, bit_depth: int):
    """A PNG written by hand (zlib, no PIL): for the 16-bit colour types PIL cannot write."""
    h, w = array.shape[:2]
    raw = b"".join(b"\0" + array[y].astype(">u2" if bit_depth == 16 else np.uint8).tobytes() for y in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def tiff(path: Path, a: np.ndarray, extra=(), bits: int | None = None):
    """A baseline little-endian TIFF of one 2-D array written by hand (uint16, int16, uint32, int32 or float32;
    PIL writes neither unsigned 32-bit nor signed 16-bit nor 12-bit), one strip; extra: (tag, type, values), 12 =
    DOUBLE; bits=12: unsigned values packed two pixels in three bytes, first bit first."""
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    h, w = a.shape
    data = a.tobytes()
    if bits == 12:
        data = b"".join(bytes([p >> 4, (p & 15) << 4 | q >> 8, q & 255]) for p, q in zip(a.ravel()[::2], a.ravel()[1::2]))
    entries = sorted([(256, 4, [w]), (257, 4, [h]), (258, 3, [bits or a.dtype.itemsize * 8]), (259, 3, [1]), (262, 3, [1]),
                      (273, 4, [0]), (277, 3, [1]), (278, 4, [h]), (279, 4, [len(data)]),
                      (339, 3, [{"u": 1, "i": 2, "f": 3}[a.dtype.kind]]), *extra])
    codes = {3: "H", 4: "I", 12: "d"}
    after_ifd = 8 + 2 + 12 * len(entries) + 4
    blobs, fields = b"", []
    for tag, kind, values in entries:
        raw = struct.pack("<" + codes[kind] * len(values), *values)
        if len(raw) > 4:
            raw, blobs = struct.pack("<I", after_ifd + len(blobs)), blobs + raw
        fields.append([tag, kind, len(values), raw.ljust(4, b"\0")])
    for f in fields:
        if f[0] == 273:
            f[3] = struct.pack("<I", after_ifd + len(blobs))
    ifd = struct.pack("<H", len(fields)) + b"".join(struct.pack("<HHI", *f[:3]) + f[3] for f in fields) + b"\0" * 4
    path.write_bytes(b"II*\0" + struct.pack("<I", 8) + ifd + blobs + data)


def gray(values):          # (expected L, expected RGB) of a grayscale reading
    return values, np.repeat(values[..., None], 3, axis=2)


def colour(rgb):
    return luma(rgb), rgb


def scaled(v, lo, hi):
    return gray(np.round((v.astype(np.float64) - lo) * 255.0 / (hi - lo)))


def write_case(case: str, path: Path):
    """Write one image of the mode `case` to path (its suffix chosen here) and return (file, expected L,
    expected RGB, atol): what an independent reading of its pixels gives."""
    shape = (4, 4)
    u8 = lambda *s: RNG.integers(0, 256, shape + s).astype(np.uint8)  # noqa: E731
    if case == "1":
        bits = RNG.integers(0, 2, shape).astype(bool)
        Image.fromarray(bits).save(f := path.with_suffix(".png"))
        return (f, *gray(bits * 255.0), 0)
    if case == "L":
        v = u8()
        Image.fromarray(v).save(f := path.with_suffix(".png"))
        return (f, *gray(v), 0)
    if case == "LA":
        v, a = u8(), u8()
        Image.fromarray(np.stack([v, a], -1), "LA").save(f := path.with_suffix(".png"))
        return (f, *gray(v), 0)                      # alpha ignored: the grey as stored
    if case in ("P", "P+tRNS"):
        index, palette = RNG.integers(0, 4, shape).astype(np.uint8), RNG.integers(0, 256, (4, 3))
        im = Image.frombytes("P", shape, index.tobytes())
        im.putpalette(palette.ravel().tolist())
        if case == "P+tRNS":
            im.info["transparency"] = 1
        im.save(f := path.with_suffix(".png"))
        return (f, *colour(palette[index].astype(np.float64)), 1)
    if case == "RGB":
        v = u8(3)
        Image.fromarray(v).save(f := path.with_suffix(".png"))
        return (f, *colour(v.astype(np.float64)), 1)
    if case == "RGBA":
        v = u8(4)
        Image.fromarray(v, "RGBA").save(f := path.with_suffix(".png"))
        return (f, *colour(v[..., :3].astype(np.float64)), 1)   # alpha ignored: the colour as stored
    if case == "CMYK":
        v = u8(4).astype(np.float64)
        Image.frombytes("CMYK", shape, v.astype(np.uint8).tobytes()).save(f := path.with_suffix(".tif"))
        rgb = np.round((255 - v[..., :3]) * (255 - v[..., 3:]) / 255)  # PIL's (multiplicative) CMYK -> RGB
        return (f, *colour(rgb), 1)
    if case == "YCbCr":
        v = u8(3).astype(np.float64)
        Image.frombytes("YCbCr", shape, v.astype(np.uint8).tobytes()).save(f := path.with_suffix(".tif"))
        y, cb, cr = v[..., 0], v[..., 1] - 128, v[..., 2] - 128   # JFIF's YCbCr -> RGB
        rgb = np.clip(np.round(np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], -1)), 0, 255)
        return (f, y, rgb, 2)                        # grayscale: Y, the luma the file stores
    if case == "RGB 16-bit PNG":
        v = RNG.integers(0, 65536, shape + (3,))
        png(f := path.with_suffix(".png"), v, 2, 16)
        return (f, *colour((v >> 8).astype(np.float64)), 1)    # PIL keeps the high byte (mode RGB)
    if case in ("I;16 PNG", "I;16 TIFF", "I;16B TIFF"):
        v = RNG.integers(0, 65536, shape).astype(np.uint16)
        if case == "I;16 PNG":
            Image.fromarray(v).save(f := path.with_suffix(".png"))
        elif case == "I;16 TIFF":
            Image.fromarray(v).save(f := path.with_suffix(".tif"))
        else:
            Image.frombytes("I;16B", shape, v.astype(">u2").tobytes()).save(f := path.with_suffix(".tif"))
        return (f, *scaled(v, 0, 65535), 0)
    if case == "I;16 from a 12-bit TIFF":
        v = RNG.integers(0, 4096, shape).astype(np.uint16)
        tiff(f := path.with_suffix(".tif"), v, bits=12)
        return (f, *scaled(v, 0, 4095), 0)              # its BitsPerSample, not the 16 bits PIL holds it in
    if case == "PGM maxval 4095":
        v = RNG.integers(0, 4096, shape)
        (f := path.with_suffix(".pgm")).write_bytes(b"P5\n4 4\n4095\n" + v.astype(">u2").tobytes())
        return (f, *scaled(v, 0, 4095), 1)   # PIL first rescales to 16 bits (mode I): within one level
    if case == "I int16 TIFF":
        v = RNG.integers(-32768, 32768, shape).astype(np.int16)
        tiff(f := path.with_suffix(".tif"), v)
        return (f, *scaled(v, -32768, 32767), 0)
    if case == "I int32 TIFF":
        v = RNG.integers(-2 ** 31, 2 ** 31, shape).astype(np.int32)
        Image.fromarray(v).save(f := path.with_suffix(".tif"))
        return (f, *scaled(v, -2 ** 31, 2 ** 31 - 1), 0)
    if case == "I uint32 TIFF":
        v = RNG.integers(2 ** 31, 2 ** 32, shape).astype(np.uint32)   # beyond int32: PIL wraps them
        tiff(f := path.with_suffix(".tif"), v)
        return (f, *scaled(v, 0, 2 ** 32 - 1), 0)
    if case == "F TIFF with SMin/SMaxSampleValue":
        v = (RNG.random(shape) * 2).astype(np.float32)
        tiff(f := path.with_suffix(".tif"), v, [(340, 12, [0.0]), (341, 12, [2.0])])
        return (f, *scaled(v, 0, 2), 0)
    raise KeyError(case)


FAITHFUL = ["1", "L", "LA", "P", "P+tRNS", "RGB", "RGBA", "CMYK", "YCbCr", "RGB 16-bit PNG", "I;16 PNG", "I;16 TIFF",
            "I;16B TIFF", "I;16 from a 12-bit TIFF", "PGM maxval 4095", "I int16 TIFF", "I int32 TIFF", "I uint32 TIFF",
            "F TIFF with SMin/SMaxSampleValue"]
EIGHT_BIT = {"1", "L", "LA", "P", "P+tRNS", "RGB", "RGBA", "CMYK", "YCbCr", "RGB 16-bit PNG"}


def decoded(cfg, grayscale: bool) -> np.ndarray:
    """The training and test images memsweep decodes (uint8 NHWC), in the folder's order."""
    data = OmegaConf.create(OmegaConf.to_container(cfg.data))
    data.grayscale = grayscale
    d = datasets.load(data)
    x = torch.cat([d.train_x, d.test_x])
    return ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("case", FAITHFUL)
def test_every_mode_decodes_to_what_its_pixels_say(case, tmp_path, out, caplog):
    """Mode by mode: the decoded training and test images against an independent reading of the same pixels
    (numpy from the values written), as grayscale and as RGB; 8-bit modes also pixel for pixel as memsweep
    always read them (PIL's convert), so existing folders train on the same images."""
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    written = [write_case(case, image_dir / f"{i:03d}") for i in range(COUNT)]
    first = Image.open(written[0][0])
    cfg = config.compose_run(["logger=none", "data=folder", f"data.path={image_dir}", "data.test_size=2", "data.n=2"])
    with caplog.at_level(logging.WARNING):
        got_l, got_rgb = decoded(cfg, True), decoded(cfg, False)
    for i, (f, want_l, want_rgb, atol) in enumerate(written):
        assert np.abs(got_l[i, ..., 0].astype(int) - want_l).max() <= atol, (case, first.mode, i)
        assert np.abs(got_rgb[i].astype(int) - want_rgb).max() <= atol, (case, first.mode, i)
        if case in EIGHT_BIT:
            with Image.open(f) as im:
                assert np.array_equal(got_l[i, ..., 0], np.asarray(im.convert("L")))
                assert np.array_equal(got_rgb[i], np.asarray(im.convert("RGB")))
    notes = [r.getMessage() for r in caplog.records if "transparency" in r.getMessage()]
    assert bool(notes) == (case in ("LA", "P+tRNS", "RGBA")), (case, notes)   # alpha is said to be ignored


def test_16_bit_images_resize_like_their_8_bit_content(tmp_path, out):
    """data.size on a 16-bit folder: resized in floats and rounded once, within one level of the 8-bit image
    of the same content resized by PIL."""
    v8 = RNG.integers(0, 256, (COUNT, 12, 10)).astype(np.uint8)
    for name, values in (("wide", v8.astype(np.uint16) * 257), ("narrow", v8)):
        (tmp_path / name).mkdir()
        for i, v in enumerate(values):
            Image.fromarray(v).save(tmp_path / name / f"{i}.png")
    got = [decoded(config.compose_run(["logger=none", "data=folder", f"data.path={tmp_path / name}", "data.size=6",
                                       "data.test_size=2", "data.n=2"]), True) for name in ("wide", "narrow")]
    assert got[0].shape == (COUNT, 6, 6, 1) and np.abs(got[0].astype(int) - got[1]).max() <= 1


@pytest.mark.parametrize("case, named", [
    ("float without a range", "is a F image (PIL's mode: 32-bit float) with no declared range"),
    ("float outside its range", "outside its declared range [0, 1]"),
    ("float nan", "holds nan or inf values"),
    ("LAB as grayscale", "is a LAB image, which PIL cannot convert to L"),
])
def test_images_with_no_faithful_reading_are_refused_naming_the_file_and_mode(case, named, tmp_path, out, capsys):
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    for i in range(COUNT):
        v = (RNG.random((4, 4)) * (3 if case == "float outside its range" else 1)).astype(np.float32)
        if case == "float without a range":
            Image.fromarray(v).save(image_dir / f"{i}.tif")
        elif case == "LAB as grayscale":
            Image.frombytes("LAB", (4, 4), RNG.integers(0, 256, (4, 4, 3)).astype(np.uint8).tobytes()).save(image_dir / f"{i}.tif")
        else:
            v[0, 0] = np.nan if case == "float nan" else v[0, 0]
            tiff(image_dir / f"{i}.tif", v, [(340, 12, [0.0]), (341, 12, [1.0])])
    line = refused(capsys, ["train", "logger=none", "data=folder", f"data.path={image_dir}", "data.test_size=2", "data.n=2",
                            "data.grayscale=true", "train.steps=2"], named, out)
    assert "0.tif" in line


def test_what_decoding_leaves_out_is_said_once(tmp_path, out, caplog, capsys):
    """Several frames (the first is read), an EXIF orientation (not applied), nearly uniform 8-bit images: one
    warning line each. 16-bit images that span a few levels read by their declared range (12-bit values in files
    that say 16 bits) are refused: 4 bits of them would be left."""
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    for i in range(COUNT):
        frames = [Image.fromarray(RNG.integers(0, 8, (4, 4)).astype(np.uint8)) for _ in range(2)]
        frames[0].save(image_dir / f"{i}.tif", save_all=True, append_images=frames[1:], exif=exif)
    cfg = config.compose_run(["logger=none", "data=folder", f"data.path={image_dir}", "data.test_size=2", "data.n=2"])
    with caplog.at_level(logging.WARNING):
        decoded(cfg, True)
    lines = [r.getMessage() for r in caplog.records]
    for said in ("have several frames (first: 0.tif (L)); the first frame is read", "carry an EXIF orientation",
                 "every decoded pixel is in 0..7 of 0..255"):
        assert sum(said in line for line in lines) == 1, (said, lines)
    twelve = tmp_path / "twelve"
    twelve.mkdir()
    for i in range(COUNT):
        Image.fromarray(RNG.integers(0, 4096, (4, 4)).astype(np.uint16)).save(twelve / f"{i}.png")
    refused(capsys, ["train", "logger=none", "data=folder", f"data.path={twelve}", "data.test_size=2", "data.n=2",
                     "train.steps=2"], "its 16- or 32-bit images (first: 0.png (I;16)), read by the range their files "
                                       "declare, span only 0..16 of 0..255", out)


def test_eight_bit_folders_keep_their_run_ids_and_wide_ones_get_new_ones(tmp_path, out):
    """The fingerprint of a folder of 8-bit images is what it was (names and sizes: the ids of its runs stay);
    one of 16-bit images, which decoding used to clip, gets another (its runs' data changed)."""
    for name, dtype in (("narrow", np.uint8), ("wide", np.uint16)):
        (tmp_path / name).mkdir()
        for i in range(COUNT):
            Image.fromarray(RNG.integers(0, 200, (4, 4)).astype(dtype)).save(tmp_path / name / f"{i}.png")
        cfg = config.compose_run(["logger=none", "data=folder", f"data.path={tmp_path / name}", "data.test_size=2",
                                  "data.n=2"])
        before = hashlib.sha256(json.dumps([folder.scan(cfg.data.path).describe(False)]).encode()).hexdigest()[:16]
        assert (cfg.data.fingerprint == before) == (name == "narrow"), name


# -- data=npz: every integer width ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, values, want", [
    ("uint16", [0, 257, 65535, 1000], [0, 1, 255, 4]),                 # by its bit depth: v * 255 / 65535
    ("int16", [-32768, 0, 32767, 1000], [0, 128, 255, 131]),            # (v + 32768) * 255 / 65535
    ("uint16", [0, 17, 255, 100], [0, 17, 255, 100]),                   # every value in 0..255: 8-bit values, as before
    ("int64", [0, 17, 255, 100], [0, 17, 255, 100]),
    ("bool", [False, True, True, False], [0, 255, 255, 0]),
])
def test_npz_integer_widths(dtype, values, want, tmp_path, out, caplog):
    x = np.broadcast_to(np.array(values, dtype=dtype)[:, None, None], (4, 3, 3)).copy()
    path = tmp_path / "x.npz"
    np.savez(path, x=x)
    with caplog.at_level(logging.WARNING):
        d = datasets.load(config.compose_run(["logger=none", "data=npz", f"data.path={path}", "data.test_size=2",
                                              "data.n=2"]).data)
    got = ((torch.cat([d.train_x, d.test_x])[:, 0, 0, 0] + 1) * 127.5).round().int().tolist()
    assert got == want
    warned = any("read as 8-bit values" in r.getMessage() for r in caplog.records)
    assert warned == (dtype == "uint16" and max(values) <= 255)


def test_npz_integers_with_no_known_range_are_refused(tmp_path, out, capsys):
    np.savez(tmp_path / "x.npz", x=np.arange(4 * 9, dtype=np.int32).reshape(4, 3, 3) * 100)
    refused(capsys, ["train", "logger=none", "data=npz", f"data.path={tmp_path / 'x.npz'}", "data.test_size=2",
                     "data.n=2", "train.steps=2"], "x is int32 with values in [0, 3500], which has no known range", out)


# -- each formulation's settings, together -----------------------------------------------------------------------
FORMULATION_RULES = [
    (["objective=edm", "objective.sigma_min=100"], "objective.sigma_min=100: must be below objective.sigma_max=80"),
    (["objective=edm", "objective.sigma_min=80"], "objective.sigma_min=80: must be below objective.sigma_max=80"),
    (["objective=edm", "objective.sigma_max=5"], "objective.sigma_max=5: sampling starts from pure noise"),
    (["objective=edm", "objective.p_mean=6"], "objective.p_mean=6: the median training noise level"),
    (["objective=vp", "objective.beta_end=2"], "objective.beta_end=2: must be a finite number in (0, 1)"),
    (["objective=vp", "objective.beta_start=1"], "objective.beta_start=1: must be a finite number in (0, 1)"),
    (["objective=vp", "objective.beta_start=0.03"], "objective.beta_start=0.03: above objective.beta_end=0.02"),
    (["objective=vp", "objective.timesteps=100"], "objective.beta_end=0.02 with objective.timesteps=100: the chain ends"),
    (["objective=vp", "eval.sampler_steps=2000"], "eval.sampler_steps=2000: more than objective.timesteps=1000"),
    (["objective=vp", "eval.sampler=ddim_bonnaire", "eval.sampler_steps=1"], "eval.sampler_steps=1: ddim_bonnaire needs"),
    (["objective=vp", "eval.sampler=heun"], "eval.sampler=heun: objective vp samples with"),
]


@pytest.mark.parametrize("overrides, message", FORMULATION_RULES, ids=[" ".join(o) for o, _ in FORMULATION_RULES])
def test_each_formulation_checks_its_settings_together(overrides, message, out, capsys):
    line = refused(capsys, ["train", *overrides], message, out)
    assert line.startswith(f"memsweep: error: {message}")
    assert not out.exists()


def test_the_shipped_objectives_and_bundles_pass_their_rules(tmp_path, out):
    for overrides in (["objective=vp"], ["objective=edm"], ["objective=vp", "objective.beta_start=0.02"],
                      ["objective=vp", "objective.timesteps=250", "objective.beta_end=0.08", "eval.sampler_steps=250"],
                      ["+experiment=gu_cifar10"], ["+experiment=bonnaire_celeba"]):
        config.compose_run(overrides, data_here=False)


# -- every documented key, for every option of its group ----------------------------------------------------------
def groups_table() -> dict[str, tuple[list[str], list[str]]]:
    """The configs guide's table of config groups: group -> (its options, its canonical keys)."""
    text = (ROOT / "docs" / "guides" / "configs.md").read_text().split("## The groups", 1)[1]
    rows = {}
    for line in text.splitlines()[1:]:
        if not line.startswith("| `"):
            if rows:
                break
            continue
        _, group, options, keys, _ = [c.strip() for c in line.split("|")]
        group = group.strip("`")
        rows[group] = (re.findall(r"`(\w+)`", options), re.findall(rf"`({group}\.\w+)`", keys))
    return rows


def _cli(value) -> str:
    if isinstance(value, bool):
        return str(not value).lower()    # flipped: the setting must flow, not only parse
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(map(_cli, value)) + "]"
    return str(value)


def _schema(group: str, option: str):
    found = schema.GROUPS[group]
    return found.get(option) if isinstance(found, dict) else found


def test_every_key_the_configs_guide_lists_is_settable_for_every_option_that_has_it(out):
    """The configs guide's table of canonical keys walked against each option of its group: a key an option's schema
    knows can be set on the command line with that option (data.conditional for data=folder and data=npz), and
    every key listed is some option's."""
    table = groups_table()
    assert {"data", "objective", "model", "eval", "logger", "launcher"} <= set(table)
    walked = 0
    with config.Composer(data_here=False) as compose:
        for group, (options, keys) in table.items():
            if group == "experiment":
                continue
            for key in keys:
                assert any(key.split(".", 1)[1] in _schema(group, o).settings for o in options
                           if _schema(group, o)), f"{key}: no option of {group} has it"
            for option in options:
                model = _schema(group, option)
                base = compose([f"{group}={option}"])
                for key in keys:
                    if model is None or key.split(".", 1)[1] not in model.settings:
                        continue
                    value = OmegaConf.select(base, key)
                    cfg = compose([f"{group}={option}", f"{key}={_cli(value)}"])
                    if isinstance(value, bool):
                        assert OmegaConf.select(cfg, key) is (not value), key
                    walked += 1
    assert walked > 60


def test_every_key_of_every_data_option_is_in_its_config(out):
    """The options of a group whose schemas differ (data, objective, logger, launcher) write every key their schema
    knows, so each can be set without a '+'."""
    for group in ("data", "objective", "logger", "launcher"):
        for option, model in schema.GROUPS[group].items():
            cfg = config.compose_run([f"{group}={option}"], data_here=False)
            missing = set(model.settings) - set(cfg[group])
            assert not missing, (group, option, missing)


def test_unconditional_training_from_class_subfolders_on_the_command_line(tmp_path, out):
    root = class_folder(tmp_path, {"cats": 6, "dogs": 6})
    cfg = config.compose_run(["logger=none", "data=folder", f"data.path={root}", "data.test_size=4", "data.n=8",
                              "data.conditional=false"])
    assert datasets.load_for_model(cfg.data).num_classes == 0
    np.savez(tmp_path / "x.npz", x=np.zeros((8, 4, 4), np.uint8), y=np.arange(8) % 2)
    cfg = config.compose_run(["logger=none", "data=npz", f"data.path={tmp_path / 'x.npz'}", "data.test_size=2",
                              "data.n=4", "data.conditional=false"])
    assert datasets.load_for_model(cfg.data).train_y.tolist() == [0] * 4


# -- splits that measure what they claim ----------------------------------------------------------------------------
def class_folder(tmp_path, sizes: dict, name: str = "classes") -> Path:
    root = tmp_path / name
    for k, (name, count) in enumerate(sizes.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((4, 4), 10 * k + i, np.uint8)).save(root / name / f"{i:03d}.png")
    return root


def test_class_subfolders_are_interleaved_by_default_and_sorted_stays_reachable(tmp_path, out, caplog):
    """The issue's 40 images in cats/ and dogs/, n = 16, test_size = 8: by default (data.order=auto, resolved to
    interleave) both subsets hold both classes; data.order=sorted, the old default, still gives the old split
    (every training image a cat, every test image a dog) and its run id, with a warning."""
    root = class_folder(tmp_path, {"cats": 20, "dogs": 20})
    args = ["logger=none", "data=folder", f"data.path={root}", "data.n=16", "data.test_size=8"]
    with caplog.at_level(logging.WARNING):
        auto = config.compose_run(args)
    assert auto.data.order == "interleave" and not caplog.records
    d = datasets.load(auto.data)
    assert sorted(set(d.train_y.tolist())) == sorted(set(d.test_y.tolist())) == [0, 1]
    assert identity.run_id(auto) == identity.run_id(config.compose_run([*args, "data.order=interleave"]))
    with caplog.at_level(logging.WARNING):
        old = config.compose_run([*args, "data.order=sorted"])
    d = datasets.load(old.data)
    assert set(d.train_y.tolist()) == {0} and set(d.test_y.tolist()) == {1}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "the training subset lacks dogs, which the test subset holds" in lines[0]
    assert "data.order=interleave" in lines[0]


def test_a_flat_folder_keeps_its_sorted_run_ids(tmp_path, out):
    image_dir = tmp_path / "flat"
    image_dir.mkdir()
    for i in range(12):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(image_dir / f"{i:03d}.png")
    args = ["logger=none", "data=folder", f"data.path={image_dir}", "data.n=4", "data.test_size=4"]
    auto = config.compose_run(args)
    assert auto.data.order == "sorted"
    assert identity.run_id(auto) == identity.run_id(config.compose_run([*args, "data.order=sorted"]))


def test_unequal_classes_and_npz_sorted_by_class_are_warned_about(tmp_path, out, caplog):
    root = class_folder(tmp_path, {"many": 30, "few": 3})
    three = class_folder(tmp_path, {"a": 4, "b": 4, "c": 4}, "three")
    np.savez(tmp_path / "x.npz", x=np.zeros((20, 4, 4), np.uint8), y=np.repeat([0, 1], 10))
    with caplog.at_level(logging.WARNING):
        config.compose_run(["logger=none", "data=folder", f"data.path={root}", "data.n=8", "data.test_size=6"])
        config.compose_run(["logger=none", "data=npz", f"data.path={tmp_path / 'x.npz'}", "data.n=8", "data.test_size=4"])
        # 2 images cannot hold 3 classes: not the order's doing, no warning
        config.compose_run(["logger=none", "data=folder", f"data.path={three}", "data.n=2", "data.test_size=3"])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "the test subset lacks few, which the training subset holds" in lines[0]
    assert "the training subset lacks 1, which the test subset holds" in lines[1] and "shuffle x and y" in lines[1]


@pytest.mark.parametrize("extra, named", [
    ([], "data.test_size=1000: data.path has only 40 images, and the held-out tail must leave at least 2 to train "
         "on; set data.test_size=8 (a fifth of them) or at most 38 (or give data.test_path)"),
    (["data.test_size=8"], "data.n=64 (data.offset=0) exceeds the 32 training images of folder; set data.n=32 or less"),
    (["data.test_size=8", "data.n=30", "data.offset=10"], "data.n=30 (data.offset=10) exceeds the 32 training images "
                                                          "of folder; set data.n=22 or less"),
])
def test_folder_defaults_that_do_not_fit_say_what_to_set(extra, named, tmp_path, out, capsys):
    root = class_folder(tmp_path, {"cats": 20, "dogs": 20})
    line = refused(capsys, ["train", "data=folder", f"data.path={root}", *extra], named, out)
    assert line == f"memsweep: error: {named}"


def test_npz_and_digits_test_sizes_that_do_not_fit_say_what_to_set(tmp_path, out, capsys):
    np.savez(tmp_path / "x.npz", x=np.zeros((10, 4, 4), np.uint8))
    refused(capsys, ["train", "data=npz", f"data.path={tmp_path / 'x.npz'}"], "set data.test_size=2 (a fifth of them) or "
                                                                               "at most 8", out)
    refused(capsys, ["train", "data.test_size=10000"], "data.test_size=10000: digits has only 1797 images", out)
    np.savez(tmp_path / "tiny.npz", x=np.zeros((3, 4, 4), np.uint8))
    refused(capsys, ["train", "data=npz", f"data.path={tmp_path / 'tiny.npz'}", "data.test_size=2"],
            "has only 3 images; memsweep needs at least 4", out)


# -- every file named by a setting or an option, checked before work starts --------------------------------------
@pytest.fixture
def reset_config_dirs():
    yield
    config.use_config_dirs([])  # the folders are kept per process: leave none to the next test


def test_a_config_folder_with_a_yaml_syntax_error_names_the_file_and_line(tmp_path, out, capsys, reset_config_dirs,
                                                                          monkeypatch):
    lab = tmp_path / "lab"
    (lab / "data").mkdir(parents=True)
    (lab / "data" / "lab.yaml").write_text("defaults: [digits, _self_]\nn: [16\n")
    for args in (["train", "--config-dir", str(lab), "data=lab"], ["sweep", "seed=0,1", "--name", "x", "--config-dir",
                                                                   str(lab), "data=lab", "--dry-run"]):
        line = refused(capsys, args, f"{lab / 'data' / 'lab.yaml'}, line 3: expected ',' or ']'", out)
        assert "(while parsing a flow sequence from line 2)" in line
    (lab / "sweep").mkdir()
    (lab / "sweep" / "broken.yaml").write_text("axes:\n  seed: [0, 1\n")
    refused(capsys, ["sweep", "broken", "--config-dir", str(lab), "--dry-run"],
            f"sweep broken: {lab / 'sweep' / 'broken.yaml'}, line 3", out)
    monkeypatch.setenv(config.CONFIG_PATH_ENV, str(lab))
    refused(capsys, ["train", "data=lab"], "lab.yaml, line 3", out)
    monkeypatch.setenv(config.CONFIG_PATH_ENV, str(lab / "data" / "lab.yaml"))
    refused(capsys, ["train"], f"{config.CONFIG_PATH_ENV}: {lab / 'data' / 'lab.yaml'}: not a folder (a file)", out)
    monkeypatch.delenv(config.CONFIG_PATH_ENV)
    refused(capsys, ["train", "--config-dir", str(lab / "data" / "lab.yaml")], "not a folder (a file)", out)


def test_sweep_files_that_are_missing_or_not_a_mapping(tmp_path, out, capsys):
    refused(capsys, ["sweep", str(tmp_path / "nope.yaml"), "--dry-run"], f"sweep {tmp_path / 'nope.yaml'}: no such file")
    (tmp_path / "list.yaml").write_text("- seed=0\n")
    refused(capsys, ["sweep", str(tmp_path / "list.yaml"), "--dry-run"], "holds a list, not a mapping")
    (tmp_path / "folder.yaml").mkdir()
    refused(capsys, ["sweep", str(tmp_path / "folder.yaml"), "--dry-run"], "a folder, not a file")


def torchscript(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(torch.nn.Identity()).save(str(path))
    return path


def test_data_files_and_feature_models_named_by_settings(tmp_path, out, capsys):
    """A path the user typed that does not exist or is not what the setting needs: one line, exit 2, nothing
    written (issue 30: eval.inception_path=/nonexistent used to train and log no FID)."""
    (tmp_path / "file.txt").write_text("x")
    torch.save({"w": torch.zeros(1)}, tmp_path / "weights.pt")
    good = torchscript(tmp_path / "models" / "net.pt")
    inception = torchscript(tmp_path / "inception" / INCEPTION_FILE)
    (tmp_path / "empty").mkdir()
    for args, named in [
        (["data=folder", f"data.path={tmp_path / 'file.txt'}"], "data.path=" + str(tmp_path / "file.txt") + ": not a folder (a file)"),
        (["data=npz", f"data.path={tmp_path}"], f"data.path={tmp_path}: a folder, not a file"),
        (["data=npz", f"data.path={tmp_path / 'file.txt'}"], "is not an .npz file"),
        (["eval.fid_features=inception", "eval.inception_path=/nonexistent"], "eval.inception_path=/nonexistent: no such file"),
        ([f"eval.inception_path={tmp_path / 'empty'}"], f"no {INCEPTION_FILE} in that folder"),
        ([f"eval.inception_path={good}"], f"the file must be named {INCEPTION_FILE}"),
        ([f"eval.copy_features=torchscript:{tmp_path / 'weights.pt'}"], "not a TorchScript file (one of torch.save's"),
        ([f"eval.copy_features=torchscript:{tmp_path / 'file.txt'}"], "not a TorchScript file (not a zip archive)"),
        (["eval.copy_features=torchscript:/no/such/sscd.pt"], "eval.copy_features='torchscript:/no/such/sscd.pt': no such file"),
    ]:
        refused(capsys, ["train", "logger=none", *args], named, out)
    for args in ([f"eval.inception_path={inception}"], [f"eval.inception_path={inception.parent}"],
                 [f"eval.copy_features=torchscript:{good}"]):
        assert main(["train", "--cfg", "job", *args]) == 0, capsys.readouterr().err
    capsys.readouterr()


def test_memsweep_eval_checks_the_files_it_is_given(tmp_path, out, capsys):
    out.mkdir()
    run = out / "runs" / "abc"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("data: {name: digits\n")
    (tmp_path / "notarun").mkdir()
    (tmp_path / "file.txt").write_text("x")
    root = ["--output-root", str(out)]
    refused(capsys, ["eval", str(run), *root], f"{run / 'config.yaml'}, line 2")
    refused(capsys, ["eval", str(tmp_path / "notarun"), *root], "not a run directory (no config.yaml in it)")
    (run / "config.yaml").write_text("seed: 0\n")
    refused(capsys, ["eval", str(run), *root], "is not a run's config")
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"name": "digits"}, "eval": {}}))
    for args, named in [(["--inception-path", "/nonexistent"], "--inception-path /nonexistent: no such file"),
                        (["--features", "torchscript:/no/such.pt"], "--features=torchscript:/no/such.pt: no such file"),
                        (["--features", f"torchscript:{tmp_path / 'file.txt'}"], "not a TorchScript file"),
                        (["--data-root", "/no/such/folder"], "--data-root /no/such/folder: no such folder")]:
        refused(capsys, ["eval", str(run), "fid", *args, *root], named)
