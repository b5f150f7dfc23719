"""The architecture as a sweep axis (issue 28): memsweep's U-Net and the local CNN on the same data, compared in the
report (report.architectures): onset, rate, best fidelity and els_dist over training."""
import pandas as pd
import pytest

from memsweep.cli import main
from memsweep.report.build import make_report

from conftest import FAST


@pytest.mark.slow
def test_a_sweep_over_architectures_is_compared_in_the_report(out):
    fast = [o for o in FAST if not o.startswith("eval.num_points")] + ["eval.num_points=3"]
    assert main(["sweep", "model=tiny,local_cnn", "data.n=12", "--name", "arch", "--quiet", *fast]) == 0
    assert main(["eval", "arch", "els", "--steps", "all", "--output-root", str(out)]) == 0
    report = make_report(out, "arch", probes=False)
    table = pd.read_csv(out / "sweeps" / "arch" / "architectures.csv")
    assert sorted(table["model"]) == ["local_cnn", "tiny"]
    assert (table["els_steps"] == 3).all() and (table["els_dist_last"] > 0).all()
    assert table["params"].notna().all() and table["best_sw"].notna().all()
    text = report.read_text()
    assert "### Architectures compared on the same data" in text and "What it shows: n = 12:" in text
    assert (out / "sweeps" / "arch" / "architectures.png").is_file()
    # one architecture: no comparison, and none left from before
    assert main(["sweep", "model=tiny", "data.n=12,16", "--name", "one", "--quiet", *fast]) == 0
    make_report(out, "one", probes=False)
    assert not (out / "sweeps" / "one" / "architectures.csv").exists()
    assert "Architectures compared" not in (out / "sweeps" / "one" / "report.md").read_text()
