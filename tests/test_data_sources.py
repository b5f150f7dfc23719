"""data=folder and data=npz (the user's images), and the bundles bonnaire_celeba and gu_cifar10."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from memsweep import config
from memsweep.cli import main
from memsweep.data import datasets, sources
from memsweep.data.datasets import make_synthetic_cifar
from memsweep.errors import ConfigError
from memsweep.store import identity
from memsweep.store.cache import Cache
from memsweep.store.run import RunStore
from conftest import FAST

CONFIGS = Path(config.config_dir())


def write_images(folder: Path, values, size=(8, 8), mode="L", names=None):
    """One image per value, every pixel equal to it (so an image's value names it); names default to 000.png..."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, v in enumerate(values):
        shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
        name = names[i] if names else f"{i:03d}.png"
        Image.fromarray(np.full(shape, v, dtype=np.uint8), mode=mode).save(folder / name)
    return folder


def compose(*overrides):
    return config.compose_run(["logger=none", *overrides])


def load(cfg, root=None):
    return datasets.load(cfg.data, Cache(root) if root else None)


def pixel_values(x: torch.Tensor) -> list[int]:
    """The value each image was written with (from [-1, 1] back to 0..255)."""
    return [int(round(float(v))) for v in ((x[:, 0, 0, 0] + 1) * 127.5)]


def test_flat_grayscale_folder_in_sorted_order_with_a_held_out_tail(tmp_path, out):
    values = list(range(10, 40))
    names = [f"img{i:02d}.png" for i in range(30)]
    order = np.random.default_rng(0).permutation(30)  # written in a shuffled order: the order is the names'
    folder = tmp_path / "flat"
    for i in order:
        write_images(folder, [values[i]], names=[names[i]])
    cfg = compose("data=folder", f"data.path={folder}", "data.grayscale=true", "data.test_size=10", "data.n=8",
                  "data.offset=4")
    assert (cfg.data.image_size, cfg.data.channels, cfg.data.num_classes) == (8, 1, 1)
    d = load(cfg)
    assert d.train_x.shape == (8, 1, 8, 8) and d.test_x.shape == (10, 1, 8, 8)
    assert pixel_values(d.train_x) == values[4:12]          # the first n after the offset, in name order
    assert pixel_values(d.test_x) == values[20:]            # the last test_size images
    assert d.train_y.tolist() == [0] * 8
    assert sources.pool_size(cfg.data) == 20
    compose("data=folder", f"data.path={folder}", "data.test_size=10", "data.n=12", "data.offset=8")  # ends at the tail
    with pytest.raises(ConfigError, match="exceeds the 20 training images"):  # one more would reach the tail
        compose("data=folder", f"data.path={folder}", "data.test_size=10", "data.n=13", "data.offset=8")


def test_class_subfolders_rgb_labels_interleave_and_resize(tmp_path, out):
    root = tmp_path / "classes"
    for k, cls in enumerate(["cat", "ant", "bee"]):  # sorted names: ant=0, bee=1, cat=2
        write_images(root / cls, [100 + 10 * k + i for i in range(4)], size=(12, 10), mode="RGB")
    cfg = compose("data=folder", f"data.path={root}", "data.size=8", "data.test_size=3", "data.n=9", "data.order=sorted")
    assert (cfg.data.image_size, cfg.data.channels, cfg.data.num_classes) == (8, 3, 3)
    d = load(cfg)
    assert d.train_x.shape == (9, 3, 8, 8)  # shorter side to 8, centre crop
    assert d.train_y.tolist() == [0] * 4 + [1] * 4 + [2]   # sorted relative paths
    assert d.test_y.tolist() == [2, 2, 2]
    d = load(compose("data=folder", f"data.path={root}", "data.size=8", "data.test_size=3", "data.n=6",
                     "data.order=interleave"))
    assert d.train_y.tolist() == [0, 1, 2, 0, 1, 2]
    assert sorted(d.test_y.tolist()) == [0, 1, 2]
    auto = compose("data=folder", f"data.path={root}", "data.size=8", "data.test_size=3", "data.n=6")
    assert auto.data.order == "interleave" and load(auto).train_y.tolist() == [0, 1, 2, 0, 1, 2]  # the default


def test_test_path_gives_the_test_subset(tmp_path, out):
    train = write_images(tmp_path / "train", range(20))
    test = write_images(tmp_path / "test", range(100, 112))
    cfg = compose("data=folder", f"data.path={train}", f"data.test_path={test}", "data.test_size=5", "data.n=20")
    d = load(cfg)
    assert pixel_values(d.train_x) == list(range(20)) and pixel_values(d.test_x) == list(range(100, 105))


def test_decoded_once_then_a_cache_hit(tmp_path, out):
    folder = write_images(tmp_path / "flat", range(12))
    cfg = compose("data=folder", f"data.path={folder}", "data.test_size=4", "data.n=8")
    first, second = load(cfg, tmp_path / "cache"), load(cfg, tmp_path / "cache")
    assert torch.equal(first.train_x, second.train_x)
    events = [e["event"] for e in Cache(tmp_path / "cache").read_log() if e["kind"] == "data"]
    assert events == ["computed", "hit"]
    d = load(compose("data=folder", f"data.path={folder}", "data.test_size=6", "data.n=6"), tmp_path / "cache")
    assert d.test_x.shape[0] == 6  # another split of the same files: still the cached decoding
    assert [e["event"] for e in Cache(tmp_path / "cache").read_log()][-1] == "hit"


def test_a_run_trains_on_a_folder_and_decodes_it_once(tmp_path, out, one_thread):
    folder = write_images(tmp_path / "flat", np.random.default_rng(0).integers(0, 256, 24))
    args = ["data=folder", f"data.path={folder}", "data.grayscale=true", "data.test_size=8", "data.n=16", *FAST,
            "train.steps=20", "eval.num_points=2"]
    assert main(["train", *args]) == 0
    cfg = compose(*args)
    assert RunStore(identity.run_dir(cfg)).status()["state"] == "finished"
    events = [e["event"] for e in Cache(out / "cache").read_log() if e["kind"] == "data"]
    assert events[0] == "computed" and set(events[1:]) == {"hit"}


def test_the_run_id_follows_the_content_not_the_path(tmp_path, out):
    folder = write_images(tmp_path / "a", range(12))
    before = identity.run_id(compose("data=folder", f"data.path={folder}", "data.test_size=4", "data.n=8"))
    moved = shutil.copytree(folder, tmp_path / "b")
    assert identity.run_id(compose("data=folder", f"data.path={moved}", "data.test_size=4", "data.n=8")) == before
    write_images(tmp_path / "c", range(13))
    other = identity.run_id(compose("data=folder", f"data.path={tmp_path / 'c'}", "data.test_size=4", "data.n=8"))
    assert other != before


@pytest.mark.parametrize("layout", ["nhw", "nhwc1", "nhwc3", "nchw1", "nchw3"])
@pytest.mark.parametrize("dtype", ["uint8", "float01", "float11"])
def test_npz_layouts_and_dtypes(tmp_path, out, layout, dtype):
    rng = np.random.default_rng(0)
    c = 3 if layout.endswith("3") else 1
    u8 = rng.integers(0, 256, (12, 6, 6, c), dtype=np.uint8)  # NHWC
    x = {"uint8": u8, "float01": u8 / 255.0, "float11": u8 / 127.5 - 1.0}[dtype]
    x = {"nhw": x[..., 0], "nchw1": x.transpose(0, 3, 1, 2), "nchw3": x.transpose(0, 3, 1, 2)}.get(layout, x)
    y = np.arange(12) % 3
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=y)
    cfg = compose("data=npz", f"data.path={path}", "data.test_size=4", "data.n=8")
    assert (cfg.data.image_size, cfg.data.channels, cfg.data.num_classes) == (6, c, 3)
    d = load(cfg)
    want = torch.as_tensor(u8, dtype=torch.float32).permute(0, 3, 1, 2) / 127.5 - 1.0
    torch.testing.assert_close(d.train_x, want[:8], atol=1e-6, rtol=0)
    torch.testing.assert_close(d.test_x, want[8:], atol=1e-6, rtol=0)
    assert d.train_y.tolist() == y[:8].tolist() and d.test_y.tolist() == y[8:].tolist()


def test_npz_without_labels_is_one_class(tmp_path, out):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.zeros((10, 4, 4), dtype=np.uint8))
    cfg = compose("data=npz", f"data.path={path}", "data.test_size=2", "data.n=8")
    assert cfg.data.num_classes == 1 and load(cfg).train_y.tolist() == [0] * 8


def _bad_inputs(tmp_path):
    """(overrides, what the one line must name) for each bad input."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    broken = write_images(tmp_path / "broken", range(6))
    (broken / "003.png").write_bytes(b"not a png")
    mixed = write_images(tmp_path / "mixed", range(6))
    write_images(tmp_path / "mixed", [7], size=(10, 10), names=["004.png"])
    np.savez(tmp_path / "nox.npz", images=np.zeros((8, 4, 4), dtype=np.uint8), labels=np.zeros(8))
    train = write_images(tmp_path / "train", range(10))
    dup = write_images(tmp_path / "dup", range(50, 54))
    shutil.copy(train / "002.png", dup / "zz.png")
    sub = train / "sub"
    return [
        (["data=folder"], "data.path is not set"),
        (["data=folder", f"data.path={empty}"], "no images there"),
        (["data=folder", f"data.path={broken}"], "003.png"),
        (["data=folder", f"data.path={mixed}"], "004.png"),
        (["data=npz", f"data.path={tmp_path / 'nox.npz'}"], "has no array 'x' (it has: images, labels)"),
        (["data=folder", f"data.path={train}", f"data.test_path={dup}"], "zz.png"),
        (["data=folder", f"data.path={train}", f"data.test_path={train}"], "also a training image"),
        (["data=folder", f"data.path={train}", f"data.test_path={sub}"], "data.test_path"),
    ]


def test_bad_inputs_are_refused_in_one_line_with_nothing_written(tmp_path, out, capsys):
    fast = ["logger=none", "runtime.progress=false", "train.steps=10", "data.test_size=2", "data.n=2"]
    for overrides, named in _bad_inputs(tmp_path):
        assert main(["train", *overrides, *fast]) == 2, overrides
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("memsweep: error:") and named in err[0], (overrides, err)
        assert not (out / "runs").exists(), overrides


def test_min_resolver():
    assert OmegaConf.create({"n": 100, "b": "${min:512,${n}}"}).b == 100
    assert OmegaConf.create({"n": 4096, "b": "${min:512,${n}}"}).b == 512


def linked_folder(folder: Path, count: int) -> Path:
    """`count` images (hard links to one 32x32 PNG): enough files for the sweep's largest n, cheaply."""
    first = write_images(folder, [128], size=(32, 32)) / "000.png"
    for i in range(1, count):
        os.link(first, folder / f"{i:06d}.png")
    return folder


def _dry_runs(tmp_path, capsys):
    folder = linked_folder(tmp_path / "celeba", 32768 + 2048)
    assert main(["sweep", "bonnaire_celeba", "--dry-run", f"data.path={folder}"]) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "36 runs" in text and "36 to launch" in text
    make_synthetic_cifar(tmp_path / "cifar", per_batch=20)
    assert main(["sweep", "gu_cifar10", "--dry-run", f"data.root={tmp_path / 'cifar'}"]) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "8 runs" in text and "8 to launch" in text
    cfg = config.compose_run(["+experiment=bonnaire_celeba", f"data.path={folder}", "data.n=256"])
    assert cfg.train.batch_size == 256 and cfg.data.channels == 1 and cfg.data.image_size == 32
    assert config.compose_run(["+experiment=bonnaire_celeba", f"data.path={folder}"]).train.batch_size == 512
    with pytest.raises(ConfigError, match="data.path is not set"):
        config.compose_run(["+experiment=bonnaire_celeba"])
    cfg = config.compose_run(["+experiment=gu_cifar10", f"data.root={tmp_path / 'cifar'}"])
    assert (cfg.train.batch_size, cfg.eval.sampler, cfg.eval.sampler_steps, cfg.model.name) == (512, "heun", 18, "ddpmpp")


def test_bundle_sweeps_dry_run(tmp_path, out, capsys):
    _dry_runs(tmp_path, capsys)


def test_the_bonnaire_bundle_samples_with_their_ddim_and_v0_composes_the_runs_made_before(tmp_path, out, capsys):
    folder = linked_folder(tmp_path / "celeba", 1024 + 2048)
    assert main(["train", "--cfg", "job", "+experiment=bonnaire_celeba", f"data.path={folder}"]) == 0
    assert "  sampler: ddim_bonnaire\n" in capsys.readouterr().out
    assert main(["train", "+experiment=bonnaire_celeba", f"data.path={folder}", "objective=edm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "eval.sampler=ddim_bonnaire: objective edm samples with heun" in err[0], err
    old = config.compose_run(["+experiment=bonnaire_celeba_v0", f"data.path={folder}"])
    before = config.compose_run(["+experiment=bonnaire_celeba", f"data.path={folder}", "eval.sampler=ddim"])
    assert old.eval.sampler == "ddim" and identity.run_id(old) == identity.run_id(before)
    assert not (out / "runs").exists()
