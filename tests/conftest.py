import os
import subprocess
import sys

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")  # tests never talk to wandb's servers
os.environ.setdefault("WANDB_SILENT", "true")

# A run small enough for a test: tiny U-Net, a few evaluations, few samples.
FAST = ["logger=none", "runtime.progress=false", "runtime.threads=1", "train.steps=60",
        "eval.num_points=4", "eval.first_step=10", "eval.num_samples=32", "eval.loss_points=64",
        "eval.sw_projections=64", "eval.grid_samples=4"]


@pytest.fixture
def out(tmp_path, monkeypatch):
    """A private output root for the test."""
    root = tmp_path / "outputs"
    monkeypatch.setenv("MEMSWEEP_OUTPUT_ROOT", str(root))
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
