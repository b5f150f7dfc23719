"""One run on K = 2 CPU processes (gloo): the same run as one process, a run stopped at K = 2 resumes at K = 1
as if never stopped, and what makes a K-process run impossible is one line before anything is written."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from memsweep import config
from memsweep.cli import main
from memsweep.data.datasets import load_for_model
from memsweep.errors import ConfigError, RankLost
from memsweep.eval.evaluator import Evaluator
from memsweep.eval.shares import bounds
from memsweep.science import networks
from memsweep.store.cache import data_cache
from memsweep.train import distributed
from memsweep.store import identity
from memsweep.store.live import live_state
from memsweep.store.run import RunStore
from memsweep.sweeps import cost, groups
from memsweep.train.loop import train

from conftest import FAST, FLOAT_KEYS, assert_same_run, run_cli
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
        if torch.cuda.is_available():
            pytest.skip("CUDA is here")
    r = run_cli("train", *FAST, *overrides, env={"MEMSWEEP_OUTPUT_ROOT": str(tmp_path / "out")})
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"memsweep: error: {message}"), r.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_backend_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_gloo_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^runtime.processes=2: this torch build has no torch.distributed gloo "):
        distributed.check(config.compose_run([*FAST, "runtime.processes=2", "runtime.device=cpu"]), 2)
    distributed.check(config.compose_run([*FAST, "runtime.processes=1"]), 1)  # one process needs no backend


def test_more_processes_than_gpus_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: True)
    with pytest.raises(ConfigError, match=r"^runtime.processes=4: \S+ has 2 CUDA devices"):
        distributed.check(config.compose_run([*FAST, "runtime.processes=4", "runtime.device=cuda"]), 4)


def test_a_lost_rank_is_told_apart_from_other_errors(tmp_path):
    """What a collective raises when a peer is gone becomes one line (errors.RankLost); other errors stay."""

    gone = RuntimeError("[/__w/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer "
                        "[127.0.0.1]:3. This is typically caused by a remote worker crashing.")
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        error = distributed.lost(gone)
        assert isinstance(error, RankLost) and str(error) == (
            "another of the run's 1 processes ended or stopped answering (RuntimeError: Connection closed by peer "
            "[127.0.0.1]:3.)")
        assert distributed.lost(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
        assert distributed.lost(KeyboardInterrupt()) is None
    finally:
        torch.distributed.destroy_process_group()
    assert distributed.lost(gone) is None  # one process: no peer to lose


def test_the_run_id_does_not_hold_the_number_of_processes():
    assert identity.run_id(config.compose_run(ARGS)) == identity.run_id(config.compose_run([*ARGS, "runtime.processes=4"]))


def test_several_processes_are_refused_in_one_process_and_in_a_pack(out):
    with pytest.raises(ConfigError, match="started by `memsweep train` or torchrun"):
        train(config.compose_run([*FAST, "runtime.processes=2"]))
    assert not out.exists()


def test_a_dry_run_counts_the_gpus_of_each_run_and_too_many_processes_are_refused(out, capsys):
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
    # training, sampling, the losses and the field probe split over the 4 GPUs; the rest of each evaluation on one
    # while 3 wait
    alone = cost.hours(0.0, c1.eval - c1.parts["sampling"] - c1.parts["losses"] - c1.parts["field_dist"],
                       "float32", "h100")
    assert c4.gpu_hours("h100") == pytest.approx(c1.gpu_hours("h100") + 3 * alone)
    assert c4.wall_hours("h100") == pytest.approx((c1.gpu_hours("h100") - alone) / 4 + alone)
    assert c1.wall_hours("h100") == pytest.approx(c1.gpu_hours("h100"))
    assert four > one
    # more processes than the machine's devices (here CPU slots: launcher.workers): one line, nothing written
    assert main([*sweep, "runtime.processes=4", "launcher.workers=2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["memsweep: error: runtime.processes=4: this machine has 2 CPU slots (launcher.workers, default the "
                   "cores); a local sweep gives each run that many (launcher=slurm spreads them over nodes)"]
    assert not out.exists()
    assert main([*sweep, "runtime.processes=2", "launcher.workers=2", "--dry-run"]) == 0
    assert "would train them one run per 2 CPU processes (1 at a time on 2 CPU slots)" in capsys.readouterr().out


def test_a_local_sweep_gives_each_run_a_group_of_k_gpus(monkeypatch):
    """On a machine with GPUs each run gets K of the visible ones (CUDA_VISIBLE_DEVICES for its ranks), runs
    starting as groups free up; K beyond them is refused (checked here with CUDA's answers mocked)."""

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert groups.devices("auto", None) == (["0", "1", "2", "3"], True)
    assert groups.devices("cpu", 3) == (["0", "1", "2"], False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5,6")
    assert groups.devices("cuda", None) == (["2", "5", "6"], True)
    run = lambda k: SimpleNamespace(cfg=SimpleNamespace(runtime=SimpleNamespace(processes=k, device="cuda")))  # noqa: E731
    pending, free = [run(2), run(2), run(1)], ["0", "1", "2", "3"]
    first, second = groups.take(pending, free), groups.take(pending, free)
    assert (first[1], second[1]) == (["0", "1"], ["2", "3"]) and free == []
    assert groups.take(pending, free) is None and len(pending) == 1
    free += first[1]  # the first run ended: its GPUs go to the next
    assert groups.take(pending, free)[1] == ["0"] and free == ["1"]
    with pytest.raises(ConfigError, match=r"^runtime.processes=4: this machine has 3 CUDA devices; a local sweep "):
        groups.check_devices([run(4)], None)


@pytest.mark.slow
def test_a_local_sweep_of_runs_on_two_processes(tmp_path, out, one_process):
    """launcher=local with runtime.processes=2 on 2 CPU slots: one run at a time on its 2 gloo processes; each
    run is the one-process run."""

    assert main(["sweep", "seed=0,1", *ARGS, "runtime.processes=2", "launcher.workers=2", "--name", "k2",
                 "--quiet"]) == 0
    assert_same_run(out / "runs" / one_process.name, one_process, 60)
    assert {RunStore(p).status()["state"] for p in (out / "runs").iterdir()} == {"finished"}


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



def rank_pids(pid: int, size: int, deadline_s: float = 120) -> dict[int, int]:
    """rank -> pid of the ranks `memsweep train runtime.processes=K` (process `pid`) started."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ranks = {}
        for child in children:
            env = dict(v.split("=", 1) for v in Path(f"/proc/{child}/environ").read_text().split("\0") if "=" in v)
            ranks[int(env["RANK"])] = int(child)
        if len(ranks) == size:
            return ranks
        time.sleep(0.1)
    raise TimeoutError("the ranks did not start")


@pytest.mark.slow
@pytest.mark.parametrize("rank", [1, 0])
def test_a_rank_that_dies_leaves_the_last_checkpoint_and_a_clear_state(tmp_path, one_process, rank):
    """One rank SIGKILLed in a training step: the other's collective fails at once (no hang), it ends with one
    line; the launcher names the killed rank and exits 137. No checkpoint is written after the death and none
    is torn; status.json says failed with the reason (rank 1 killed), or stopped (rank 0, which writes it, killed:
    store.live). The same command then resumes and ends as the uninterrupted one-process run."""
    env = {"MEMSWEEP_OUTPUT_ROOT": str(tmp_path), "MEMSWEEP_FAILPOINT": "step:25", "MEMSWEEP_FAILPOINT_RANK": str(rank)}
    r = run_cli("train", *ARGS, "runtime.processes=2", env=env)
    assert r.returncode == 137, r.stderr[-2000:]
    lines = [x for x in r.stderr.splitlines() if x.startswith("memsweep:")]
    assert f"memsweep: rank {rank} of 2 was killed by SIGKILL; the other ranks stopped" in lines, r.stderr[-3000:]
    assert any(x.startswith("memsweep: error: another of the run's 2 processes ended or stopped answering")
               for x in lines), r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    store = RunStore(tmp_path / "runs" / one_process.name)
    status = store.status()
    assert store.checkpoint_steps()[-1] == 20 and not list(store.ckpt_dir.glob(".*.tmp"))
    if rank == 1:
        assert status["state"] == "failed" and status["error"].startswith("RankLost: another of the run's 2"), status
    else:
        assert live_state(status) == "stopped" and status["step"] <= 20, status
    assert [row["step"] for row in store.read_metrics()] == [10, 18]
    again = run_cli("train", *ARGS, "runtime.processes=2", env={"MEMSWEEP_OUTPUT_ROOT": str(tmp_path)})
    assert again.returncode == 0, again.stderr[-2000:]
    assert_same_run(store.dir, one_process, 60)


@pytest.mark.slow
@pytest.mark.parametrize("rank", [1, 0])
def test_a_signal_that_reaches_one_rank_stops_both_at_one_step(tmp_path, one_process, rank):
    """SIGTERM to one rank only (a signal reaching the ranks at different steps): the ranks agree on the step
    (distributed.agree), rank 0 checkpoints it, status stopped by SIGTERM at that step, exit 143, no torn file;
    resumed on one process the run ends as the uninterrupted one-process run."""
    env = {**os.environ, "MEMSWEEP_OUTPUT_ROOT": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "memsweep.cli", "train", *ARGS, "runtime.processes=2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids = rank_pids(proc.pid, 2)
    store = RunStore(tmp_path / "runs" / one_process.name)
    deadline = time.monotonic() + 300
    while not store.checkpoint_steps() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(pids[rank], signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    status = store.status()
    assert status["state"] == "stopped" and status["stopped_by"] == "SIGTERM" and 10 <= status["step"] < 60, status
    assert store.checkpoint_steps()[-1] == status["step"] and not list(store.ckpt_dir.glob(".*.tmp"))
    assert f"checkpointed at step {status['step']} of 60" in err and "Traceback" not in err
    r = run_cli("train", *ARGS, env={"MEMSWEEP_OUTPUT_ROOT": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert_same_run(store.dir, one_process, 60)


# an evaluation whose counts do not divide by 2: 33 samples, 63 loss triples, 5 x 3 probe points
EVAL = [*FAST, "runtime.device=cpu", "eval.num_samples=33", "eval.loss_points=63", "eval.field_points=3"]


def evaluate_here(out_dir) -> None:
    """One evaluation of a fixed network on this process's rank (torchrun's environment, or none: one process);
    rank 0 saves its row, its samples and how many samples each rank drew to out_dir."""
    torch.set_num_threads(1)
    cfg = config.compose_run(EVAL)
    rank, size, _ = distributed.world()
    device = distributed.setup(cfg) if size > 1 else torch.device("cpu")
    data = load_for_model(cfg.data, data_cache(cfg)).to(device)
    torch.manual_seed(0)
    model = networks.build(cfg.model, cfg.data.image_size, cfg.data.channels, data.num_classes)
    with torch.no_grad():  # off the zero-initialized output layers, so that samples and losses depend on it
        for w in model.parameters():
            w.add_(0.05 * torch.randn_like(w))
    evaluator = Evaluator(cfg, data, device, eager=rank == 0)
    drawn, generate = [], evaluator._generate
    evaluator._generate = lambda m, count, start: drawn.append((start, count)) or generate(m, count, start)
    evaluated = evaluator(model, 10)
    shares = [drawn]  # (start, count) of the samples each rank drew
    if size > 1:
        shares = [None] * size
        torch.distributed.all_gather_object(shares, drawn)
    if rank == 0:
        row, samples, _ = evaluated
        torch.save({"row": row, "samples": samples, "drawn": shares}, Path(out_dir) / "evaluation.pt")
    else:
        assert evaluated is None
    distributed.teardown()


def test_the_shares_of_an_evaluation():
    assert [bounds(10_000, r, 8) for r in range(8)] == [(1250 * r, 1250 * (r + 1)) for r in range(8)]
    assert [bounds(33, r, 2) for r in range(2)] == [(0, 17), (17, 33)]
    assert [bounds(3, r, 4) for r in range(4)] == [(0, 1), (1, 2), (2, 3), (3, 3)]  # the last rank has none


@pytest.mark.slow
def test_an_evaluation_on_two_processes_is_the_one_process_evaluation(tmp_path, monkeypatch):
    """Every rank samples its half of the fixed-noise samples (17 and 16 of 33) and computes its half of the loss
    triples and probe points; rank 0's row equals one process's: losses, field_dist, nn_dist, SW and FD within rel
    1e-5 (measured: 1.5e-9 at most, the samples 2.4e-7 apart), mem_ratio the same count."""
    monkeypatch.setenv("MEMSWEEP_OUTPUT_ROOT", str(tmp_path / "root"))
    one = tmp_path / "one"
    one.mkdir()
    evaluate_here(one)
    two = tmp_path / "two"
    two.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", __file__, str(two)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    want, got = torch.load(one / "evaluation.pt"), torch.load(two / "evaluation.pt")
    assert got["drawn"] == [[(0, 17)], [(17, 16)]] and want["drawn"] == [[(0, 33)]]
    torch.testing.assert_close(got["samples"], want["samples"], rtol=1e-5, atol=1e-6)
    a, b = got["row"], want["row"]
    assert set(a) == set(b)
    for key, value in b.items():
        if key.startswith("mem_ratio"):
            assert a[key] == value, key
        else:
            assert a[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


if __name__ == "__main__":  # a rank of test_an_evaluation_on_two_processes_is_the_one_process_evaluation
    evaluate_here(sys.argv[1])
