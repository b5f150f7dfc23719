"""wandb, offline: the wandb run id is memsweep's run id, config is flat, no secret is written."""
import pytest

from memsweep import config
from memsweep.train.wandb_logger import flatten, loggable, make_logger
from memsweep.train.loop import train
from memsweep.store import identity

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
    run_dir = identity.run_dir(cfg)
    offline = list((run_dir / "wandb").glob(f"offline-run-*-{identity.run_id(cfg)}"))
    assert len(offline) == 1, list((run_dir / "wandb").iterdir())
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert b"x" * 40 not in path.read_bytes(), path


def test_a_pack_logs_each_run_to_its_own_wandb_run(out, monkeypatch):
    """K runs trained in one process (memsweep.train.packed) each get their own wandb run, not the first one's."""
    pytest.importorskip("wandb")

    monkeypatch.setenv("WANDB_MODE", "offline")
    args = [a for a in FAST if a != "logger=none"] + ["logger=wandb", "logger.mode=offline"]
    cfgs = [config.compose_run([*args, f"seed={s}"]) for s in (0, 1)]
    loggers = []
    for cfg in cfgs:
        identity.run_dir(cfg).mkdir(parents=True)
        loggers.append(make_logger(cfg, identity.run_id(cfg), identity.run_dir(cfg)))
    assert [lg.run.id for lg in loggers] == [identity.run_id(c) for c in cfgs]
    for lg in loggers:
        lg.log({"step": 1, "train_loss": 1.0})
        lg.finish()
