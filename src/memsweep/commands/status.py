"""`memsweep status NAME`: a sweep's table of runs (NAME a sweep's name), or one run (NAME a run id, a unique
prefix of one, or a run directory): its state, step, times, the last evaluation's main values and its files.
Everything is read from the run store; nothing here imports torch (a researcher runs it every few minutes)."""
from __future__ import annotations

import datetime
import re
from pathlib import Path

from memsweep.shipped_configs import given_output_root
from memsweep.errors import ConfigError
from memsweep.store.live import live_state
from memsweep.store.run_dir import RunDir
from memsweep.sweeps.status import load_record, print_status

# the last evaluation's values shown for a run, in this order (those its metrics row holds): the losses and their
# gap, the 1/3-rule memorization ratio and its interval, the sliced Wasserstein and Frechet distances
SHOWN = (("train_loss", "{:.4g}"), ("test_loss", "{:.4g}"), ("loss_gap", "{:.4g}"), ("mem_ratio", "{:.2f}"),
         ("sw_train", "{:.4g}"), ("sw_test", "{:.4g}"), ("fid_train", "{:.4g}"), ("fid_test", "{:.4g}"))
PREFIX = re.compile(r"[0-9a-f]{4,}")   # a run id's prefix (ids are 12 hex digits): at least 4 of them


def run(args) -> int:
    root = given_output_root(args.output_root)
    run_dir = None if (root / "sweeps" / args.name / "sweep.json").is_file() else find_run(root, args.name)
    if run_dir is None:  # a sweep's name (or neither: the sweep's message says so)
        print_status(load_record(root, args.name), root / "runs", show_all=args.all, table_path=args.table)
    else:
        print("\n".join(describe_run(RunDir(run_dir))))
    return 0


def find_run(root: Path, name: str) -> Path | None:
    """The run directory `name` stands for: a directory holding a run, a run id under root/runs, or a unique
    prefix of one; None if none."""
    path = Path(name).expanduser()
    if (path / "status.json").is_file() or (path / "config.yaml").is_file():
        return path.resolve()
    runs = root / "runs"
    if (runs / name / "status.json").is_file() or (runs / name / "config.yaml").is_file():
        return runs / name
    if not PREFIX.fullmatch(name) or not runs.is_dir():
        return None
    matches = sorted(p for p in runs.iterdir() if p.name.startswith(name) and p.is_dir())
    if len(matches) > 1:
        raise ConfigError(f"run {name}: {len(matches)} runs under {runs} start with it "
                          f"({', '.join(p.name for p in matches[:4])}{', ...' if len(matches) > 4 else ''})")
    return matches[0] if matches else None


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _when(seconds) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S") if seconds else "-"


def _steps(steps: list[int]) -> str:
    """'step 5', 'steps 5, 9', 'steps 5 .. 90'."""
    if len(steps) <= 2:
        return f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}, {steps[1]}" if steps else ""
    return f"steps {steps[0]} .. {steps[-1]}"


def describe_run(store: RunDir) -> list[str]:
    """The lines `memsweep status RUN` prints."""
    status, rows = store.status(), store.read_metrics()
    state, step, total = live_state(status), status.get("step", 0), status.get("total_steps")
    done = f" ({100 * step / total:.0f}%)" if total else ""
    lines = [f"run {store.run_id}: {state}, step {step}/{total if total else '?'}{done}"]
    times = [f"started {_when(status.get('started'))}"]
    if status.get("finished"):
        times.append(f"finished {_when(status['finished'])}")
    elif status.get("updated"):
        times.append(f"last update {_when(status['updated'])}")
    spent = [f"{what} {status[key]:.1f} s" for what, key in (("training", "train_seconds"),
                                                              ("evaluation", "eval_seconds")) if status.get(key)]
    where = ", ".join(f"{k} {status[k]}" for k in ("host", "pid", "job_id") if status.get(k))
    lines.append("  " + ", ".join(times) + (f" ({', '.join(spent)})" if spent else "") + (f"; {where}" if where else ""))
    for key in ("error", "stopped_by"):
        if status.get(key):
            lines.append(f"  {key.replace('_', ' ')}: {status[key]}")
    if rows:
        last = rows[-1]
        values = []
        for key, fmt in SHOWN:
            if _number(last.get(key)):
                interval = (f" [{last[key + '_lo']:.2f}, {last[key + '_hi']:.2f}]"
                            if _number(last.get(key + "_lo")) and _number(last.get(key + "_hi")) else "")
                values.append(f"{key} {fmt.format(last[key])}{interval}")
        lines.append(f"  last evaluation (step {last.get('step')}): {', '.join(values) or 'no main values'}")
    else:
        lines.append("  no evaluation yet")
    lines.append(f"files in {store.dir}:")
    if store.config_path.is_file():
        lines.append("  config.yaml")
    lines.append(f"  metrics.jsonl   {len(rows)} rows" + (f" ({_steps([r.get('step') for r in rows])})" if rows else ""))
    checkpoints, weights = store.checkpoint_steps(), store.eval_weight_steps()
    lines.append(f"  checkpoints/    {len(checkpoints)} checkpoints" + (f" ({_steps(checkpoints)})" if checkpoints else "")
                 + f", {len(weights)} evaluation weights")
    samples, grids = store.steps("samples"), store.steps("grid")
    lines.append(f"  samples/        {len(samples)} sample sets (.npz), {len(grids)} grids (.png)")
    return lines
