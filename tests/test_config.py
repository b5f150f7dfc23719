"""Composition of every config group, overrides, validation, and run identity."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from memsweep import config
from memsweep.errors import ConfigError
from memsweep.eval.evaluator import keys_of
from memsweep.science import networks, unet
from memsweep.store import identity
from memsweep.sweeps import spec

CONFIGS = Path(config.config_dir())


def options(group):
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["data", "model", "optim", "train", "eval", "logger", "launcher", "paths", "runtime"])
def test_every_option_of_every_group_composes(group, tmp_path):
    assert options(group), f"configs/{group} is empty"
    for option in options(group):
        extra = ["data.download=true"] if (group == "data" and option == "cifar10") else []
        if group == "data" and option in ("folder", "npz"):  # the user's files: a few written here
            extra = [f"data.path={_small_files(tmp_path, option)}", "data.test_size=4", "data.n=16"]
        cfg = config.compose_run([f"{group}={option}", *extra])
        assert cfg.train.total_steps > 0


def _small_files(tmp_path, kind):
    images = np.random.default_rng(0).integers(0, 256, (20, 8, 8), dtype=np.uint8)
    if kind == "npz":
        np.savez(tmp_path / "x.npz", x=images)
        return tmp_path / "x.npz"
    (tmp_path / "images").mkdir()
    for i, a in enumerate(images):
        Image.fromarray(a).save(tmp_path / "images" / f"{i:02d}.png")
    return tmp_path / "images"


def test_every_model_preset_builds():
    for option in options("model"):
        cfg = config.compose_run([f"model={option}"])
        size = 8 if option == "tiny" else 32
        m = networks.build(cfg.model, size, 1 if size == 8 else 3, 10)   # the U-Net, or a network by _target_
        assert unet.count_parameters(m) > 0


def test_the_papers_unet_has_its_parameter_count_and_older_presets_keep_their_ids():
    """c128_paper is within 1.5% of the paper's 92M parameters at 32x32 (Marion & Wu 2026, its authors' public
    version), where c128 is not; model.resample at its default leaves the id of a run composed without it."""
    def count(option):
        return unet.count_parameters(unet.build(config.compose_run([f"model={option}"]).model, 32, 3, 10))
    assert abs(count("c128_paper") / 92e6 - 1) < 0.015 and abs(count("c128") / 92e6 - 1) > 0.1
    c128 = identity.run_id(config.compose_run(["model=c128"]))
    assert identity.run_id(config.compose_run(["model=c128", "+model.resample=conv"])) == c128
    assert identity.run_id(config.compose_run(["model=c128", "+model.resample=resblock"])) != c128


def test_canonical_keys_and_overrides():
    cfg = config.compose_run(["data.n=64", "optim.lr=3e-4", "train.batch_size=16", "seed=3", "model=tiny"])
    assert (cfg.data.n, cfg.optim.lr, cfg.train.batch_size, cfg.seed, cfg.model.name) == (64, 3e-4, 16, 3, "tiny")


def test_budget_in_epochs_or_images_scales_with_n():
    a = config.compose_run(["train.steps=null", "train.epochs=10", "data.n=64", "train.batch_size=32"])
    b = config.compose_run(["train.steps=null", "train.epochs=10", "data.n=128", "train.batch_size=32"])
    c = config.compose_run(["train.steps=null", "train.images=3200", "train.batch_size=32"])
    assert (a.train.total_steps, b.train.total_steps, c.train.total_steps) == (20, 40, 100)


def test_run_id_depends_on_what_defines_the_result_only():
    base = identity.run_id(config.compose_run([]))
    assert base == identity.run_id(config.compose_run([]))
    assert base == identity.run_id(config.compose_run(["logger=none", "runtime.device=cpu", "runtime.threads=1"]))
    for change in (["data.n=32"], ["seed=1"], ["optim.lr=2e-3"], ["train.batch_size=64"], ["eval.num_samples=100"]):
        assert identity.run_id(config.compose_run(change)) != base, change


# The demo's settings until issue 15 (configs/sweep/demo.yaml then), pinned here: the same config keeps its run
# id whatever code changes around it (a store made by an older memsweep is still found). The demo now has other
# settings and so other runs; these five ids must not move.
OLD_DEMO = ["data=digits", "model=tiny", "train.batch_size=32", "optim.lr=1e-3", "train.steps=null",
            "train.epochs=2000", "eval.num_points=16"]
OLD_DEMO_IDS = {16: "43b4742df61e", 24: "78eca297069f", 32: "2adf7c83d482", 48: "716a051a9d0e", 64: "a345c2f36e35"}


def test_old_demo_run_ids_are_stable():
    for n, run_id in OLD_DEMO_IDS.items():
        assert identity.run_id(config.compose_run(OLD_DEMO + [f"data.n={n}"])) == run_id, n


# paper_cifar10 and its four sweeps before issue 27 recovered the paper's protocol: the run ids they composed on main
# then, in each sweep's order. paper_cifar10_v0 and the *_v0 sweeps must keep composing exactly these.
OLD_PAPER_ID = "6d9629f1bd6a"
OLD_PAPER_SWEEP_IDS = {
    "dataset_size": ["ab4d0127bc9f", "38db45ff24ef", "fb5fb1c0a6c1", "a324fcf61bcc", "0196974e7d17", "b85178807ee4"],
    "batch_size": ["4a4f4adf8779", "6d9629f1bd6a", "b59bef8d5c32", "f416ac254c85"],
    "learning_rate": ["3d3ffe78d163", "32357d15c6e7", "6d9629f1bd6a", "abc54b2dcfee", "9bbe855673fb", "9b6de4d2c28c"],
    "model_size": ["6be1995dca6f", "a895d898285a", "6d9629f1bd6a", "98790d0805b0"],
}


def test_paper_cifar10_v0_composes_the_runs_made_before_and_the_new_sweeps_share_figure_1s_run():
    assert identity.run_id(config.compose_run(["+experiment=paper_cifar10_v0"], data_here=False)) == OLD_PAPER_ID
    for name, ids in OLD_PAPER_SWEEP_IDS.items():
        assert [r.run_id for r in spec.expand(f"{name}_v0", data_here=False).runs] == ids, name
    centre = config.compose_run(["+experiment=paper_cifar10"], data_here=False)
    assert (centre.data.n, centre.train.batch_size, centre.optim.lr) == (2048, 16, 1e-4)
    assert centre.model.name == "c128_paper"
    smallest = {"dataset_size": ("data.n", 2048), "batch_size": ("train.batch_size", 16),
                "learning_rate": ("optim.lr", 1e-5), "model_size": ("model", "c64_paper")}
    for name, (key, first) in smallest.items():
        runs = spec.expand(name, data_here=False).runs
        assert runs[0].axes[key] == first and identity.run_id(centre) in [r.run_id for r in runs], name
        assert not {r.run_id for r in runs} & {i for ids in OLD_PAPER_SWEEP_IDS.values() for i in ids}, name


def test_paper_cifar10_scores_memorization_in_sscd_space_when_given_the_file(tmp_path):
    """The paper's score: max cosine similarity in SSCD space above 0.6, logged as copy_sscd (the configured
    threshold, so no _t suffix), beside the 1/3 rule; SW on 2,000 samples, FID on as many as each split has."""
    sscd = tmp_path / "sscd_disc_mixup.torchscript.pt"
    torch.jit.script(torch.nn.Identity()).save(str(sscd))   # composing checks it is a TorchScript file
    cfg = config.compose_run(["+experiment=paper_cifar10", f"eval.copy_features='torchscript:sscd={sscd}'"],
                             data_here=False)   # quoted, as the sweep files say: Hydra takes a second '=' so only
    assert keys_of(cfg.eval, "copy", cfg.eval.copy_features)[0] == "copy_sscd" and cfg.eval.copy_threshold == 0.6
    assert (cfg.eval.num_samples, cfg.eval.sw_features, cfg.eval.fid_samples) == (2000, "inception", "reference")
    assert config.compose_run(["+experiment=paper_cifar10"], data_here=False).eval.copy_features == "none"


@pytest.mark.parametrize("override, setting", [
    ("data.n=0", "data.n"), ("data.n=100000", "data.n"), ("data.n=-3", "data.n"),
    ("train.batch_size=0", "train.batch_size"), ("optim.lr=0", "optim.lr"), ("optim.lr=-1", "optim.lr"),
    ("train.steps=0", "train.steps"), ("eval.num_samples=0", "eval.num_samples"),
    ("model=huge", "model"), ("data=imagenet", "data"), ("logger=tensorboard", "logger"),
    ("data.nn=3", "data.nn"), ("eval.sampler=rk4", "eval.sampler"), ("runtime.device=tpu", "runtime.device"),
    ("data=cifar10", "data.root"), ("train.ema_decay=1.5", "train.ema_decay"),
])
def test_bad_settings_are_named(override, setting, monkeypatch):
    monkeypatch.delenv("CIFAR10_ROOT", raising=False)
    with pytest.raises(ConfigError) as e:
        config.compose_run([override])
    assert setting in str(e.value)
    assert "\n" not in str(e.value)
