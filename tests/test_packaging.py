"""memsweep as a wheel: the configs travel inside it, so an install outside the checkout composes and trains."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_trains(tmp_path):
    # build from a copy of what a source distribution holds, so the checkout gets no build/ or egg-info
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("src", "configs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                   check=True, capture_output=True)
    (wheel,) = wheels.glob("memsweep-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True)
    assert (target / "memsweep" / "configs" / "train.yaml").is_file()
    assert (target / "memsweep" / "configs" / "sweep" / "demo.yaml").is_file()

    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    env.pop("MEMSWEEP_CONFIG_DIR", None)
    env.pop("MEMSWEEP_OUTPUT_ROOT", None)
    where = subprocess.run([sys.executable, "-c", "import memsweep.config as c; print(c.__file__); print(c.config_dir())"],
                           cwd=elsewhere, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert Path(where[0]).is_relative_to(target) and Path(where[1]) == target / "memsweep" / "configs"
    # the console script pip wrote, from a folder that is not the checkout
    run = subprocess.run([str(target / "bin" / "memsweep"), "train", "train.steps=3", "data.n=16", "logger=none",
                          "eval.num_points=1", "eval.num_samples=16"],
                         cwd=elsewhere, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "finished at step 3" in run.stdout
    (run_dir,) = (elsewhere / "outputs" / "runs").iterdir()
    assert (run_dir / "status.json").is_file()
