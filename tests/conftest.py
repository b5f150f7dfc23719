import os
import subprocess
import sys

import pytest
import torch

from memsweep.data.datasets import load
from memsweep.eval.evaluator import Evaluator
from memsweep.science import unet
from memsweep.store import identity
from memsweep.store.run import RunStore

os.environ.setdefault("WANDB_MODE", "disabled")  # tests never talk to wandb's servers
os.environ.setdefault("WANDB_SILENT", "true")

# A run small enough for a test: tiny U-Net, a few evaluations, few samples.
FAST = ["logger=none", "runtime.progress=false", "runtime.threads=1", "train.steps=60",
        "eval.num_points=4", "eval.first_step=10", "eval.num_samples=32", "eval.loss_points=64",
        "eval.sw_projections=64", "eval.grid_samples=4"]


def pytest_collection_modifyitems(config, items):
    """The longest first (the Slurm tests, one worker's whole share for a while, then those marked slow):
    xdist hands tests out in this order, round robin at first, so the long ones start on both workers at once
    instead of leaving one worker the long tail while the other idles."""
    items.sort(key=lambda item: (item.get_closest_marker("slurm") is None, item.get_closest_marker("slow") is None))


@pytest.fixture
def out(tmp_path, monkeypatch):
    """A private output root for the test, and a private user cache folder (the kept FLOP counts and Hydra's
    compositions: store.user_cache)."""
    root = tmp_path / "outputs"
    monkeypatch.setenv("MEMSWEEP_OUTPUT_ROOT", str(root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    return root


def run_cli(*args, env=None, timeout=600):
    """Run the memsweep command as a user would, in a fresh process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "memsweep.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


@pytest.fixture
def one_thread():
    """One torch thread, as runs use (runtime.threads=1): on a shared CPU more threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# metrics two ways of training a run must agree on (besides mem_ratio, a count)
FLOAT_KEYS = ("train_loss", "test_loss", "nn_dist", "sw_train", "sw_test", "fid_train", "fid_test")


def assert_same_run(got_dir, want_dir, total_steps: int):
    """Two run directories (a run trained two ways): same files, same metrics rows and same final checkpoint,
    within float tolerance (a pack's grouped kernels sum in another order)."""

    got, want = RunStore(got_dir), RunStore(want_dir)
    files = lambda s: sorted(p.relative_to(s.dir).as_posix() for p in s.dir.rglob("*") if p.is_file())  # noqa: E731
    assert files(got) == files(want)
    assert got.status()["state"] == "finished" and got.status()["step"] == total_steps
    a, b = got.read_metrics(), want.read_metrics()
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key in FLOAT_KEYS:
            assert ra[key] == pytest.approx(rb[key], rel=1e-4, abs=1e-6), (ra["step"], key)
        assert ra["mem_ratio"] == pytest.approx(rb["mem_ratio"], abs=1.5 / 32)  # a count out of 32 samples
    ca, cb = got.load_latest_checkpoint(), want.load_latest_checkpoint()
    assert ca["step"] == cb["step"]
    for part in ("model", "ema"):  # one Adam step moves a weight by ~lr (1e-3); reordered sums differ by far less
        for name in cb[part]:
            torch.testing.assert_close(ca[part][name], cb[part][name], rtol=1e-3, atol=1e-4)
    assert ca["optimizer"]["param_groups"] == cb["optimizer"]["param_groups"]
    for i, state in cb["optimizer"]["state"].items():
        assert ca["optimizer"]["state"][i]["step"] == state["step"]
        torch.testing.assert_close(ca["optimizer"]["state"][i]["exp_avg"], state["exp_avg"], rtol=1e-3, atol=1e-6)
    assert torch.equal(ca["generator"], cb["generator"])  # each run drew its batches from its own stream


def evaluated_run(cfg, steps):
    """A run directory as training leaves it, from evaluations of an untrained model at `steps` (no training
    needed): its config, and each evaluation's samples, weights and metrics row. Returns (store, data, evaluator,
    model)."""
    store = RunStore(identity.run_dir(cfg))
    store.write_config(cfg)
    data = load(cfg.data)
    torch.manual_seed(0)
    model = unet.build(cfg.model, cfg.data.image_size, cfg.data.channels, data.num_classes).eval()
    ev = Evaluator(cfg, data, torch.device("cpu"))
    for step in steps:
        row, samples, _ = ev(model, step)
        store.save_samples(step, samples, ev.sample_labels)
        store.save_eval_weights(step, model.state_dict())
        store.append_metrics(row)
    return store, data, ev, model
