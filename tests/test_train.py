"""A short CPU training run, its files, and a run killed and resumed that ends as an uninterrupted one."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml

from memsweep import config
from memsweep.data.datasets import make_synthetic_cifar
from memsweep.errors import ConfigError
from memsweep.store.run import RunStore
from memsweep.store.run_dir import RunLocked
from memsweep.train.loop import train
from memsweep.train.schedule import eval_steps
from memsweep.train.signals import SignalGuard
from memsweep.store import identity

from conftest import FAST, run_cli

REQUIRED = {"step", "train_loss", "test_loss", "loss_gap", "mem_ratio", "sw_train", "sw_test",
            "fid_train", "fid_test", "train_loss_by_t", "test_loss_by_t"}


def test_eval_steps_are_log_spaced_and_end_at_the_last_step():
    s = eval_steps(10_000, 10, 20)
    assert s[0] == 10 and s[-1] == 10_000 and s == sorted(set(s))
    ratios = [b / a for a, b in zip(s, s[1:])]
    assert max(ratios) / min(ratios) < 1.3  # geometric spacing
    assert eval_steps(5, 10, 20) == [5]


def test_eval_steps_are_numpys_geomspace_rounded():
    """The steps every stored run evaluated at were numpy's: the pure-Python schedule (no numpy for a dry run)
    must give the same ones, ties of the rounding included."""
    def numpy_steps(total, first, num):
        first = min(max(1, first), total)
        return sorted(set(np.unique(np.round(np.geomspace(first, total, num)).astype(int)).tolist()) | {total})
    rng = np.random.default_rng(0)
    cases = [(t, f, k) for t in range(1, 2001) for f in (0, 1, 20) for k in (1, 2, 3, 8, 20, 30)]
    cases += [(int(t), int(f), int(k)) for t, f, k in zip(rng.integers(1, 10 ** 7, 20000),
                                                          rng.choice([1, 5, 10, 20, 100, 1000], 20000),
                                                          rng.integers(1, 61, 20000))]
    assert [c for c in cases if eval_steps(*c) != numpy_steps(*c)] == []


def test_short_run_writes_the_run_directory(out):
    cfg = config.compose_run(FAST)
    status = train(cfg)
    store = RunStore(identity.run_dir(cfg))
    assert status["state"] == "finished" and status["step"] == 60
    rows = store.read_metrics()
    assert [r["step"] for r in rows] == eval_steps(60, 10, 4)
    for r in rows:
        assert REQUIRED <= set(r)
        assert r["loss_gap"] == pytest.approx(r["test_loss"] - r["train_loss"])
        assert 0 <= r["mem_ratio"] <= 1 and len(r["train_loss_by_t"]) == cfg.eval.t_bins
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]  # it learns
    saved = yaml.safe_load(store.config_path.read_text())
    assert saved["data"]["n"] == cfg.data.n and saved["train"]["total_steps"] == 60
    assert store.checkpoint_steps()[-1] == 60
    assert len(list(store.samples_dir.glob("step_*.png"))) == len(rows)
    assert status["train_seconds"] > 0 and status["eval_seconds"] > 0  # where the run's time went
    parts = status["eval_seconds_by_part"]                               # and an evaluation's, by part
    assert {"losses", "field_dist", "sampling", "mem_ratio", "sw", "saving"} <= set(parts)
    assert all(v >= 0 for v in parts.values()) and sum(parts.values()) <= status["eval_seconds"] * 1.01
    # asked again: the finished run is left alone
    mtime = store.metrics_path.stat().st_mtime_ns
    assert train(cfg)["state"] == "finished" and store.metrics_path.stat().st_mtime_ns == mtime


def test_bad_input_exits_with_one_line_and_no_traceback(out):
    r = run_cli("train", "data.n=0")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["memsweep: error: data.n=0: must be an integer >= 2"]
    assert not (out / "runs").exists()


@contextlib.contextmanager
def lock_held_elsewhere(store, seconds):
    """Another process holds the run's lock for `seconds` (or until killed)."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from memsweep.store.run import RunStore; "
        f"s = RunStore({str(store.dir)!r}); cm = s.lock(); cm.__enter__(); print('locked', flush=True); "
        f"time.sleep({seconds})")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_run_is_never_trained_by_two_processes_at_once(out):
    cfg = config.compose_run(FAST)
    with lock_held_elsewhere(RunStore(identity.run_dir(cfg)), 60):
        with pytest.raises(RunLocked, match="another process"):
            train(cfg)
        r = run_cli("train", *FAST)
        assert r.returncode == 3 and "not starting it twice" in r.stderr and "Traceback" not in r.stderr
    # the holder is dead: its lock is gone with it and the run trains
    assert train(cfg)["state"] == "finished"


def test_a_requeued_job_waits_for_its_previous_attempt_to_let_go(out, caplog):
    store = RunStore(out / "runs" / "r")
    with lock_held_elsewhere(store, 3) as holder:
        with store.lock(wait_s=60):  # taken once the holder lets go, not refused
            assert holder.wait(timeout=30) == 0
    assert "waiting up to 60 s" in caplog.text


def test_signal_guard_defers_handlers_until_the_step_is_done():
    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda s, f: calls.append("handler"))
    try:
        guard = SignalGuard([signal.SIGUSR2])
        with guard.hold():
            t = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGUSR2))  # from another thread
            t.start()
            t.join()
            time.sleep(0.05)
            calls.append("step done")
        assert calls == ["step done", "handler"]
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_a_run_that_fails_while_setting_up_says_failed(tmp_path, out):
    make_synthetic_cifar(tmp_path, per_batch=20)
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"not a pickle")  # a corrupt download
    cfg = config.compose_run([*FAST, "data=cifar10", f"data.root={tmp_path}", "data.n=16", "data.test_size=10",
                              "model=tiny"])
    with pytest.raises(ConfigError, match="data_batch_1 is not a CIFAR-10 python batch"):
        train(cfg)
    status = json.loads((identity.run_dir(cfg) / "status.json").read_text())
    assert status["state"] == "failed" and "data_batch_1 is not a CIFAR-10 python batch" in status["error"]
