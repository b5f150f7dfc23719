"""Hydra's command-line habits: sweeps in Hydra's syntax, a lab's own config folders, --cfg job and --help."""
import json

import pytest
import yaml

from memsweep import config
from memsweep.cli import main
from memsweep.errors import ConfigError
from memsweep.store import identity
from memsweep.sweeps import spec

from conftest import FAST

TINY = [*FAST, "train.steps=6", "eval.num_points=1", "eval.first_step=6", "launcher.workers=1"]


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A lab's config folder: its own dataset, experiment and sweep, and a model that clashes with memsweep's."""
    root = tmp_path / "lab"
    for group in ("data", "experiment", "sweep", "model"):
        (root / group).mkdir(parents=True)
    (root / "data" / "mydigits.yaml").write_text("defaults:\n  - digits\n  - _self_\nn: 24\n")
    (root / "experiment" / "bigger.yaml").write_text("# @package _global_\ndata:\n  n: 40\n")
    (root / "sweep" / "labsweep.yaml").write_text(yaml.safe_dump({"axes": {"seed": [0, 1]},
                                                                  "overrides": ["data=mydigits", *FAST]}))
    (root / "model" / "tiny.yaml").write_text((config.config_dir() / "model" / "tiny.yaml").read_text()
                                              .replace("channels:", "channels: 7 #"))
    yield root
    config.use_config_dirs([])  # the folders are kept per process: leave none to the next test


def write_sweep(tmp_path, body, name="tiny"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return str(path)


def test_a_command_line_sweep_is_the_file_sweep_it_spells(tmp_path, out):
    cli = spec.expand(None, ["data.n=8,16", "seed=0,1", *FAST], "cli")
    file = spec.expand(write_sweep(tmp_path, {"axes": {"data.n": [8, 16], "seed": [0, 1]}, "overrides": FAST}))
    assert cli.name == "cli" and cli.axes == ["data.n", "seed"] == file.axes
    assert [r.run_id for r in cli.runs] == [r.run_id for r in file.runs] and len(set(r.run_id for r in cli.runs)) == 4
    assert [r.axes for r in cli.runs] == [r.axes for r in file.runs]  # typed like a file's: 8, not "8"


def test_range_choice_and_glob(out):
    sw = spec.expand(None, ["data.n=range(8,25,8)", "model=choice(tiny,c32)", *FAST])
    assert sw.name == "data.n_model" and sw.spec["axes"] == {"data.n": [8, 16, 24], "model": ["tiny", "c32"]}
    assert sorted({r.cfg.model.channels for r in sw.runs}) == sorted({config.compose_run([f"model={m}"]).model.channels
                                                                      for m in ("tiny", "c32")})
    glob = spec.expand(None, ["model=glob(c3*)", "data.n=8,16", *FAST])
    assert glob.spec["axes"]["model"] == ["c32"]


def test_axes_on_top_of_a_file_and_replacing_one(tmp_path, out):
    path = write_sweep(tmp_path, {"axes": {"data.n": [8, 16]}, "overrides": FAST})
    more = spec.expand(path, ["seed=0,1"])
    assert more.name == "tiny_seed" and len(more.runs) == 4
    assert {r.run_id for r in spec.expand(path).runs} < {r.run_id for r in more.runs}  # the file's runs, shared
    other = spec.expand(path, ["data.n=8,24", "train.steps=30"])  # the command line's axis wins; fixed ones apply
    assert sorted(r.cfg.data.n for r in other.runs) == [8, 24] and {r.cfg.train.total_steps for r in other.runs} == {30}


def test_launch_relaunch_status_by_name(out, capsys):
    args = ["sweep", "data.n=8,16", *TINY, "--name", "mine", "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    record = json.loads((out / "sweeps" / "mine" / "sweep.json").read_text())
    assert record["axes"] == ["data.n"] and record["spec"]["command_line"] == ["data.n=8,16"]
    assert len(record["runs"]) == 2
    capsys.readouterr()
    assert main(args) == 0
    assert "2 finished; 0 to launch" in capsys.readouterr().out
    assert main(["status", "mine", "--output-root", str(out)]) == 0
    shown = capsys.readouterr().out
    assert all(r["run_id"] in shown for r in record["runs"]) and shown.count("finished") >= 2


def test_a_lab_config_dir(lab, out, monkeypatch, capsys, caplog):
    config.use_config_dirs([lab])
    assert config.compose_run(["data=mydigits"]).data.n == 24
    assert config.compose_run(["+experiment=bigger"]).data.n == 40
    sw = spec.expand("labsweep")
    assert len(sw.runs) == 2 and {r.cfg.data.n for r in sw.runs} == {24}
    # a clash: memsweep's own model/tiny.yaml wins, and one line says so, naming both files
    assert config.compose_run([]).model.channels != 7
    clash = [r.getMessage() for r in caplog.records if "model/tiny.yaml" in r.getMessage()]
    assert clash and str(config.config_dir() / "model" / "tiny.yaml") in clash[0] and str(lab / "model" / "tiny.yaml") in clash[0]
    # the same from the command line, and from the environment variable
    config.use_config_dirs([])
    assert main(["sweep", "labsweep", "--dry-run", "--config-dir", str(lab)]) == 0
    assert "2 to launch" in capsys.readouterr().out
    monkeypatch.setenv(config.CONFIG_PATH_ENV, str(lab))
    assert main(["sweep", "labsweep", "--dry-run"]) == 0
    capsys.readouterr()
    assert main(["train", "data=mydigits", "--cfg", "job"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["n"] == 24


def test_cfg_job_prints_the_config_and_writes_nothing(out, capsys):
    assert main(["train", "--cfg", "job", "data.n=24", "model=c32"]) == 0
    text = capsys.readouterr().out
    first, body = text.split("\n", 1)
    cfg = yaml.safe_load(body)
    want = config.compose_run(["data.n=24", "model=c32"])
    assert cfg["data"]["n"] == 24 and cfg["model"] == dict(want.model)
    assert first == f"# run {identity.run_id(want)}"
    assert main(["sweep", "demo", "seed=3,4", "--cfg", "job"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["seed"] == 3
    assert not out.exists()


def test_help_lists_the_config_groups(lab, capsys):
    assert main(["train", "--help", "--config-dir", str(lab)]) == 0
    lines = capsys.readouterr().out.splitlines()
    data = next(line for line in lines if line.strip().startswith("data:"))
    assert "digits (default)" in data and "mydigits" in data and "cifar10" in data
    assert any(line.strip().startswith("+experiment:") and "bigger" in line for line in lines)
    assert main(["sweep", "--help", "--config-dir", str(lab)]) == 0
    sweeps = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("sweeps"))
    assert "demo" in sweeps and "labsweep" in sweeps


@pytest.mark.parametrize("args, says", [
    (["sweep", "data.n=[8,16"], "data.n=[8,16"),
    (["sweep", "optim.lr=interval(0,1)"], "interval()"),
    (["sweep", "model=glob(zzz*)"], "no values"),
    (["sweep", "seed=0,1", "--name", "demo"], "--name demo"),
    (["sweep", "seed=0,1", "--name", "a/b"], "--name 'a/b'"),
    (["sweep", "demo", "--config-dir", "/no/such/folder"], "--config-dir /no/such/folder"),
    (["train", "--config-dir", "/no/such/folder"], "--config-dir /no/such/folder"),
    (["sweep"], "give a sweep's name"),
    (["train", "data.n=16,32"], "memsweep sweep data.n=16,32"),
    (["sweep", "seed=0,1", "data=lab_only"], "data=lab_only"),
])
def test_bad_input_is_one_line(args, says, capsys, out):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("memsweep: error:") and says in err[0], err
    assert not out.exists()


def test_a_missing_folder_in_the_environment_variable(monkeypatch, capsys, out):
    monkeypatch.setenv(config.CONFIG_PATH_ENV, "/no/such/folder")
    assert main(["train", "--cfg", "job"]) == 2
    assert config.CONFIG_PATH_ENV in capsys.readouterr().err


def test_a_name_recorded_with_other_axes_is_refused(out):
    (out / "sweeps" / "mine").mkdir(parents=True)
    (out / "sweeps" / "mine" / "sweep.json").write_text(json.dumps({"name": "mine", "axes": ["seed"], "runs": []}))
    with pytest.raises(ConfigError, match="--name mine: already a sweep over seed"):
        spec.expand(None, ["data.n=8,16", *FAST], "mine")
    assert len(spec.expand(None, ["seed=0,1,2", *FAST], "mine").runs) == 3  # more values: the same sweep
