"""Packed training (memsweep.train.packed): runs trained as one network give the runs trained one by one, in the same
files, and a killed pack resumes each run."""
import copy
import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from memsweep import config
from memsweep.science import unet
from memsweep.train.packing import make_packs, pack_key
from memsweep.store.run import RunStore
from memsweep.store.run_dir import ELSEWHERE
from memsweep.train.loop import train, train_runs
from memsweep.store import identity

from conftest import FAST, assert_same_run

# two runs that differ in what a pack allows: data size, seed, learning rate, EMA decay, grad clipping, length
SPECS = [["data.n=16", "seed=0", "train.steps=30", "runtime.checkpoint_every=5"],
         ["data.n=24", "seed=1", "optim.lr=2e-3", "train.ema_decay=0.99", "optim.grad_clip=0.5", "train.steps=20",
          "runtime.checkpoint_every=4"]]
SHORT = ["eval.num_points=2"]


def compose(root, spec):
    return config.compose_run([*FAST, *SHORT, *spec, f"paths.output_root={root}"])


pytestmark = pytest.mark.xdist_group("test_packed")   # its module fixture trains once, on one worker


@pytest.fixture(scope="module")
def solo(tmp_path_factory):
    """The runs trained one by one with train()."""
    root = tmp_path_factory.mktemp("solo")
    cfgs = [compose(root, s) for s in SPECS]
    for cfg in cfgs:
        assert train(cfg)["state"] == "finished"
    return cfgs


@pytest.mark.parametrize("resample", ["conv", "resblock"])
def test_a_packed_network_computes_each_copy(resample):
    cfg = config.compose_run(["logger=none", f"+model.resample={resample}"])
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        m = unet.build(cfg.model, 8, 1, 10)
        with torch.no_grad():  # away from the zero-initialized start, so every layer matters
            for p in m.parameters():
                p.add_(0.1 * torch.randn_like(p))
        models.append(m)
    packed = unet.build(cfg.model, 8, 1, 10, copies=3).to(memory_format=torch.channels_last)
    with torch.no_grad():
        for i, p in enumerate(packed.parameters()):
            for k, m in enumerate(models):
                p.unflatten(0, (3, -1))[k].copy_(list(m.parameters())[i])
        x, t, y = torch.randn(5, 3, 1, 8, 8), torch.rand(5, 3), torch.randint(0, 11, (5, 3))
        want = torch.stack([m(x[:, k], t[:, k], y[:, k]) for k, m in enumerate(models)], dim=1)
        assert want.abs().max() > 0.1
        torch.testing.assert_close(packed(x, t, y), want, rtol=1e-5, atol=1e-5)


def test_a_packed_run_killed_and_resumed_is_the_run_trained_alone(tmp_path, solo):
    """A pack of the two runs, killed at step 17 when their latest checkpoints are at steps 15 and 16, then
    resumed: the pack has runs at different Adam steps (updated one by one), then one run left in it. Each run
    ends with the files, metrics and weights it has when trained alone."""
    cfgs = [compose(tmp_path, s) for s in SPECS]
    code = ("import sys; from memsweep import config; from memsweep.train.loop import train_runs; "
            "train_runs([config.compose_run(a.split('|')) for a in sys.argv[1:]])")
    args = ["|".join([*FAST, *SHORT, *s, f"paths.output_root={tmp_path}"]) for s in SPECS]
    killed = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                            env={**os.environ, "MEMSWEEP_FAILPOINT": "step:17"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    steps = [RunStore(identity.run_dir(c)).checkpoint_steps()[-1] for c in cfgs]
    assert steps == [15, 16]
    assert [s["state"] for s in train_runs(cfgs)] == ["finished", "finished"]
    for got, want in zip(cfgs, solo):
        assert_same_run(identity.run_dir(got), identity.run_dir(want), want.train.total_steps)
    assert [s["state"] for s in train_runs(cfgs)] == ["finished", "finished"]  # asked again: left alone


def test_a_pack_trains_its_runs_that_no_other_process_holds(tmp_path):
    # another sweep's process holds the second run: the pack trains the first and leaves the second alone
    a, b = (compose(tmp_path, spec) for spec in SPECS)
    held = RunStore(identity.run_dir(b))
    with held.lock():
        got = train_runs([a, b])
    assert got[0]["state"] == "finished" and got[1]["state"] == ELSEWHERE
    assert held.status()["state"] == "pending" and not held.checkpoint_steps()


def test_runs_are_packed_by_architecture_and_balanced_over_workers():
    base = config.compose_run(["logger=none"])

    def variant(**changes):
        cfg = copy.deepcopy(base)
        with open_dict(cfg):
            for key, value in changes.items():
                OmegaConf.update(cfg, key, value)
        return cfg

    cfgs = [variant(**{"data.n": 16 + i, "train.total_steps": s}) for i, s in enumerate([400, 300, 200, 150, 100])]
    packs = make_packs(cfgs, size=4, workers=2)
    assert [[c.train.total_steps for c in p] for p in packs] == [[300, 200, 100], [400, 150]]
    assert sorted(len(p) for p in make_packs(cfgs, size=2, workers=2)) == [1, 2, 2]
    assert all(len(p) == 1 for p in make_packs(cfgs, size=1, workers=2))
    wide, dropout = variant(**{"model.channels": 16}), variant(**{"model.dropout": 0.1})
    assert pack_key(wide) != pack_key(cfgs[0]) and pack_key(dropout) is None
    assert sorted(len(p) for p in make_packs([*cfgs[:2], wide, dropout], size=4, workers=1)) == [1, 1, 2]


def test_a_pack_applies_the_precision_and_optimizer_options(tmp_path):
    """bfloat16 autocast and the unfused Adam apply to a pack as to one run."""
    opts = ["train.dtype=bfloat16", "runtime.fused_adam=false", "train.steps=5", "eval.num_points=1"]
    solo = [compose(tmp_path / "solo", [*s[:2], *opts]) for s in SPECS]
    packed = [compose(tmp_path / "pack", [*s[:2], *opts]) for s in SPECS]
    for cfg in solo:
        train(cfg)
    assert [s["state"] for s in train_runs(packed)] == ["finished", "finished"]
    for a, b in zip(packed, solo):
        got, want = (RunStore(identity.run_dir(c)).read_metrics()[-1] for c in (a, b))
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=0.02)
        state = RunStore(identity.run_dir(a)).load_latest_checkpoint()["optimizer"]
        assert state["param_groups"][0]["fused"] is False and state["state"][0]["step"].device.type == "cpu"
