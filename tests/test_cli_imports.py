"""The commands that only read import neither torch nor matplotlib, pandas or wandb (issue 29): each runs in a
fresh interpreter, which then says which of those modules it loaded. Timings: scripts/bench_cli.py."""
import json
import os
import subprocess
import sys

import pytest

from memsweep.cli import main

from conftest import FAST

HEAVY = ("torch", "matplotlib", "pandas", "wandb")
CHILD = f"""
import sys
from memsweep.cli import main
try:
    code = main(sys.argv[1:])
finally:  # argparse's --help exits from inside main
    print("loaded:", ",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


def loaded(*args) -> tuple[list[str], subprocess.CompletedProcess]:
    """The heavy modules `memsweep ARGS` loaded in a fresh process (which must succeed), and the process."""
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=os.environ,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("loaded:"), done.stderr[-2000:]
    return [m for m in line[len("loaded:"):].strip().split(",") if m], done


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["sweep", "--help"], ["status", "--help"],
                                  ["report", "--help"], ["eval", "--help"], ["train", "--cfg", "job", "data.n=24"],
                                  ["sweep", "demo", "--cfg", "job"], ["sweep", "seed=0,1", "--cfg", "job"]])
def test_help_and_cfg_job_import_no_torch(out, args):
    heavy, done = loaded(*args)
    assert heavy == [], (args, heavy)
    assert done.stdout.strip()


def test_a_dry_run_imports_no_torch_once_its_flop_counts_are_kept(out):
    """The first dry run counts the FLOPs (torch, on the meta device) and keeps the counts in the output root; the
    next one, of other sizes of the same networks, prints the same kind of plan without loading torch."""
    first, done = loaded("sweep", "demo", "--dry-run", "--gpu", "h100")
    kept = out.parent / "user-cache" / "memsweep" / "flops.json"   # the out fixture's user cache folder
    assert "torch" in first and kept.is_file() and not out.exists()   # a dry run writes nothing in the output root
    again, second = loaded("sweep", "demo", "--dry-run", "--gpu", "h100")
    assert again == []
    assert second.stdout == done.stdout   # the same plan, cost and GPU-hours from the kept counts
    other, _ = loaded("sweep", "demo", "seed=1", "--name", "other", "--dry-run")   # other runs, the same networks
    assert other == []


def test_kept_counts_of_other_code_are_counted_again(out):
    loaded("sweep", "demo", "--dry-run")
    path = out.parent / "user-cache" / "memsweep" / "flops.json"
    kept = json.loads(path.read_text())
    kept["fingerprint"] = "another version of memsweep"
    path.write_text(json.dumps(kept))
    heavy, _ = loaded("sweep", "demo", "--dry-run")
    assert "torch" in heavy


def test_status_of_a_sweep_and_of_a_run_imports_no_torch(out):
    assert main(["sweep", "data.n=8,12", *FAST, "train.steps=20", "eval.num_points=2", "--name", "tiny",
                 "--quiet"]) == 0
    run_id = json.loads((out / "sweeps" / "tiny" / "sweep.json").read_text())["runs"][0]["run_id"]
    for args in (["status", "tiny"], ["status", run_id], ["status", run_id[:6]], ["status", str(out / "runs" / run_id)]):
        heavy, done = loaded(*args)
        assert heavy == [], (args, heavy)
        assert run_id in done.stdout
