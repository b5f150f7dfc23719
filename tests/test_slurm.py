"""Sweeps on a real single-node Slurm cluster (slurm/up.sh): submission, no duplicates, preemption."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from memsweep import config
from memsweep.store.run import RunStore
from memsweep.train.loop import train
from memsweep.store import identity

from conftest import FAST, assert_same_run, run_cli

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.xdist_group("slurm")]  # one cluster, one worker
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def slurm_cluster():
    if os.geteuid() != 0:
        pytest.skip("starting the local Slurm cluster needs root")
    r = subprocess.run(["bash", str(ROOT / "slurm" / "up.sh")], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return True


def write_sweep(tmp_path, name, axes, extra=()):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"axes": axes, "overrides": [*FAST, *extra]}, sort_keys=False))
    return str(path)


def cluster_report(folder=None):
    """What Slurm and the jobs say, for the message of a failed wait."""
    commands = [["squeue", "-a", "-l"], ["sinfo", "-N", "-l"], ["sacct", "-a", "-D", "-X", "-o",
                "JobID,Partition,State,ExitCode,Reason%30,Start,End"], ["tail", "-40", "/var/log/slurm/slurmctld.log"]]
    parts = [f"$ {' '.join(c)}\n" + subprocess.run(c, capture_output=True, text=True).stdout for c in commands]
    for log in sorted(Path(folder).glob("*/*log.*")) if folder else []:
        parts.append(f"--- {log}\n" + log.read_text()[-1500:])
    return "\n".join(parts)


def wait_for(predicate, timeout, what, folder=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{cluster_report(folder)}")


def finished_or_raise(status, folder):
    if status["state"] in ("failed", "diverged"):
        raise AssertionError(f"run {status['state']}: {status.get('error')}\n{cluster_report(folder)}")
    return status["state"] == "finished"


def states(out, name):
    record = json.loads((out / "sweeps" / name / "sweep.json").read_text())
    return {e["run_id"]: json.loads((out / "runs" / e["run_id"] / "status.json").read_text())
            for e in record["runs"]}


def config_of(out, run_id):
    return RunStore(out / "runs" / run_id).read_config()


def test_sweep_on_slurm_returns_at_once_finishes_and_is_never_submitted_twice(slurm_cluster, tmp_path, out,
                                                                              monkeypatch):
    # three runs, launcher.pack=2: one job trains a pack of two runs, another the third run alone
    path = write_sweep(tmp_path, "onslurm", {"data.n": [8, 16, 24]})
    args = ["launcher=slurm", "launcher.partition=debug", f"launcher.folder={tmp_path / 'submitit'}",
            "launcher.timeout_min=10", "launcher.mem_gb=1", "launcher.pack=2"]
    r = run_cli("sweep", path, *args)
    assert r.returncode == 0, r.stderr
    assert "submitted 2 jobs (3 runs)" in r.stdout
    now = {k: v["state"] for k, v in states(out, "onslurm").items()}
    assert all(s in ("queued", "running") for s in now.values()), f"{now}\n{cluster_report(tmp_path / 'submitit')}"
    wait_for(lambda: all(finished_or_raise(s, tmp_path / "submitit") for s in states(out, "onslurm").values()), 600,
             "the three runs", tmp_path / "submitit")
    jobs = {run_id: s["job_id"] for run_id, s in states(out, "onslurm").items()}
    assert all(jobs.values()) and len(set(jobs.values())) == 2
    r = run_cli("sweep", path, *args)
    assert r.returncode == 0 and "3 finished" in r.stdout and "nothing to launch" in r.stdout
    assert "submitted" not in r.stdout

    # a run of the pack is the run trained alone, in this process
    packed = next(run_id for run_id, job in jobs.items() if list(jobs.values()).count(job) == 2)
    monkeypatch.setenv("MEMSWEEP_OUTPUT_ROOT", str(tmp_path / "alone"))
    cfg = config.compose_run([f"data.n={config_of(out, packed).data.n}", *FAST])
    assert identity.run_id(cfg) == packed
    train(cfg)
    assert_same_run(out / "runs" / packed, identity.run_dir(cfg), cfg.train.total_steps)


def test_a_network_named_by_target_trains_on_slurm(slurm_cluster, tmp_path, out):
    # model=local_cnn is built through the same _target_ path as a lab's own network (science.networks): the job
    # recomposes the run from its config and instantiates the target where it runs
    path = write_sweep(tmp_path, "target", {"model": ["local_cnn"]})
    args = ["launcher=slurm", "launcher.partition=debug", f"launcher.folder={tmp_path / 'submitit'}",
            "launcher.timeout_min=10", "launcher.mem_gb=1"]
    r = run_cli("sweep", path, *args)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: all(finished_or_raise(s, tmp_path / "submitit") for s in states(out, "target").values()), 600,
             "the local CNN's run", tmp_path / "submitit")
    (run_id, status), = states(out, "target").items()
    assert config_of(out, run_id).model["_target_"].endswith("LocalCNN") and status["job_id"]
    assert len(RunStore(out / "runs" / run_id).read_metrics()) == 4     # FAST: four evaluations


def test_preempted_job_checkpoints_requeues_and_ends_as_if_uninterrupted(slurm_cluster, tmp_path, out, monkeypatch,
                                                                         request):
    extra = ["train.steps=600", "eval.num_points=8", "runtime.checkpoint_every=100000"]
    path = write_sweep(tmp_path, "preempt", {"data.n": [16]}, extra)
    folder = tmp_path / "submitit"
    # the launching process has a wandb service of its own (as a notebook would), exported to the jobs in
    # WANDB_SERVICE: a job sharing it would find its killed attempt's stream still open after the requeue
    notebook = subprocess.Popen([sys.executable, "-c", (
        "import os, time, wandb; wandb.init(mode='offline', dir=%r).finish(); "
        "print(os.environ['WANDB_SERVICE'], flush=True); time.sleep(900)") % str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    request.addfinalizer(notebook.kill)
    service = notebook.stdout.readline().strip()
    assert service, "no wandb service to share"
    r = run_cli("sweep", path, "launcher=slurm", "launcher.partition=debug", f"launcher.folder={folder}",
                "launcher.timeout_min=20", "launcher.mem_gb=1", "logger=wandb", "logger.mode=offline",
                env={"WANDB_MODE": "offline", "WANDB_SERVICE": service})
    assert r.returncode == 0, r.stderr
    (run_id, status), = states(out, "preempt").items()
    job_id = status["job_id"]
    # preempt it mid-training: a job in the higher-priority partition that needs the whole node
    wait_for(lambda: states(out, "preempt")[run_id].get("step", 0) >= 150, 300, "training to pass step 150",
             folder)
    hog = subprocess.run(["sbatch", "-p", "high", "-c", "2", "--parsable", "--wrap", "sleep 3"],
                         capture_output=True, text=True, check=True).stdout.strip()
    wait_for(lambda: list(folder.glob(f"{job_id}*/*log.err")) and any(
        "checkpointed run" in p.read_text() for p in folder.glob(f"{job_id}*/*log.err")), 120, "the checkpoint", folder)
    stopped_at = json.loads((out / "runs" / run_id / "status.json").read_text())["step"]
    wait_for(lambda: finished_or_raise(states(out, "preempt")[run_id], folder), 300, "the requeued run to finish",
             folder)
    subprocess.run(["scancel", hog])
    sacct = subprocess.run(["sacct", "-j", job_id, "-n", "-X", "-D", "-o", "State"], capture_output=True,
                           text=True).stdout.split()
    assert any(s.startswith(("PREEMPTED", "REQUEUED")) for s in sacct), sacct
    assert 150 <= stopped_at < 600
    # both attempts logged to the same wandb run (offline runs are named by the run id)
    attempts = list((out / "runs" / run_id / "wandb").glob("offline-run-*"))
    assert len(attempts) == 2 and all(p.name.endswith(run_id) for p in attempts), attempts

    # the same run, uninterrupted, in this process
    monkeypatch.setenv("MEMSWEEP_OUTPUT_ROOT", str(tmp_path / "reference"))
    reference = config.compose_run(["data.n=16", *FAST, *extra])
    assert identity.run_id(reference) == run_id
    train(reference)
    got = [json.loads(l) for l in (out / "runs" / run_id / "metrics.jsonl").read_text().splitlines()]
    want = [json.loads(l) for l in (identity.run_dir(reference) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in got] == [r["step"] for r in want]  # no duplicated or missing rows
    assert got == want
