"""Killed at any moment (SIGKILL, through fault-injection points), launched again: the same metrics."""
import json
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from memsweep import config
from memsweep.store.run import RunStore
from memsweep.train.loop import train
from memsweep.store import identity

from conftest import FAST, run_cli

ARGS = [*FAST, "train.steps=60", "runtime.checkpoint_every=10"]
# (point, k): SIGKILL the k-th time the run reaches the point: mid-step (after the optimizer, before the
# EMA), between an evaluation and its row, between a checkpoint's temp file and its rename, in the middle of
# a metrics line, while writing status.json
KILLS = [("step", 3), ("step", 33), ("step", 58), ("eval", 1), ("eval", 4), ("checkpoint", 1),
         ("checkpoint", 5), ("metrics", 2), ("metrics", 4), ("status", 7)]


def kill_and_resume(root, point, k):
    env = {"MEMSWEEP_OUTPUT_ROOT": str(root)}
    killed = run_cli("train", *ARGS, env={**env, "MEMSWEEP_FAILPOINT": f"{point}:{k}"})
    resumed = run_cli("train", *ARGS, env=env)
    return killed.returncode, resumed.returncode, resumed.stderr


def test_killed_at_any_point_and_relaunched_ends_identical(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMSWEEP_OUTPUT_ROOT", str(tmp_path / "reference"))
    reference = config.compose_run(ARGS)
    train(reference)
    want = RunStore(identity.run_dir(reference)).read_metrics()
    run_id = identity.run_id(reference)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda pk: kill_and_resume(tmp_path / f"{pk[0]}{pk[1]}", *pk), KILLS))
    for (point, k), (killed, resumed, err) in zip(KILLS, results):
        assert killed == -9, (point, k)          # it really died there
        assert resumed == 0, (point, k, err[-500:])
        store = RunStore(tmp_path / f"{point}{k}" / "runs" / run_id)
        got = store.read_metrics()
        assert [r["step"] for r in got] == [r["step"] for r in want], (point, k)  # none duplicated or missing
        assert got == want, (point, k)
        assert store.status()["state"] == "finished"
        state = store.load_checkpoint(store.checkpoint_steps()[-1])
        assert state["step"] == 60
        assert not list(store.ckpt_dir.glob(".*.tmp"))
