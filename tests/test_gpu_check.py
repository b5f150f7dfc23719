"""scripts/gpu_check.py keeps working: its --cpu-smoke mode runs every part on the CPU with tiny sizes."""
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from gpucheck import scaling

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("scaling", "correctness", "speed", "evaluation", "pack", "sweeps")


def numbers_in(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, dict):
        return any(numbers_in(v) for v in value.values())
    if isinstance(value, list):
        return any(numbers_in(v) for v in value)
    return False


@pytest.mark.slow
def test_cpu_smoke_measures_every_part_and_the_options_are_correct(tmp_path):
    out = tmp_path / "gpu_check.json"
    # this checkout's code, whatever memsweep is installed
    env = {**os.environ, "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--cpu-smoke", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["skipped"] == []
    for part in PARTS:
        body = result["parts"][part]
        assert isinstance(body.get("error"), str) or numbers_in(body), (part, body)
    checks = result["parts"]["correctness"]["checks"]
    for name in ("bf16", "channels_last", "fused_adam"):
        assert checks[name]["passed"], (name, checks[name])
    assert checks["bf16"]["max_rel_diff"] <= checks["bf16"]["tolerance"] == 5e-2
    assert checks["channels_last"]["max_rel_diff"] <= 1e-3 and checks["fused_adam"]["max_rel_diff"] <= 1e-3
    assert checks["compile"].get("passed") or "error" in checks["compile"]  # compile may be skipped
    # every option was timed (compile not in smoke mode: the correctness part compiles)
    for batch, entry in result["parts"]["speed"]["batches"].items():
        for name, row in entry["options"].items():
            assert "steps_per_s" in row or "compile" in name, (batch, name, row)
    sweeps = result["parts"]["sweeps"]["sweeps"]
    assert set(sweeps) == {"dataset_size", "model_size", "batch_size", "learning_rate"}
    assert all(s["total_h_defaults"] > 0 for s in sweeps.values())
    assert "correctness" in proc.stdout and "sweep dataset_size" in proc.stdout  # the table
    # K = 1, 2 CPU processes (gloo): the code path of the K-GPU step rate, every rank stepping memsweep's loop
    scaling = result["parts"]["scaling"]["processes"]
    assert scaling["1"]["efficiency"] == 1.0 and scaling["2"]["steps_per_s"] > 0 and scaling["2"]["efficiency"] > 0
    assert "K=2 processes (gloo, B=8 global)" in proc.stdout


def test_the_scaling_part_skips_in_one_line_without_two_gpus(monkeypatch):
    cpu = SimpleNamespace(cuda=False, smoke=False)
    assert scaling.part_scaling(cpu, {}) == {"skipped": "skipped: no CUDA device here"}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    gpu = SimpleNamespace(cuda=True, smoke=False)
    assert scaling.part_scaling(gpu, {}) == {
        "skipped": "skipped: 1 CUDA device here: the K-GPU step rate needs 2 or more"}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert scaling.processes_here(gpu) == ([1, 2, 4, 8], None)
