"""Killed at any moment (SIGKILL, through fault-injection points), out of disk space, or stopped by SIGTERM,
launched again: the same metrics."""
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from memsweep import config
from memsweep.store.run import RunStore
from memsweep.train.loop import train
from memsweep.store import identity

from conftest import FAST, run_cli

ARGS = [*FAST, "train.steps=60", "runtime.checkpoint_every=10"]
# (point, k): SIGKILL the k-th time the run reaches the point: mid-step (after the optimizer, before the
# EMA) before the first checkpoint and near the end, between an evaluation and its row, between the first
# checkpoint's temp file and its rename (no earlier checkpoint to fall back on), in the middle of a metrics
# line, while writing status.json. One kill per point and stage: each is a process start and a run.
KILLS = [("step", 3), ("step", 58), ("eval", 4), ("checkpoint", 1), ("metrics", 4), ("status", 7)]


def kill_and_resume(root, point, k):
    """The exit codes of the killed and the resumed attempt, the resumed one's stderr, and status.json as the
    kill left it (None if it had none yet)."""
    env = {"MEMSWEEP_OUTPUT_ROOT": str(root)}
    killed = run_cli("train", *ARGS, env={**env, "MEMSWEEP_FAILPOINT": f"{point}:{k}"})
    try:
        status = [json.loads(p.read_text()) for p in (root / "runs").glob("*/status.json")]
    except json.JSONDecodeError:
        status = []
    resumed = run_cli("train", *ARGS, env=env)
    return killed.returncode, resumed.returncode, resumed.stderr, (status[0] if status else None)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of ARGS: its metrics rows."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEMSWEEP_OUTPUT_ROOT", str(tmp_path_factory.mktemp("reference")))
        cfg = config.compose_run(ARGS)
        train(cfg)
        return identity.run_id(cfg), RunStore(identity.run_dir(cfg)).read_metrics()


@pytest.mark.slow
def test_killed_at_any_point_and_relaunched_ends_identical(tmp_path, reference):
    run_id, want = reference
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda pk: kill_and_resume(tmp_path / f"{pk[0]}{pk[1]}", *pk), KILLS))
    for (point, k), (killed, resumed, err, at_kill) in zip(KILLS, results):
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
        if at_kill and at_kill.get("eval_seconds"):   # the time of both attempts is counted
            now = store.status()
            assert now["train_seconds"] > at_kill["train_seconds"] and now["eval_seconds"] > at_kill["eval_seconds"]
            assert now["eval_seconds_by_part"]["sampling"] > at_kill["eval_seconds_by_part"]["sampling"]


# -- a full disk and SIGTERM: one line, a clear state, and a relaunch that loses nothing ------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs with a ballast file that leaves 4.5 MB free: less than a run of ARGS needs at its peak
    (two 1.7 MB checkpoints, the next one's temp file, four 0.4 MB evaluation weights), more than its start."""
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        ballast = mount / "ballast"
        free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
        ballast.write_bytes(b"\0" * (free - 4_500_000))
        yield mount, ballast
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def one_line(stderr: str) -> str:
    """The memsweep line of stderr (log lines above it are INFO lines); no traceback anywhere."""
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = [l for l in stderr.splitlines() if l.startswith("memsweep:")]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0]


def assert_resumed_identical(root, reference):
    run_id, want = reference
    store = RunStore(root / "runs" / run_id)
    assert store.read_metrics() == want
    assert len(store.metrics_path.read_text().splitlines()) == len(want)  # no torn line left behind
    assert store.status()["state"] == "finished" and store.load_latest_checkpoint()["step"] == 60
    assert not list(store.dir.rglob(".*.tmp"))


def test_a_full_disk_fails_in_one_line_and_a_relaunch_loses_nothing(small_disk, reference):
    mount, ballast = small_disk
    env = {"MEMSWEEP_OUTPUT_ROOT": str(mount / "outputs")}
    full = run_cli("train", *ARGS, env=env)
    assert full.returncode == 1
    line = one_line(full.stderr)
    run_id = reference[0]
    assert line.startswith(f"memsweep: error: cannot write {mount}/outputs/"), line
    assert ": No space left on device; run " in line and line.endswith("free space and run the same command "
                                                                        "again to resume"), line
    store = RunStore(mount / "outputs" / "runs" / run_id)
    # status.json is tiny: marked failed if its write got through, else the line says it could not be
    assert store.status()["state"] == "failed" or f"run {run_id} could not be marked failed either" in line
    assert store.status()["step"] < 60
    assert not list(store.dir.rglob(".*.tmp"))  # the failed write's temp file does not keep the space
    ballast.unlink()
    resumed = run_cli("train", *ARGS, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_resumed_identical(mount / "outputs", reference)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["metrics:3:enospc", "checkpoint:4:enospc"])
def test_enospc_injected_mid_line_or_mid_checkpoint_leaves_the_run_resumable(tmp_path, point, reference):
    env = {"MEMSWEEP_OUTPUT_ROOT": str(tmp_path)}
    full = run_cli("train", *ARGS, env={**env, "MEMSWEEP_FAILPOINT": point})
    assert full.returncode == 1
    name = "metrics.jsonl" if point.startswith("metrics") else "step_"
    assert name in one_line(full.stderr) and "No space left on device; run " in full.stderr
    store = RunStore(tmp_path / "runs" / reference[0])
    assert store.status()["state"] == "failed" and "No space left on device" in store.status()["error"]
    lines = store.metrics_path.read_text().splitlines()
    assert all(json.loads(l) for l in lines)  # the failed append was cut back: no torn line
    assert run_cli("train", *ARGS, env=env).returncode == 0
    assert_resumed_identical(tmp_path, reference)


def test_sigterm_checkpoints_at_the_current_step_and_a_relaunch_resumes(tmp_path, reference):
    env = {**os.environ, "MEMSWEEP_OUTPUT_ROOT": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "memsweep.cli", "train", *ARGS], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = RunStore(tmp_path / "runs" / reference[0])
    deadline = time.time() + 300
    while time.time() < deadline and store.status().get("step", 0) < 10:  # after its first checkpoint
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143
    status = store.status()
    assert status["state"] == "stopped" and status["stopped_by"] == "SIGTERM" and 10 <= status["step"] < 60
    assert one_line(err) == (f"memsweep: terminated (SIGTERM): run {reference[0]} checkpointed at step "
                             f"{status['step']} of 60; run the same command again to resume")
    assert store.checkpoint_steps()[-1] == status["step"]  # the checkpoint at the step it stopped
    assert store.load_latest_checkpoint()["step"] == status["step"]
    assert run_cli("train", *ARGS, env={"MEMSWEEP_OUTPUT_ROOT": str(tmp_path)}).returncode == 0
    assert_resumed_identical(tmp_path, reference)


def write_sweep(tmp_path, name="two"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"axes": {"data.n": [16, 24]}, "overrides": [*ARGS, "launcher.workers=2",
                                                                                "launcher.pack=1"]}))
    return str(path)


@pytest.mark.slow
def test_a_local_sweep_stopped_by_sigterm_checkpoints_its_workers_and_resumes(tmp_path, reference):
    root, sweep = tmp_path / "outputs", write_sweep(tmp_path)
    env = {**os.environ, "MEMSWEEP_OUTPUT_ROOT": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "memsweep.cli", "sweep", sweep, "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    stores = lambda: [RunStore(d) for d in (root / "runs").iterdir()] if (root / "runs").exists() else []  # noqa: E731
    while time.time() < deadline and not (len(stores()) == 2 and all(s.status().get("step", 0) >= 10 for s in stores())):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # to the launcher only, as `kill PID` does: it passes it on
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143
    assert one_line(err) == ("memsweep: terminated (SIGTERM): 2 of 2 runs stopped (checkpointed at their current "
                             "step or not started); run the same command again to resume")
    for store in stores():
        status = store.status()
        assert status["state"] == "stopped" and 10 <= status["step"] < 60
        assert store.checkpoint_steps()[-1] == status["step"]
    r = run_cli("sweep", sweep, "--quiet", env={"MEMSWEEP_OUTPUT_ROOT": str(root)})
    assert r.returncode == 0 and "sweep two: 2 finished" in r.stdout, r.stdout[-1500:]
    assert_resumed_identical(root, reference)  # the n = 16 run is the reference run


@pytest.mark.slow
def test_a_full_disk_in_a_sweep_worker_is_one_line_and_retry_resumes(tmp_path, reference):
    root, sweep = tmp_path / "outputs", write_sweep(tmp_path, "full")
    r = run_cli("sweep", sweep, "--quiet", env={"MEMSWEEP_OUTPUT_ROOT": str(root),
                                                "MEMSWEEP_FAILPOINT": "checkpoint:2:enospc"})
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = [l for l in r.stderr.splitlines() if l.startswith("ERROR")]
    assert len(errors) == 2 and all("No space left on device; run " in l and "marked failed" in l for l in errors)
    assert f"ERROR memsweep: run {reference[0]} failed: cannot write {root}/runs/{reference[0]}/checkpoints/" in r.stderr
    assert "sweep full: 2 failed" in r.stdout
    r = run_cli("sweep", sweep, "--quiet", "--retry", env={"MEMSWEEP_OUTPUT_ROOT": str(root)})
    assert r.returncode == 0 and "sweep full: 2 finished" in r.stdout, r.stdout[-1500:]
    assert_resumed_identical(root, reference)
