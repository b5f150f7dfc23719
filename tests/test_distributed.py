"""One run on K = 2 CPU processes (gloo): the same run as one process, a run stopped at K = 2 resumes at K = 1
as if never stopped, and what makes a K-process run impossible is one line before anything is written."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from memsweep import config
from memsweep.store import identity
from memsweep.store.run import RunStore
from memsweep.train.loop import train

from conftest import FAST, assert_same_run, run_cli
from test_slurm import finished_or_raise, slurm_cluster, states, wait_for, write_sweep  # noqa: F401 (a fixture)

ARGS = [*FAST, "runtime.checkpoint_every=10"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The run of ARGS trained by one process, uninterrupted: its directory."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEMSWEEP_OUTPUT_ROOT", str(tmp_path_factory.mktemp("k1")))
        cfg = config.compose_run(ARGS)
        assert train(cfg)["state"] == "finished"
        return identity.run_dir(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["memsweep", "torchrun"])
def test_two_processes_train_the_run_one_process_trains(tmp_path, one_process, launcher):
    """Same run id, same files, same metrics rows (rel 1e-4 on losses and distances; measured: 2e-6 at most),
    mem_ratio within a count, same final weights, optimizer and generator (assert_same_run); started by
    `memsweep train runtime.processes=2` or by torchrun."""
    env = {"MEMSWEEP_OUTPUT_ROOT": str(tmp_path)}
    if launcher == "torchrun":
        r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m",
                            "memsweep.cli", "train", *ARGS], capture_output=True, text=True, timeout=600,
                           env={**os.environ, **env})
    else:
        r = run_cli("train", *ARGS, "runtime.processes=2", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    got = tmp_path / "runs" / one_process.name
    lines = r.stdout.strip().splitlines()  # rank 0 only, with the last evaluation's gap and mem_ratio
    assert len(lines) == 1 and lines[0].startswith(f"run {one_process.name}: finished at step 60 -> {got}; "
                                                   "last evaluation (step 60): loss_gap "), lines
    assert_same_run(got, one_process, 60)


@pytest.mark.slow
def test_stopped_on_two_processes_resumes_on_one_as_if_never_stopped(tmp_path, one_process):
    """SIGTERM to `memsweep train runtime.processes=2` (passed on to both ranks, which agree on the step to stop
    at): one checkpoint at that step, status stopped, exit 143; the same command at K = 1 then ends as the
    uninterrupted one-process run."""
    env = {**os.environ, "MEMSWEEP_OUTPUT_ROOT": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "memsweep.cli", "train", *ARGS, "runtime.processes=2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = RunStore(tmp_path / "runs" / one_process.name)
    deadline = time.monotonic() + 300
    while not store.checkpoint_steps() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    status = store.status()
    assert status["state"] == "stopped" and status["stopped_by"] == "SIGTERM" and status["step"] < 60
    assert store.checkpoint_steps()[-1] == status["step"]
    assert not list(store.ckpt_dir.glob(".*.tmp"))
    r = run_cli("train", *ARGS, env={"MEMSWEEP_OUTPUT_ROOT": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert_same_run(store.dir, one_process, 60)


@pytest.mark.parametrize("overrides, message", [
    (["runtime.processes=0"], "runtime.processes=0: must be an integer >= 1"),
    (["runtime.processes=3"], "train.batch_size=32 is not divisible by runtime.processes=3: each process trains "
                              "an equal slice of the global batch"),
    (["runtime.processes=2", "runtime.device=cuda"], "runtime.device=cuda: CUDA is not available"),
])
def test_impossible_runs_are_one_line_and_nothing_written(tmp_path, overrides, message):
    if "cuda" in message:
        import torch
        if torch.cuda.is_available():
            pytest.skip("CUDA is here")
    r = run_cli("train", *FAST, *overrides, env={"MEMSWEEP_OUTPUT_ROOT": str(tmp_path / "out")})
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"memsweep: error: {message}"), r.stderr
    assert not (tmp_path / "out").exists()


def test_the_run_id_does_not_hold_the_number_of_processes():
    assert identity.run_id(config.compose_run(ARGS)) == identity.run_id(config.compose_run([*ARGS, "runtime.processes=4"]))


def test_several_processes_are_refused_in_one_process_and_in_a_pack(out):
    from memsweep.errors import ConfigError
    with pytest.raises(ConfigError, match="started by `memsweep train` or torchrun"):
        train(config.compose_run([*FAST, "runtime.processes=2"]))
    assert not out.exists()


def test_a_dry_run_counts_the_gpus_of_each_run_and_a_sweep_of_them_is_refused(out, capsys):
    from memsweep.cli import main
    from memsweep.sweeps import cost

    sweep = ["sweep", "seed=0,1", *FAST, "--name", "k"]
    assert main([*sweep, "--dry-run", "--gpu", "h100", "--all"]) == 0
    one = float(" ".join(capsys.readouterr().out.split()).split("estimate: ")[1].split()[0])
    assert main([*sweep, "runtime.processes=4", "--dry-run", "--gpu", "h100", "--all"]) == 0
    text = capsys.readouterr().out
    assert "GPUs" in text and "wall h" in text
    four = float(" ".join(text.split()).split("estimate: ")[1].split()[0])
    c1 = cost.run_cost(config.compose_run(FAST))
    c4 = cost.run_cost(config.compose_run([*FAST, "runtime.processes=4"]))
    assert c4.processes == 4 and c1.processes == 1
    # training and sampling split over the 4 GPUs; the rest of each evaluation on one while 3 wait
    alone = cost.hours(0.0, c1.eval - c1.parts["sampling"], "float32", "h100")
    assert c4.gpu_hours("h100") == pytest.approx(c1.gpu_hours("h100") + 3 * alone)
    assert c4.wall_hours("h100") == pytest.approx((c1.gpu_hours("h100") - alone) / 4 + alone)
    assert c1.wall_hours("h100") == pytest.approx(c1.gpu_hours("h100"))
    assert four > one
    assert main([*sweep, "runtime.processes=2", "--quiet"]) == 2   # not launched yet (README)
    assert "the local launcher does not start runs on several processes yet" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.xdist_group("slurm")
def test_a_run_on_two_slurm_tasks_is_the_one_process_run(slurm_cluster, tmp_path, out, one_process):
    """launcher=slurm with runtime.processes=2: one job of 2 tasks (submitit's tasks_per_node), ranks from
    submitit's environment; the same run as one process."""
    path = write_sweep(tmp_path, "twotasks", {"seed": [0]}, ["runtime.checkpoint_every=10", "runtime.processes=2"])
    folder = tmp_path / "submitit"
    r = run_cli("sweep", path, "launcher=slurm", "launcher.partition=debug", f"launcher.folder={folder}",
                "launcher.timeout_min=10", "launcher.mem_gb=1", "launcher.cpus_per_task=1")
    assert r.returncode == 0, r.stderr
    assert "submitted 1 jobs (1 runs)" in r.stdout
    (run_id, _), = states(out, "twotasks").items()
    assert run_id == one_process.name
    wait_for(lambda: finished_or_raise(states(out, "twotasks")[run_id], folder), 600, "the 2-task run", folder)
    assert len(list(folder.glob("*/*log.err"))) == 2  # one log per task
    assert_same_run(out / "runs" / run_id, one_process, 60)


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.xdist_group("slurm")
def test_a_two_task_job_preempted_requeues_and_ends_as_the_one_process_run(slurm_cluster, tmp_path, out,
                                                                            monkeypatch):
    """Preempted (USR2 to both tasks), the ranks stop at one step, rank 0 checkpoints it and submitit requeues;
    the requeued 2-task job ends with the metrics of an uninterrupted one-process run (rel 1e-4, a count)."""
    from conftest import FLOAT_KEYS

    extra = ["train.steps=600", "eval.num_points=8", "runtime.checkpoint_every=100000"]
    path = write_sweep(tmp_path, "preempt2", {"seed": [0]}, [*extra, "runtime.processes=2"])
    folder = tmp_path / "submitit"
    r = run_cli("sweep", path, "launcher=slurm", "launcher.partition=debug", f"launcher.folder={folder}",
                "launcher.timeout_min=20", "launcher.mem_gb=1", "launcher.cpus_per_task=1")
    assert r.returncode == 0, r.stderr
    (run_id, status), = states(out, "preempt2").items()
    job_id = status["job_id"]
    wait_for(lambda: states(out, "preempt2")[run_id].get("step", 0) >= 150, 300, "training to pass step 150", folder)
    hog = subprocess.run(["sbatch", "-p", "high", "-c", "2", "--parsable", "--wrap", "sleep 3"],
                         capture_output=True, text=True, check=True).stdout.strip()
    wait_for(lambda: any("checkpointed run" in p.read_text() for p in folder.glob(f"{job_id}*/*log.err")), 120,
             "the checkpoint", folder)
    stopped_at = json.loads((out / "runs" / run_id / "status.json").read_text())["step"]
    wait_for(lambda: finished_or_raise(states(out, "preempt2")[run_id], folder), 600, "the requeued run", folder)
    subprocess.run(["scancel", hog])
    assert 150 <= stopped_at < 600

    monkeypatch.setenv("MEMSWEEP_OUTPUT_ROOT", str(tmp_path / "reference"))
    reference = config.compose_run([*FAST, *extra])
    assert identity.run_id(reference) == run_id
    train(reference)
    got, want = RunStore(out / "runs" / run_id).read_metrics(), RunStore(identity.run_dir(reference)).read_metrics()
    assert [r["step"] for r in got] == [r["step"] for r in want]  # no duplicated or missing rows
    for a, b in zip(got, want):
        for key in FLOAT_KEYS:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (a["step"], key)
        assert a["mem_ratio"] == pytest.approx(b["mem_ratio"], abs=1.5 / 32)
