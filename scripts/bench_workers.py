"""Time a small local sweep with its workers forked (the default on Linux) and spawned, side by side.

    PYTHONPATH=src python scripts/bench_workers.py [--runs 4] [--steps 20] [--rounds 2] [--out FILE]

Each launch is `memsweep sweep` of `--runs` tiny digits runs (seeds) in a fresh process with its own output
root (nothing trained before), two workers; the spawned variant sets memsweep.sweeps.local._context to spawn
before calling the CLI. Wall seconds and CPU seconds (the launcher and its workers, user + system) are printed,
the fastest of --rounds interleaved rounds kept; the CPU time is the steadier measure on a shared machine. The
difference is what a spawned worker pays to start: a fresh interpreter importing memsweep, torch and the rest.
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

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = ["logger=none", "model=tiny", "eval.num_points=2", "eval.first_step=5", "eval.num_samples=16",
        "eval.loss_points=32", "eval.sw_projections=16", "eval.grid_samples=4"]
CHILD = """
import multiprocessing, sys
from memsweep.sweeps import local
if sys.argv[1] == "spawn":
    local._context = lambda: multiprocessing.get_context("spawn")
from memsweep.cli import main
sys.exit(main(sys.argv[2:]))
"""


def launch(how: str, runs: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_workers_") as root:
        env = {**os.environ, "PYTHONPATH": str(SRC), "WANDB_MODE": "disabled", "MEMSWEEP_OUTPUT_ROOT": root}
        args = ["sweep", f"seed=range({runs})", f"train.steps={steps}", *TINY, "launcher.workers=2", "--quiet",
                "--name", "bench"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", CHILD, how, *args], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode:
            raise RuntimeError(f"{how} sweep failed:\n{p.stderr[-2000:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default=None, help="write the results as JSON to this file")
    args = p.parse_args()
    rounds = []
    for k in range(args.rounds):   # interleaved: the machine is shared and timings drift
        rounds.append({how: launch(how, args.runs, args.steps) for how in ("fork", "spawn")})
        print(f"round {k + 1}: {rounds[-1]}", flush=True)
    best = {how: min((r[how] for r in rounds), key=lambda x: x["wall_s"]) for how in ("fork", "spawn")}
    print(f"\n{args.runs} runs of {args.steps} steps, 2 workers   wall s   CPU s")
    for how in ("fork", "spawn"):
        print(f"  workers {how + 'ed':8s}                      {best[how]['wall_s']:6.1f}  {best[how]['cpu_s']:6.1f}")
    print(f"spawned / forked: {best['spawn']['wall_s'] / best['fork']['wall_s']:.2f}x wall, "
          f"{best['spawn']['cpu_s'] / best['fork']['cpu_s']:.2f}x CPU")
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": args.runs, "steps": args.steps, "rounds": rounds,
                                              "best": best}, indent=1))


if __name__ == "__main__":
    main()
