"""`memsweep train|sweep --help` lists every setting with its value and what it accepts, generated from the
schema (memsweep.schema, the one place keys and ranges live) and the composed config (issue 29)."""
from omegaconf import OmegaConf

from memsweep import config
from memsweep.cli import main
from memsweep.commands.show_help import settings


def settings_lines(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("settings ("))
    return lines[start + 1:]


def test_train_help_lists_every_setting_of_the_run_with_its_value_and_range(out, capsys):
    assert main(["train", "model=c32", "data.n=24", "--help"]) == 0
    shown = settings_lines(capsys.readouterr().out)
    cfg = OmegaConf.to_container(config.compose_run(["model=c32", "data.n=24"], data_here=False), resolve=True)
    rows = settings(cfg)
    assert len(shown) == len(rows)
    for line, (key, value, accepts) in zip(shown, rows):
        assert line.split()[:2] == [key, value] and line.endswith(accepts), line
    by_key = {line.split()[0]: line for line in shown}
    assert by_key["data.n"].split()[1] == "24" and by_key["data.n"].endswith("an integer >= 2")
    assert by_key["model.channels"].split()[1] == str(cfg["model"]["channels"])
    assert by_key["train.ema_decay"].endswith("a finite number in [0, 1)")
    assert by_key["objective.target"].endswith("one of velocity, closed_form")
    assert "data=OPTION" in by_key["data.name"] and "cifar10" in by_key["data.name"]


def test_the_cfg_option_says_whose_config_it_prints(out, capsys):
    assert main(["train", "--help"]) == 0
    train = " ".join(capsys.readouterr().out.split())
    assert "job: print the run's composed config" in train and "first run" not in train
    assert main(["sweep", "--help"]) == 0
    sweep = " ".join(capsys.readouterr().out.split())
    assert "job: print the composed config of the sweep's first run" in sweep
    assert "settings (key=VALUE; the values of the default run" in sweep
