"""Time the commands that read a whole sweep, at 10, 100 and 1,000 runs: the dry run, the relaunch of a
finished sweep, and `memsweep status`.

    PYTHONPATH=src python scripts/bench_sweep.py [--sizes 10,100,1000] [--out bench_sweep.json] [--keep DIR]

Each size is a sweep file of data.n x seed x optim.lr on digits with model=tiny, in a temp dir with its own
output root; nothing is trained. Per size it times, each in a fresh `python -m memsweep.cli` as a user runs it:
  dry run    memsweep sweep FILE --dry-run          (nothing in the store yet)
  relaunch   memsweep sweep FILE                    (every run already finished: must launch nothing)
  status     memsweep status NAME
The finished runs are written by this script (config.yaml, status.json state=finished, a metrics.jsonl of a
few rows, as a finished run has them), from the runs `memsweep.sweeps.spec.expand` gives (not timed).
`startup` is `python -c "import memsweep.cli"`, the fixed cost of every command. Per-run cost is the
marginal one: (time at N - time at the smallest size) / (N - smallest size). Wall and CPU (user + system)
seconds are both printed: on a shared machine the CPU time is the steadier measure.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from memsweep.sweeps import spec

N_VALUES = [16 * (i + 1) for i in range(10)]
METRIC_ROWS = 5
COMMANDS = ("dry run", "relaunch", "status")


def axes_for(size: int) -> dict:
    """data.n x seed x optim.lr with `size` runs (10, 100, 1000, ...: ten values per axis used)."""
    if size % 10 or size < 10:
        raise SystemExit(f"--sizes: {size} is not a multiple of 10")
    rest = size // 10
    seeds = min(rest, 10)
    if rest % seeds:
        raise SystemExit(f"--sizes: {size} is not 10 x 10 x k or 10 x k (k <= 10)")
    axes = {"data.n": N_VALUES, "seed": list(range(seeds))}
    if rest // seeds > 1:
        axes["optim.lr"] = [round(1e-3 * (1 + i / 10), 6) for i in range(rest // seeds)]
    return axes


def write_sweep(folder: Path, size: int) -> Path:
    path = folder / f"bench{size}.yaml"
    body = {"description": f"bench_sweep: {size} runs", "axes": axes_for(size),
            "overrides": ["data=digits", "model=tiny", "logger=none", "train.steps=100", "eval.num_points=5"]}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def finish_runs(path: Path) -> int:
    """Write every run of the sweep as a finished run leaves it; returns the number of runs."""
    sweep = spec.expand(str(path))
    for run in sweep.runs:
        store, total = run.store, int(run.cfg.train.total_steps)
        store.write_config(run.cfg)
        for k in range(1, METRIC_ROWS + 1):
            step = total * k // METRIC_ROWS
            store.append_metrics({"step": step, "train_loss": 0.5 / k, "test_loss": 0.6 / k, "loss_gap": 0.1 / k,
                                  "nn_dist": 1.0 / k, "mem_ratio": k / METRIC_ROWS, "sw_train": 0.1, "sw_test": 0.2,
                                  "train_loss_by_t": [0.5 / k] * 10, "test_loss_by_t": [0.6 / k] * 10})
        store.set_status(state="finished", step=total, total_steps=total, run_id=store.run_id, finished=time.time(),
                         train_seconds=1.0, eval_seconds=1.0)
    return len(sweep.runs)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str], env: dict, expect: str | None = None) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one command; CPU time is the steadier one on a shared machine."""
    t0, c0 = time.perf_counter(), _cpu()
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    if r.returncode != 0 or (expect and expect not in r.stdout):
        raise SystemExit(f"{' '.join(args)} failed (exit {r.returncode}, expected {expect!r}):\n"
                         f"{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return seconds, cpu


def bench_size(folder: Path, size: int) -> dict:
    root = folder / f"outputs{size}"
    env = {**os.environ, "MEMSWEEP_OUTPUT_ROOT": str(root), "WANDB_MODE": "disabled"}
    os.environ["MEMSWEEP_OUTPUT_ROOT"] = str(root)  # for expand, in this process
    path = write_sweep(folder, size)
    cli = ["-m", "memsweep.cli"]
    wall, cpu = {"runs": size}, {"runs": size}
    wall["dry run"], cpu["dry run"] = timed([*cli, "sweep", str(path), "--dry-run"], env, f"{size} to launch")
    assert finish_runs(path) == size
    wall["relaunch"], cpu["relaunch"] = timed([*cli, "sweep", str(path), "--quiet"], env, "nothing to launch")
    wall["status"], cpu["status"] = timed([*cli, "status", path.stem], env, f"{size} finished")
    return {"wall": wall, "cpu": cpu}


def print_table(results: list[dict], startup: dict, kind: str) -> None:
    rows = [r[kind] for r in results]
    small = rows[0]
    print(f"\n{kind} seconds; startup (import memsweep.cli): {startup[kind]:.2f} s")
    header = f"{'runs':>6} " + " ".join(f"{c + ' s':>11} {'ms/run':>7}" for c in COMMANDS)
    print(header)
    print("-" * len(header))
    for r in rows:
        cells = []
        for c in COMMANDS:
            marginal = (r[c] - small[c]) / (r["runs"] - small["runs"]) * 1e3 if r is not small else float("nan")
            cells.append(f"{r[c]:>11.2f} {marginal:>7.1f}")
        print(f"{r['runs']:>6} " + " ".join(cells))
    if len(rows) > 1:
        big = rows[-1]
        print(f"ratio {big['runs']} / {small['runs']} runs: "
              + ", ".join(f"{c} {big[c] / small[c]:.1f}x" for c in COMMANDS))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10,100,1000", help="comma-separated numbers of runs")
    p.add_argument("--out", default=None, help="also write the results as JSON to this file")
    p.add_argument("--keep", default=None, help="work in this folder and keep it (default: a temp dir, removed)")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        startup = dict(zip(("wall", "cpu"), timed(["-c", "import memsweep.cli"], dict(os.environ))))
        results = []
        for size in sizes:
            results.append(bench_size(folder, size))
            print(f"{size} runs: " + ", ".join(f"{c} {results[-1]['wall'][c]:.2f} s ({results[-1]['cpu'][c]:.2f} s "
                                               "CPU)" for c in COMMANDS), flush=True)
    for kind in ("wall", "cpu"):
        print_table(results, startup, kind)
    if args.out:
        Path(args.out).write_text(json.dumps({"startup": startup, "results": results}, indent=1))


if __name__ == "__main__":
    main()
