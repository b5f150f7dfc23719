"""`memsweep eval RUN hybrid|els|traj` on a tiny trained run: the probes' keys merged into its rows."""
import json

import pandas as pd
import pytest
import torch

from memsweep import config
from memsweep.cli import main
from memsweep.store import identity
from memsweep.store.run import RunStore
from memsweep.train.loop import train

from conftest import FAST


pytestmark = pytest.mark.xdist_group("test_probes_posthoc")   # its module fixture trains once, on one worker


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = config.compose_run([*FAST, "eval.num_points=3", "eval.bootstrap=0",
                              f"paths.output_root={tmp_path_factory.mktemp('out')}"])
    assert train(cfg)["state"] == "finished"
    yield RunStore(identity.run_dir(cfg))
    torch.set_num_threads(threads)


def test_eval_hybrid_writes_the_keys_at_the_first_and_last_steps(trained):
    store = trained
    before = store.read_metrics()
    assert main(["eval", str(store.dir), "hybrid", "--steps", "first,last"]) == 0
    after = store.read_metrics()
    assert [r["step"] for r in after] == [r["step"] for r in before]
    for i, row in enumerate(after):
        assert {k: row[k] for k in before[i]} == before[i]
        has = "hybrid_mem_ratio" in row
        assert has == (i in (0, len(after) - 1))
        if has:
            assert row["hybrid_tau"] == pytest.approx([i / 10 for i in range(11)])
            assert len(row["hybrid_mem_ratio"]) == len(row["hybrid_dist"]) == 11
            assert row["hybrid_dist"][0] == 0
            assert row["hybrid_mem_ratio"][0] == pytest.approx(row["mem_ratio"], abs=1e-6)  # tau 0: the network
            assert row["hybrid_mem_ratio"][-1] > 0.9                                        # tau 1: the memorizer


def test_eval_els_and_traj_write_their_keys(trained):
    store = trained
    assert main(["eval", str(store.dir), "els", "traj", "--steps", "last"]) == 0
    row = store.read_metrics()[-1]
    assert row["els_dist"] > 0 and row["els_mem_dist"] > 0 and 0 <= row["els_mem_ratio"] <= 1
    steps = int(store.read_config().eval.sampler_steps)
    for key in ("traj_t", "traj_state", "traj_train", "traj_test"):
        assert len(row[key]) == steps
    text = store.metrics_path.read_text()
    assert main(["eval", str(store.dir), "els", "traj", "--steps", "last"]) == 0   # nothing missing: unchanged
    assert store.metrics_path.read_text() == text


def test_report_shows_the_probes_computing_the_missing_ones_as_memsweep_eval_would(trained, tmp_path):
    store = trained
    root = store.dir.parent.parent
    (root / "sweeps" / "one").mkdir(parents=True, exist_ok=True)
    (root / "sweeps" / "one" / "sweep.json").write_text(json.dumps(
        {"name": "one", "axes": ["data.n"], "runs": [{"run_id": store.run_id, "axes": {"data.n": 16}}]}))
    rows = store.read_metrics()
    assert "traj_t" not in rows[0]                     # the first evaluation's traj: computed by the report
    assert main(["report", "one", "--output-root", str(root)]) == 0
    d = root / "sweeps" / "one"
    for name in ("hybrid.png", "els.png", "traj.png", "hybrid.csv", "els.csv", "traj.csv"):
        assert (d / name).is_file(), name
    text = (d / "report.md").read_text()
    assert "#### Hybrid sampling" in text and "#### Where sampling trajectories go" in text
    assert "could not be drawn" not in text
    traj = pd.read_csv(d / "traj.csv")
    early = traj[traj["when"] == "early"]
    assert main(["eval", str(store.dir), "traj", "--steps", "first"]) == 0
    logged = store.read_metrics()[0]
    assert early["traj_state"].tolist() == pytest.approx(logged["traj_state"], rel=1e-5)   # the same noise
    assert store.read_metrics()[1:] == rows[1:]          # the report wrote nothing into the run
