"""Time the commands that only read (issue 29) beside the bare imports of the libraries they need.

    PYTHONPATH=src python scripts/bench_cli.py [--repeats 5] [--src DIR]

Each command runs `--repeats` times in a fresh interpreter (memsweep.cli.main, as `memsweep` runs), interleaved with the
baseline `python -c "import hydra, omegaconf, pydantic, rich"`; the median wall time of each is printed with its
ratio to the baseline's median (the issue asks for at most 1.5x), and which of torch, matplotlib, pandas and wandb
the command loaded. The store read is a tiny sweep of two digits runs trained first in a temporary output root;
each command runs once untimed first (a dry run then keeps its FLOP counts, and every command Hydra's
compositions, in a temporary user cache folder; memsweep's modules are byte-compiled then, as an installed package's
are: PYTHONDONTWRITEBYTECODE is dropped for the commands, or they would time compiling memsweep's sources while the
libraries of the baseline load their .pyc).
`--src DIR`: time another checkout's src/ (e.g. an older commit's) with the same commands; commands it does not
know fail and are shown as such. On a shared machine run it under `nice` and compare numbers of one run only.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("torch", "matplotlib", "pandas", "wandb")
BASELINE = "import hydra, omegaconf, pydantic, rich"
TINY = ["logger=none", "runtime.progress=false", "runtime.threads=1", "train.steps=20", "eval.num_points=2",
        "eval.first_step=5", "eval.num_samples=16", "eval.loss_points=32", "eval.sw_projections=16",
        "eval.grid_samples=4"]
SWEEP = ["data.n=8,16", *TINY, "--name", "bench"]
# runs memsweep's CLI, then prints which heavy modules it loaded (on stderr, after the command's own output)
CHILD = f"""
import sys
from memsweep.cli import main
try:
    code = main(sys.argv[1:])
finally:
    print("loaded:", ",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


def commands(run_id: str) -> dict[str, list[str]]:
    return {"memsweep --help": ["--help"],
            "memsweep train --help": ["train", "--help"],
            "memsweep status bench": ["status", "bench"],
            "memsweep status RUN": ["status", run_id],
            "memsweep train --cfg job": ["train", "--cfg", "job"],
            "memsweep sweep demo --cfg job": ["sweep", "demo", "--cfg", "job"],
            "memsweep sweep demo --dry-run": ["sweep", "demo", "--dry-run"],
            "memsweep sweep (bench) --dry-run": ["sweep", *SWEEP, "--dry-run"]}


def timed(argv: list[str], env: dict) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    loaded = next((line[len("loaded: "):] for line in done.stderr.splitlines()[::-1] if line.startswith("loaded: ")),
                  "?")
    return wall, done.returncode, loaded


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--src", default=str(SRC), help="the src/ folder whose memsweep is timed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_cli_") as root:
        env = {**os.environ, "PYTHONPATH": args.src, "WANDB_MODE": "disabled", "MEMSWEEP_OUTPUT_ROOT": root,
               "XDG_CACHE_HOME": str(Path(root) / "user-cache")}   # what the commands keep (store.user_cache)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        # the store the commands read: two tiny runs, trained before any timing
        subprocess.run([sys.executable, "-m", "memsweep.cli", "sweep", *SWEEP, "--quiet"], env=env, check=True,
                       capture_output=True)
        record = json.loads((Path(root) / "sweeps" / "bench" / "sweep.json").read_text())
        run_id = record["runs"][0]["run_id"]
        cmds = commands(run_id)
        for argv in cmds.values():  # once untimed: FLOP counts and compositions kept, memsweep byte-compiled
            subprocess.run([sys.executable, "-c", CHILD, *argv], env=env, capture_output=True)
        # 'none kept': the same commands with a copy of the user cache folder whose compositions are removed before
        # each run (its FLOP counts kept), as for the first command after a config file is edited
        env_cold = {**env, "XDG_CACHE_HOME": str(Path(root) / "cold-cache")}
        shutil.copytree(Path(root) / "user-cache", env_cold["XDG_CACHE_HOME"])
        kept = Path(env_cold["XDG_CACHE_HOME"]) / "memsweep" / "compositions"
        times: dict[str, list[float]] = {name: [] for name in ["baseline", *cmds]}
        cold: dict[str, list[float]] = {name: [] for name in cmds}
        status: dict[str, tuple[int, str]] = {}
        for _ in range(args.repeats):  # interleaved: a change in the machine's load touches every command alike
            times["baseline"].append(timed([sys.executable, "-c", BASELINE], env)[0])
            for name, argv in cmds.items():
                wall, code, loaded = timed([sys.executable, "-c", CHILD, *argv], env)
                times[name].append(wall)
                status[name] = (code, loaded)
                shutil.rmtree(kept, ignore_errors=True)
                cold[name].append(timed([sys.executable, "-c", CHILD, *argv], env_cold)[0])
    base = statistics.median(times["baseline"])
    print(f"src: {args.src}; median of {args.repeats} runs each, interleaved; 'none kept': Hydra's compositions "
          "and parsed overrides not kept from an earlier command (store.compositions)")
    print(f"{'command':36s} {'median s':>9s} {'ratio':>6s}  {'none kept':>9s} {'ratio':>6s}  exit  heavy modules loaded")
    print(f"{'python -c (bare imports)':36s} {base:9.3f} {1.0:6.2f}")
    for name in cmds:
        t, c = statistics.median(times[name]), statistics.median(cold[name])
        code, loaded = status[name]
        print(f"{name:36s} {t:9.3f} {t / base:6.2f}  {c:9.3f} {c / base:6.2f}  {code:4d}  {loaded or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
