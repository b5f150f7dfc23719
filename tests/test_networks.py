"""The network seam (science.networks): any nn.Module named by a model config's `_target_`, checked when the run is
composed, trained, resumed, evaluated and planned like memsweep's U-Net; the local CNN; run ids unchanged."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from memsweep import config
from memsweep.cli import main
from memsweep.data.datasets import make_synthetic_cifar
from memsweep.science import network_spec, networks
from memsweep.science.local_cnn import LocalCNN
from memsweep.store import identity
from memsweep.store.run import RunStore
from memsweep.sweeps import cost
from memsweep.train.loop import train
from memsweep.train.packing import make_packs, pack_key
from memsweep.train.schedule import eval_steps

from conftest import FAST, run_cli

REPO = Path(__file__).resolve().parents[1]

# run ids composed with the code before the network seam (main at 20745ab): they must never change
PINNED = [
    ([], "41ab76599980"), (["model=c32"], "ee1ae526cb8f"), (["model=c64"], "ac6c2e7e4c28"),
    (["model=c128"], "421a360bdecd"), (["model=c192"], "431276f0997a"), (["model=ddpmpp"], "185a31a24750"),
    (["model=c128_paper"], "b892a61f8cb7"), (["model=c64_paper"], "a677c779b41b"),
    (["objective=vp", "data.n=64"], "2c22e0ee26c2"),
    (["objective=edm", "model=c32", "data.conditional=false"], "b672bdfa52cc"),
    (["+experiment=paper_cifar10", "data.root=CIFAR"], "ea37c84f91db"),
    (["+experiment=gu_cifar10", "data.root=CIFAR"], "10119c401930"),
]

# a lab's networks, in a package of their own (tests put it on the path or install it as a wheel)
LABNETS = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


class TinyNet(nn.Module):
    """Keeps the contract: forward(x, noise, labels) -> x's shape."""
    def __init__(self, image_size, in_channels, num_classes=None, width=8):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels + 1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, in_channels, 3, padding=1)
        self.emb = nn.Embedding((num_classes or 0) + 1, width)

    def forward(self, x, noise, labels):
        h = torch.cat([x, noise.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:]).to(x.dtype)], 1)
        return self.conv2(F.silu(self.conv1(h) + self.emb(labels)[:, :, None, None]))


def needs_depth(image_size, in_channels, num_classes, depth):
    return TinyNet(image_size, in_channels, num_classes, width=depth)


class WrongShape(TinyNet):
    def forward(self, x, noise, labels):
        return super().forward(x, noise, labels)[:, :, :4]


class Fails(TinyNet):
    def forward(self, x, noise, labels):
        raise RuntimeError("no forward yet")


def not_a_module(image_size, in_channels, num_classes):
    return 3


class NotOnMeta(TinyNet):
    """Reads a number off its input: cannot run on the meta device, runs on a CPU."""
    def forward(self, x, noise, labels):
        return super().forward(x, noise, labels) * (1 + 0 * float(noise[0]))
'''
LABNET_YAML = "_target_: labnets.TinyNet\nname: labnet\nwidth: 8\n"


@pytest.fixture
def labnets(tmp_path, monkeypatch):
    """The package `labnets` importable in this process and its children, and a config folder with model/labnet."""
    pkg = tmp_path / "lab" / "labnets"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(LABNETS)
    configs = tmp_path / "labconfigs" / "model"
    configs.mkdir(parents=True)
    (configs / "labnet.yaml").write_text(LABNET_YAML)
    monkeypatch.syspath_prepend(str(pkg.parent))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pkg.parent), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv(config.CONFIG_PATH_ENV, str(configs.parent))
    yield pkg.parent
    sys.modules.pop("labnets", None)
    networks._checked.cache_clear()


def test_existing_configs_keep_their_run_ids(tmp_path, out):
    root = make_synthetic_cifar(tmp_path).parent
    for overrides, want in PINNED:
        cfg = config.compose_run(["logger=none", *[o.replace("CIFAR", str(root)) for o in overrides]])
        assert identity.run_id(cfg) == want, overrides


def test_the_id_holds_the_target_and_its_arguments(out):
    a = config.compose_run(["model=local_cnn"])
    b = config.compose_run(["model=local_cnn", "model.receptive_field=7"])
    assert identity.identity(a)["model"]["_target_"] == "memsweep.science.local_cnn.LocalCNN"
    assert identity.run_id(a) != identity.run_id(b)
    assert network_spec.label(a.model) == "local_cnn"


@pytest.mark.parametrize("receptive_field", [3, 5, 9])
def test_the_local_cnn_sees_exactly_its_receptive_field(receptive_field):
    torch.manual_seed(0)
    net = LocalCNN(16, 2, 10, receptive_field=receptive_field, channels=8)
    for p in net.parameters():   # the zero-initialized layers would hide the field
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(1, 2, 16, 16, requires_grad=True)
    net(x, torch.tensor([0.3]), torch.tensor([4]))[0, 1, 8, 8].backward()
    seen = (x.grad[0].abs().sum(0) > 0).nonzero()
    r = receptive_field // 2
    assert seen.min(0).values.tolist() == [8 - r, 8 - r] and seen.max(0).values.tolist() == [8 + r, 8 + r]


def test_the_circular_local_cnn_is_equivariant_to_shifts():
    torch.manual_seed(1)
    net = LocalCNN(8, 1, None, receptive_field=5, channels=8, padding="circular")
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x, t, y = torch.randn(3, 1, 8, 8), torch.rand(3), torch.zeros(3, dtype=torch.long)
    shifted = net(torch.roll(x, (2, -3), (2, 3)), t, y)
    torch.testing.assert_close(shifted, torch.roll(net(x, t, y), (2, -3), (2, 3)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("overrides, message", [
    (["model._target_=labnets.Nope"], "cannot import labnets.Nope (module labnets has no Nope"),
    (["model._target_=nolab.nets.Net"], "cannot import nolab.nets.Net (no module named nolab"),
    (["model._target_=labnets.needs_depth", "~model.width"],
     "cannot build it with image_size=8, in_channels=1, num_classes=10 and its settings (TypeError: "
     "needs_depth() missing 1 required positional argument: 'depth')"),
    (["+model.depth_typo=3"], "unexpected keyword argument 'depth_typo'"),
    (["model._target_=labnets.WrongShape"], "its forward returns (2, 1, 4, 8) for x of shape (2, 1, 8, 8): it must "
                                            "return x's shape"),
    (["model._target_=labnets.Fails"], "its forward(x, noise, labels) fails on x of shape (2, 1, 8, 8) "
                                       "(RuntimeError: no forward yet)"),
    (["model._target_=labnets.not_a_module", "~model.width"], "builds a int, not a torch.nn.Module"),
    (["+model.num_classes=3"], "sets num_classes, which memsweep passes from the data"),
    (["model._target_=7"], "model._target_=7: must be an import path"),
])
def test_a_broken_target_is_one_line_naming_the_model_setting(labnets, overrides, message, capsys, out):
    assert main(["train", "model=labnet", *overrides]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("memsweep: error: model._target_") and message in err[0], err
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()


def test_a_network_that_cannot_run_on_meta_is_checked_on_the_cpu_and_its_cost_said_unknown(labnets, out, capsys):
    cfg = config.compose_run(["model=labnet", "model._target_=labnets.NotOnMeta"])
    assert cost.run_cost(cfg) is None and "cannot be counted on the meta device" in cost.why_unknown(cfg)
    assert main(["sweep", "model=labnet", "model._target_=labnets.NotOnMeta", "seed=0,1", "--name", "m",
                 "--dry-run"]) == 0
    assert "cost: unknown for 2 runs (the FLOPs of model labnet cannot be counted" in capsys.readouterr().out


def test_a_target_trains_alone_and_its_flops_are_counted(labnets, out, capsys):
    tiny = [config.compose_run(["model=tiny", f"seed={s}"]) for s in (0, 1)]
    own = [config.compose_run(["model=labnet", f"seed={s}"]) for s in (0, 1)]
    assert pack_key(own[0]) is None and pack_key(tiny[0]) is not None
    assert sorted(len(p) for p in make_packs(tiny + own, 4, 1)) == [1, 1, 2]
    c = cost.run_cost(own[0])
    # TinyNet: two 3x3 convolutions on 8x8, 2 FLOPs per multiply-add
    assert c.forward == 2 * 64 * 9 * (2 * 8 + 8 * 1)
    assert main(["sweep", "model=tiny,labnet", "--name", "arch", "--dry-run"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "would train them in 2 worker jobs" in text and "cost of 2 runs" in text


def test_a_users_network_trains_resumes_and_is_evaluated(labnets, out):
    args = [*FAST, "model=labnet", "runtime.checkpoint_every=10"]
    cfg = config.compose_run(args)
    train(cfg)
    reference = RunStore(identity.run_dir(cfg)).read_metrics()
    # the same run in a fresh process, killed mid-step after its first checkpoints, then launched again
    env = {"MEMSWEEP_OUTPUT_ROOT": str(out / "again")}
    killed = run_cli("train", *args, env={**env, "MEMSWEEP_FAILPOINT": "step:35"})
    assert killed.returncode != 0
    resumed = run_cli("train", *args, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = RunStore(out / "again" / "runs" / identity.run_id(cfg)).read_metrics()
    assert [r["step"] for r in rows] == [r["step"] for r in reference] == eval_steps(60, 10, 4)
    for a, b in zip(rows, reference):
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-5) and a["mem_ratio"] == b["mem_ratio"]
    # metrics after the fact and the probes rebuild the network from its evaluation weights
    r = run_cli("eval", identity.run_id(cfg), "els", "--steps", "last", "--output-root", str(out), env={})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "els_dist" in RunStore(identity.run_dir(cfg)).read_metrics()[-1]


@pytest.mark.slow
def test_a_network_from_an_installed_wheel_trains_beside_tiny_in_a_sweep(tmp_path):
    """A lab's package outside the checkout, built as a wheel and installed: its network in a sweep beside
    model=tiny, trained, then reported."""
    lab = tmp_path / "labsrc"
    (lab / "labnets").mkdir(parents=True)
    (lab / "labnets" / "__init__.py").write_text(LABNETS)
    (lab / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "labnets"
        version = "0.1"
        """))
    configs = tmp_path / "labconfigs" / "model"
    configs.mkdir(parents=True)
    (configs / "labnet.yaml").write_text(LABNET_YAML)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheels"), str(lab)],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheels").glob("labnets-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True)
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(REPO / "src")]),
           "MEMSWEEP_OUTPUT_ROOT": str(tmp_path / "outputs")}
    steps = ["train.steps=40", "eval.num_points=3", "eval.first_step=10", "eval.num_samples=32",
             "eval.loss_points=64", "eval.sw_projections=64", "logger=none"]
    r = run_cli("sweep", "model=tiny,labnet", "--name", "lab", "--config-dir", str(configs.parent), "--quiet",
                *steps, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("report", "lab", "--no-probes", "--wandb-mode", "disabled", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = (tmp_path / "outputs" / "sweeps" / "lab" / "summary.csv").read_text()
    assert "labnet" in summary and "tiny" in summary
    record = json.loads((tmp_path / "outputs" / "sweeps" / "lab" / "sweep.json").read_text())
    assert len(record["runs"]) == 2


def test_train_help_shows_how_to_plug_in_a_network(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert "_target_: mylab.nets.Net" in text and "docs/networks.md" in text and "local_cnn" in text
