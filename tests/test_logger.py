"""wandb, offline: the wandb run id is memsweep's run id, config is flat, no secret is written."""
import pytest

from memsweep import config
from memsweep.logger import flatten, loggable
from memsweep.train import train

from conftest import FAST


def test_flatten_and_loggable():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
    assert loggable({"step": 3, "x_by_t": [1.0, 2.0]}) == {"step": 3, "x_by_t/0": 1.0, "x_by_t/1": 2.0}


def test_offline_wandb_run_is_named_by_the_run_id_and_holds_no_secret(out, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)  # must never land in a file
    args = [a for a in FAST if a != "logger=none"] + ["logger=wandb", "logger.mode=offline"]
    cfg = config.compose_run(args)
    train(cfg)
    run_dir = config.run_dir(cfg)
    offline = list((run_dir / "wandb").glob(f"offline-run-*-{config.run_id(cfg)}"))
    assert len(offline) == 1, list((run_dir / "wandb").iterdir())
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert b"x" * 40 not in path.read_bytes(), path
