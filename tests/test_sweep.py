"""Sweep files, expansion, validation, identity, and a real local launch."""
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from memsweep import config
from memsweep.cli import main
from memsweep.sweeps import spec
from memsweep.errors import ConfigError
from memsweep.store.run import RunStore
from memsweep.store import compositions, identity, user_cache

from conftest import FAST, run_cli


def write_sweep(tmp_path, body, name="tiny"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return str(path)


def test_axes_zip_overrides_and_resources_expand(tmp_path, out):
    path = write_sweep(tmp_path, {
        "axes": {"data.n": [8, 16], "model": ["tiny"]},
        "zip": {"train.batch_size": [16, 32], "optim.lr": [1e-3, 2e-3]},
        "overrides": FAST,
        "launcher": {"timeout_min": 10},
        "resources": [{"when": {"data.n": 16}, "set": {"timeout_min": 99}}]})
    sw = spec.expand(path)
    assert len(sw.runs) == 4 and sw.axes == ["data.n", "model", "train.batch_size", "optim.lr"]
    pairs = {(r.cfg.data.n, r.cfg.train.batch_size, r.cfg.optim.lr) for r in sw.runs}
    assert pairs == {(8, 16, 1e-3), (8, 32, 2e-3), (16, 16, 1e-3), (16, 32, 2e-3)}
    assert {r.cfg.data.n: r.resources["timeout_min"] for r in sw.runs} == {8: 10, 16: 99}
    assert all(r.cfg.train.total_steps == 60 for r in sw.runs)
    assert all(r.cfg.logger.reference == {"n": 8, "batch_size": 16, "lr": 1e-3} for r in sw.runs)


def test_a_value_may_follow_another_setting(tmp_path, out):
    # the second subset starts where the first ends, whatever n: data.offset follows data.n
    path = write_sweep(tmp_path, {"axes": {"data.n": [8, 16], "data.offset": [0, "\\${data.n}"]}, "overrides": FAST})
    sw = spec.expand(path)
    got = sorted((r.axes["data.n"], r.axes["data.offset"], r.cfg.data.offset) for r in sw.runs)
    assert got == [(8, 0, 0), (8, 8, 8), (16, 0, 0), (16, 16, 16)]
    literal = {identity.run_id(config.compose_run([*FAST, f"data.n={n}", f"data.offset={o}"])) for n, o, _ in got}
    assert {r.run_id for r in sw.runs} == literal  # the same runs as written out by hand


@pytest.mark.parametrize("body, message", [
    ({"axes": {"data.n": [8]}, "overides": []}, "unknown key 'overides'"),
    ({"axes": {"data.n": []}}, "axes.data.n must be a non-empty list"),
    ({"axes": {}}, "no axes"),
    ({"zip": {"data.n": [8, 16], "seed": [0]}}, "equal lengths"),
    ({"axes": {"data.n": [8, 0]}}, "data.n=0"),
    ({"axes": {"model": ["tiny", "huge"]}}, "model=huge"),
    ({"axes": {"data.n": [8]}, "by_objective": {"ddim": ["optim.lr=1e-3"]}}, "by_objective.ddim: no such objective"),
    ({"axes": {"data.n": [8]}, "by_objective": {"vp": "optim.lr=1e-3"}}, "by_objective must map"),
])
def test_bad_sweep_files_are_named(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        spec.expand(write_sweep(tmp_path, body))


def test_settings_by_objective_apply_to_that_objective_only(tmp_path, out):
    # after the file's overrides (they win over them), before the command line's (which win over them)
    path = write_sweep(tmp_path, {"axes": {"data.n": [8]}, "overrides": [*FAST, "optim.lr=1e-3"],
                                  "by_objective": {"vp": ["optim.lr=2e-3", "train.batch_size=8"]}})
    plain = spec.expand(path).runs[0]
    assert plain.cfg.optim.lr == 1e-3 and plain.run_id == identity.run_id(config.compose_run([*FAST, "optim.lr=1e-3",
                                                                                                "data.n=8"]))
    vp = spec.expand(path, ["objective=vp"]).runs[0]
    assert (vp.cfg.objective.name, vp.cfg.optim.lr, vp.cfg.train.batch_size) == ("vp", 2e-3, 8)
    mine = spec.expand(path, ["objective=vp", "optim.lr=5e-4"]).runs[0]
    assert (mine.cfg.optim.lr, mine.cfg.train.batch_size) == (5e-4, 8)
    edm = spec.expand(path, ["objective=edm"]).runs[0]
    assert edm.cfg.optim.lr == 1e-3 and edm.cfg.train.batch_size == plain.cfg.train.batch_size


def test_shipped_sweeps_expand():
    # the other papers' bundles need images and the objective group: tests/test_data_sources.py dry-runs them
    bundles = {"bonnaire_celeba", "bonnaire_celeba_v0", "gu_cifar10"}
    for path in (config.config_dir() / "sweep").glob("*.yaml"):
        if path.stem in bundles:
            continue
        sw = spec.expand(path.stem, ["data.download=true"] if path.stem != "demo" else [])
        assert len(sw.runs) >= 3, path.stem


def test_changing_a_default_in_a_config_file_changes_the_run_id(tmp_path, monkeypatch):
    before = identity.run_id(config.compose_run([]))
    copy = tmp_path / "configs"
    shutil.copytree(config.config_dir(), copy)
    eval_cfg = copy / "eval" / "default.yaml"
    eval_cfg.write_text(eval_cfg.read_text().replace("num_samples: 256", "num_samples: 128"))
    monkeypatch.setenv("MEMSWEEP_CONFIG_DIR", str(copy))
    assert identity.run_id(config.compose_run([])) != before


def test_dry_run_prints_the_runs_and_launches_nothing(tmp_path, out):
    path = write_sweep(tmp_path, {"axes": {"data.n": [8, 16, 32]}, "overrides": FAST})
    r = run_cli("sweep", path, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "3 runs" in r.stdout and "3 to launch" in r.stdout
    assert not out.exists()


@pytest.mark.slow
def test_local_sweep_runs_resumes_nothing_twice_and_shares_runs(tmp_path, out, capsys):
    path = write_sweep(tmp_path, {"axes": {"data.n": [8, 16]}, "overrides": FAST}, name="first")
    r = run_cli("sweep", path, "--quiet")
    assert r.returncode == 0, r.stderr + r.stdout
    record = json.loads((out / "sweeps" / "first" / "sweep.json").read_text())
    ids = [e["run_id"] for e in record["runs"]]
    assert [RunStore(out / "runs" / i).status()["state"] for i in ids] == ["finished", "finished"]
    # again: nothing to launch (in this process: what a fresh one sees is the status call's below)
    assert main(["sweep", path, "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "0 to launch" in said and "nothing to launch" in said
    # a second sweep that contains one of the runs shares its directory
    other = write_sweep(tmp_path, {"axes": {"data.n": [16, 32]}, "overrides": FAST}, name="second")
    assert main(["sweep", other, "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert "1 finished" in said and "1 to launch" in said
    # status from a fresh shell
    r = run_cli("status", "first")
    assert r.returncode == 0 and r.stdout.count("finished") >= 2 and "60/60" in r.stdout


def test_failed_runs_are_retried_only_when_asked(tmp_path, out):
    path = write_sweep(tmp_path, {"axes": {"data.n": [8]}, "overrides": FAST}, name="retry")
    sw = spec.expand(path)
    sw.runs[0].store.set_status(state="failed", error="boom")
    assert spec.plan(sw)[0] == []
    assert [r.run_id for r in spec.plan(sw, retry=True)[0]] == [sw.runs[0].run_id]


def test_slurm_launch_without_slurm_fails_before_submitting(tmp_path, out, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    path = write_sweep(tmp_path, {"axes": {"data.n": [8]}, "overrides": FAST}, name="noslurm")
    r = subprocess.run([sys.executable, "-m", "memsweep.cli", "sweep", path, "launcher=slurm"],
                       capture_output=True, text=True, env=dict(os.environ))
    assert r.returncode == 2 and "launcher=slurm" in r.stderr and "Traceback" not in r.stderr
    assert not (out / "runs").exists()


@pytest.mark.slow
def test_two_sweeps_at_once_under_one_root_share_a_run_and_corrupt_nothing(tmp_path, out):
    a = write_sweep(tmp_path, {"axes": {"data.n": [8, 16]}, "overrides": FAST}, name="a")
    b = write_sweep(tmp_path, {"axes": {"data.n": [16, 24]}, "overrides": FAST}, name="b")
    procs = [subprocess.Popen([sys.executable, "-m", "memsweep.cli", "sweep", p, "--quiet"], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for p in (a, b)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    for name in ("a", "b"):
        record = json.loads((out / "sweeps" / name / "sweep.json").read_text())
        for entry in record["runs"]:
            store = RunStore(out / "runs" / entry["run_id"])
            assert store.status()["state"] == "finished"
            steps = [row["step"] for row in store.read_metrics()]
            assert steps == sorted(set(steps)) and steps[-1] == 60  # no row twice, none missing at the end
    shared = spec.expand(a).runs[1].run_id
    assert shared in [e["run_id"] for e in json.loads((out / "sweeps" / "b" / "sweep.json").read_text())["runs"]]
    assert not list(out.rglob("*.tmp*"))  # no half-written file left behind


@pytest.mark.slow
def test_a_diverging_run_does_not_stop_its_sweep_and_shows_in_status_and_report(tmp_path, out, capsys):
    path = write_sweep(tmp_path, {"axes": {"data.n": [8]}, "zip": {"optim.lr": [1e-3, 1e6]},
                                  "overrides": FAST}, name="lrs")
    r = run_cli("sweep", path, "--quiet")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "diverged" in r.stdout and "finished" in r.stdout
    assert main(["status", "lrs"]) == 0 and "diverged" in capsys.readouterr().out
    assert main(["report", "lrs"]) == 0
    summary = pd.read_csv(out / "sweeps" / "lrs" / "summary.csv")
    assert sorted(summary["state"]) == ["diverged", "finished"]
    assert summary.loc[summary["state"] == "diverged", "lr"].item() == 1e6


def test_composing_once_per_choice_of_groups_gives_each_run_as_composed_alone(tmp_path, out):
    # groups (model, launcher) and keys vary, with an interpolation that must see the run's own data.n
    extra = ["++train.ema_decay=0.99", "+logger.tag=big", "data.root=null", "eval.field_t=[0.1,0.5]", "seed=3"]
    axes = {"model": ["tiny", "c32"], "data.n": [8, 16], "data.offset": [0, "\\${data.n}"]}
    path = write_sweep(tmp_path, {"axes": axes,
                                  "zip": {"launcher": ["local", "slurm"], "optim.lr": [1e-3, 2e-3]},
                                  "overrides": [*FAST, *extra]})
    sw = spec.expand(path)
    with config.Composer() as compose:
        derived = [compose(r.overrides) for r in sw.runs]
        assert len(derived) == 16 and compose.composed == 0   # the bases spec.expand composed were kept:
    bases = [p for p in (user_cache.folder() / "compositions").rglob("*.pkl") if p.name != compositions.Kept.PARSED]
    assert len(bases) == 4   # one per (model, launcher)
    with config.Composer(whole=True) as hydra_alone:   # Hydra's compose with every override, run by run
        for run, cfg in zip(sw.runs, derived):
            alone = hydra_alone(run.overrides)
            assert OmegaConf.to_yaml(cfg) == OmegaConf.to_yaml(alone), run.overrides
            assert identity.run_id(cfg) == identity.run_id(alone) == run.run_id
        assert hydra_alone.composed == len(sw.runs)
    assert {(r.cfg.data.n, r.cfg.data.offset) for r in sw.runs} == {(8, 0), (8, 8), (16, 0), (16, 16)}


@pytest.mark.parametrize("bad", [["data.n=99999"], ["data.n=abc"], ["data.typo=1"], ["+data.n=3"], ["model=giant"],
                                 ["data.offset=${data.nope}"], ["~data.nope"], ["data.n=1,2"], ["optim.lr=0"]])
def test_a_bad_value_fails_alike_both_ways(bad):
    messages = []
    for whole in (False, True):   # a base with the keys applied, and Hydra's compose with every override
        with config.Composer(whole=whole) as compose:
            with pytest.raises(ConfigError) as e:
                compose([*FAST, "data.n=16", *bad])
            messages.append(str(e.value))
    assert messages[0] == messages[1]


def test_long_tables_are_summarized_and_written_whole_when_asked(tmp_path, out, capsys):
    path = write_sweep(tmp_path, {"axes": {"data.n": [8, 16, 24, 32, 40, 48], "seed": [0, 1, 2, 3, 4]},
                                  "overrides": [*FAST, "launcher.pack=2", "launcher.workers=1"]})
    table = tmp_path / "runs.csv"
    assert main(["sweep", path, "--dry-run", "--table", str(table)]) == 0
    text = capsys.readouterr().out
    assert "30 runs" in text and "... 14 more rows ..." in text and "30 new; 30 to launch" in text
    assert "would train them in 15 worker jobs: 15 x 2 runs (launcher.pack=2)" in text
    lines = table.read_text().splitlines()
    assert lines[0] == "run_id,data.n,seed,steps,state,action,train FLOPs,eval FLOPs" and len(lines) == 31
    assert main(["sweep", path, "--dry-run", "--all"]) == 0
    text = capsys.readouterr().out
    assert "more rows" not in text and all(line.split(",")[0] in text for line in lines[1:])


def test_status_reads_the_last_complete_row_only(tmp_path, out, capsys):
    path = write_sweep(tmp_path, {"axes": {"data.n": [8, 16]}, "overrides": FAST}, name="last")
    sw = spec.expand(path)
    spec.record(sw, out)
    for k, run in enumerate(sw.runs):
        run.store.set_status(state="finished", step=60, total_steps=60)
        for step in (10, 60):
            run.store.append_metrics({"step": step, "loss_gap": step / 1000 + k, "mem_ratio": 0.5})
    with open(sw.runs[1].store.metrics_path, "a") as f:
        f.write('{"step": 70, "loss_gap": 9')  # torn by a kill: the row before is the last
    assert [s.store.last_metrics() for s in sw.runs] == [s.store.read_metrics()[-1] for s in sw.runs]
    assert main(["status", "last", "--output-root", str(out)]) == 0
    text = capsys.readouterr().out
    assert "0.0600" in text and "1.0600" in text and "2 finished" in text


def test_plan_asks_slurm_once_for_the_whole_sweep(tmp_path, out, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "squeue").write_text(f"#!/bin/sh\necho x >> {calls}\nprintf '123_0\\n77\\n'\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    path = write_sweep(tmp_path, {"axes": {"data.n": [8, 16, 24, 32]}, "overrides": FAST}, name="queued")
    sw = spec.expand(path)
    for run, job in zip(sw.runs, ["123_0", "123_1", "77", None]):
        if job:
            run.store.set_status(state="queued", job_id=job)
    todo, counts = spec.plan(sw)
    assert counts["active"] == 2 and [r.run_id for r in todo] == [sw.runs[1].run_id, sw.runs[3].run_id]
    assert calls.read_text().count("x") == 1
