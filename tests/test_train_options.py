"""Runtime and precision options run correctly on the CPU; divergence and torn checkpoints are handled."""
import json

import pytest
import torch

from memsweep import config
from memsweep.store.run import RunStore
from memsweep.train.loop import train
from memsweep.store import identity

from conftest import FAST


def short(*extra):
    return config.compose_run([*FAST, "train.steps=30", "eval.num_points=2", *extra])


def rows(cfg):
    return RunStore(identity.run_dir(cfg)).read_metrics()


def test_layout_and_optimizer_options_do_not_change_the_run(out):
    base = short()
    train(base)
    ref = rows(base)
    for option in (["runtime.channels_last=true"], ["runtime.fused_adam=false"], ["runtime.compile=aot_eager"]):
        cfg = short(*option, f"paths.output_root={out / option[0].replace('=', '_')}")
        assert identity.run_id(cfg) == identity.run_id(base)  # runtime options are not part of the identity
        assert train(cfg)["state"] == "finished"
        got = rows(cfg)
        for a, b in zip(got, ref):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3), option
            assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-3), option


def test_bfloat16_autocast_trains_close_to_float32(out):
    cfg32, cfg16 = short(), short("train.dtype=bfloat16")
    assert identity.run_id(cfg32) != identity.run_id(cfg16)  # precision changes the result: a different run
    train(cfg32)
    train(cfg16)
    a, b = rows(cfg32)[-1], rows(cfg16)[-1]
    assert torch.isfinite(torch.tensor(b["train_loss"]))
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.1)


def test_a_diverging_run_stops_and_says_so(out):
    cfg = short("optim.lr=1e6", "train.steps=200")
    status = train(cfg)
    assert status["state"] == "diverged" and 0 < status["diverged_step"] <= 200
    saved = json.loads((identity.run_dir(cfg) / "status.json").read_text())
    assert saved["state"] == "diverged" and saved["diverged_step"] == status["diverged_step"]
    assert train(cfg)["state"] == "diverged"  # asked again: left alone


def test_a_torn_latest_checkpoint_falls_back_to_the_previous_one(out):
    cfg = short("train.steps=40", "eval.num_points=4", "runtime.checkpoint_every=10")
    train(cfg)
    store = RunStore(identity.run_dir(cfg))
    want = store.read_metrics()
    last = store.checkpoint_steps()[-1]
    path = store.ckpt_dir / f"step_{last:09d}.pt"
    path.write_bytes(path.read_bytes()[:1000])  # a write cut short
    store.set_status(state="running")
    with pytest.warns(UserWarning, match="unreadable"):
        assert train(cfg)["state"] == "finished"
    assert store.read_metrics() == want
    torch.load(path, weights_only=True)  # rewritten whole
