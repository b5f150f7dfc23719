"""A run is first-class on the command line (issue 29): `memsweep status RUN` shows one run, the line a finished
run prints and its progress bar give its latest evaluation."""
import re

import pytest

from memsweep import config
from memsweep.cli import main
from memsweep.store import identity
from memsweep.store.run import RunStore

from conftest import FAST

RUN = [*FAST, "train.steps=40", "eval.num_points=3", "eval.first_step=5"]


@pytest.fixture
def trained(out, capsys):
    """A tiny finished run, its store and what `memsweep train` printed (stdout, stderr)."""
    args = [*RUN, "runtime.progress=true"]
    assert main(["train", *args]) == 0
    cfg = config.compose_run(args)
    return RunStore(identity.run_dir(cfg)), capsys.readouterr()


def test_a_finished_run_prints_its_last_gap_and_mem_ratio(trained):
    store, printed = trained
    last = store.read_metrics()[-1]
    line = printed.out.strip().splitlines()[-1]
    assert line.startswith(f"run {store.run_id}: finished at step 40 -> {store.dir}")
    assert line.endswith(f"last evaluation (step {last['step']}): loss_gap {last['loss_gap']:.4f}, "
                         f"mem_ratio {last['mem_ratio']:.2f}")


def test_the_progress_bar_ends_on_the_latest_evaluation(trained):
    """The bar's last state shows the final evaluation's gap and mem_ratio (it used to keep an earlier one's)."""
    store, printed = trained
    rows = store.read_metrics()
    shown = [re.search(r"gap=([-\d.]+), mem=([\d.]+)", s) for s in re.split(r"[\r\n]", printed.err)]
    shown = [m.groups() for m in shown if m]
    assert shown, printed.err[-2000:]
    assert shown[-1] == (f"{rows[-1]['loss_gap']:.4f}", f"{rows[-1]['mem_ratio']:.2f}")


def test_status_of_a_run_by_id_prefix_or_directory(trained, out, capsys):
    store, _ = trained
    status, rows = store.status(), store.read_metrics()
    last = rows[-1]
    outputs = []
    for target in (store.run_id, store.run_id[:5], str(store.dir)):
        assert main(["status", target]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2]
    text = outputs[0]
    assert text.startswith(f"run {store.run_id}: finished, step 40/40 (100%)")
    assert f"last evaluation (step {last['step']}): train_loss {last['train_loss']:.4g}, " \
           f"test_loss {last['test_loss']:.4g}, loss_gap {last['loss_gap']:.4g}, mem_ratio {last['mem_ratio']:.2f} " \
           f"[{last['mem_ratio_lo']:.2f}, {last['mem_ratio_hi']:.2f}]" in text
    assert f"sw_test {last['sw_test']:.4g}" in text and f"fid_test {last['fid_test']:.4g}" in text
    steps = [r["step"] for r in rows]
    assert f"metrics.jsonl   {len(rows)} rows (steps {steps[0]} .. {steps[-1]})" in text
    assert f"{len(store.checkpoint_steps())} checkpoints" in text
    assert f"{len(store.eval_weight_steps())} evaluation weights" in text
    assert f"{len(store.steps('samples'))} sample sets (.npz), {len(store.steps('grid'))} grids (.png)" in text
    assert f"training {status['train_seconds']:.1f} s" in text


def test_status_of_an_unfinished_run_and_of_nothing(out, capsys):
    """A run stopped partway shows its step out of its total and its last evaluation so far; a name that is
    neither a sweep nor a run says the sweep is not launched."""
    cfg = config.compose_run(RUN)
    store = RunStore(identity.run_dir(cfg))
    store.set_status(state="stopped", step=17, total_steps=40, stopped_by="SIGTERM")
    store.append_metrics({"step": 5, "loss_gap": 0.01, "mem_ratio": 0.0})
    store.append_metrics({"step": 15, "loss_gap": 0.25, "mem_ratio": 0.5})
    assert main(["status", store.run_id]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"run {store.run_id}: stopped, step 17/40 (42%)")
    assert "stopped by: SIGTERM" in text and "last evaluation (step 15): loss_gap 0.25, mem_ratio 0.50" in text
    assert main(["status", "nosuchsweep"]) == 2
    assert "not launched yet" in capsys.readouterr().err


def test_an_ambiguous_run_prefix_is_refused(out, capsys):
    for run_id in ("abcd00000001", "abcd00000002"):
        RunStore(out / "runs" / run_id).set_status(state="pending")
    assert main(["status", "abcd"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("memsweep: error: run abcd: 2 runs under") and "abcd00000001" in err
