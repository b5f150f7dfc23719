"""`memsweep sweep ... --dry-run`: the sweep's runs composed and checked, the table of what would be launched,
the jobs, and the cost (FLOPs, and GPU-hours with --gpu); nothing launched or written but the kept FLOP counts.
Also the planning every launch starts with (commands.sweep): no torch here, so a dry run whose FLOP counts are
kept (sweeps.cost.Counts) answers at once."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

from rich.console import Console

from memsweep import config, lazy
from memsweep.data.sources import is_read
from memsweep.errors import ConfigError
from memsweep.sweeps import cost, gpus, spec
from memsweep.sweeps.slurm_jobs import slurm_jobs, task_layout
from memsweep.sweeps.status import print_table, sizes, write_table
from memsweep.train.packing import make_packs


def groups():
    """sweeps.groups (it counts this machine's GPUs with torch), loaded only for runs on several processes."""
    return lazy.load("memsweep.sweeps.groups")


@dataclass
class Plan:
    """A sweep composed and checked, and what plan() decided for each of its runs."""
    sweep: spec.Sweep
    launcher: str
    todo: list
    counts: dict
    unread_files: str | None
    console: Console


def prepare(args) -> Plan:
    """Every run composed and validated (data not on this machine is checked where it is read), the options
    checked, and the plan; refused before anything is written."""
    config.use_config_dirs(args.config_dir)
    file, overrides = spec.file_and_overrides(args.sweep, args.overrides)
    sweep = spec.expand(file, overrides, args.sweep_name, data_here=False)
    launcher = sweep.runs[0].cfg.launcher.name
    if launcher not in ("local", "slurm"):
        raise ConfigError(f"launcher={launcher}: unknown launcher (choose from: local, slurm)")
    if args.gpu is not None:
        gpus.rates(args.gpu)  # an unknown GPU is refused before anything else
    if args.utilization is None:
        args.utilization = cost.UTILIZATION
    if not 0 < args.utilization <= 1:
        raise ConfigError(f"--utilization {args.utilization}: must be in (0, 1]")
    multi = max(r.cfg.runtime.processes for r in sweep.runs)
    if multi > 1 and not args.dry_run and launcher == "local":  # more than the devices here: refused before any write
        groups().check_devices(sweep.runs, sweep.runs[0].cfg.launcher.workers)
    unread_files = next((m for m in sweep.unread if any(not is_read(r.cfg.data) for r in sweep.runs)), None)
    if unread_files and not args.dry_run:  # the run ids hold the files' fingerprint
        raise ConfigError(f"{unread_files}; launching needs the files on this machine (the run ids hold their "
                          "fingerprint); --dry-run plans without them")
    if not args.dry_run:
        config.check_writable(sweep.runs[0].cfg)
    todo, counts = spec.plan(sweep, retry=args.retry)
    return Plan(sweep, launcher, todo, counts, unread_files, Console(width=160))


def print_warnings(plan: Plan) -> None:
    for message, runs in plan.sweep.unread.items():
        where = ("the Slurm jobs read it where they run" if plan.launcher == "slurm"
                 else "checked where the runs read it")
        ids = "; the run ids hold the files' fingerprint, so those shown are provisional" if plan.unread_files else ""
        plan.console.print(f"warning: {message} [{runs} runs]; planned without it, {where}{ids}", markup=False)


def run(args) -> int:
    plan = prepare(args)
    print_warnings(plan)
    costs = [cost.run_cost(r.cfg) for r in plan.todo]
    print_plan(plan, args, costs)
    _print_would_launch(plan)
    _print_cost(plan.console, costs, args.gpu, args.utilization, plan.todo)
    return 0


def print_plan(plan: Plan, args, costs=None) -> None:
    """The table of runs with what plan() decided for each (every row with --all, as CSV with --table), and
    the count of each decision; `costs` (of the runs in `todo`): their FLOPs, and GPU-hours with --gpu."""
    sweep, todo, console = plan.sweep, plan.todo, plan.console
    columns = ["run_id", *sweep.axes, "steps", "state", "action"]
    rows = [[r.run_id, *[str(r.axes.get(a)) for a in sweep.axes], str(r.cfg.train.total_steps), r.state, r.action]
            for r in sweep.runs]
    if costs is not None:
        of = {id(r): c for r, c in zip(todo, costs)}
        multi = any(c is not None and c.processes > 1 for c in costs)  # runs on K GPUs: GPUs and wall time shown
        columns += ["train FLOPs", "eval FLOPs"] + ([f"{args.gpu} GPU-h"] if args.gpu else [])
        columns += ["GPUs", "wall h"] if multi and args.gpu else []
        for r, row in zip(sweep.runs, rows):
            c = of.get(id(r))
            row += ["-", "-"] if c is None else [f"{c.train:.3g}", f"{c.eval:.3g}"]
            if args.gpu:
                row.append("-" if c is None else f"{c.gpu_hours(args.gpu, args.utilization):.3g}")
            if args.gpu and multi:
                row += ["-", "-"] if c is None else [str(c.processes), f"{c.wall_hours(args.gpu, args.utilization):.3g}"]
    print_table(console, f"sweep {sweep.name}: {len(sweep.runs)} runs, launcher={plan.launcher}", columns, rows,
                args.all)
    console.print(", ".join(f"{v} {k}" for k, v in plan.counts.items() if v) + f"; {len(todo)} to launch")
    if args.table:
        console.print(f"table of {len(rows)} runs: {write_table(args.table, columns, rows)}")


def _job_sizes(packs) -> str:
    """' of 4, 4, 3 runs' for a few jobs, ': 96 x 4 runs' for many."""
    return " of " + ", ".join(str(len(p)) for p in packs) + " runs" if len(packs) <= 8 else ": " + sizes(packs)


def _print_would_launch(plan: Plan) -> None:
    console, todo = plan.console, plan.todo
    if plan.launcher == "slurm":
        for res, packs in slurm_jobs(todo):
            k = int(res.get("processes") or 1)   # a run on K processes: one job of K tasks
            shape = task_layout(k, int(res.get("gpus_per_node") or 0))
            each = (f", each {k} tasks: {shape['tasks_per_node']} per node on {shape['nodes']} node(s) of "
                    f"{res.get('gpus_per_node') or 0} GPUs") if k > 1 else ""
            console.print(f"would submit {len(packs)} Slurm jobs{_job_sizes(packs)} "
                          f"(launcher.pack={res.get('pack', 1)}) as arrays of at most "
                          f"{res.get('max_array_size', 1000)} (partition={res.get('partition')}, "
                          f"timeout_min={res.get('timeout_min')}{each})")
    elif todo and max(r.cfg.runtime.processes for r in todo) > 1:
        console.print(groups().describe_devices(todo, plan.sweep.runs[0].cfg.launcher.workers))
    elif todo:
        lcfg = plan.sweep.runs[0].cfg.launcher
        packs = make_packs([r.cfg for r in todo], lcfg.pack, lcfg.workers or os.cpu_count() or 1)
        console.print(f"would train them in {len(packs)} worker jobs{_job_sizes(packs)} (launcher.pack={lcfg.pack})")


def _print_cost(console, costs, gpu: str | None, utilization: float, todo) -> None:
    """The FLOPs of the runs to launch (`todo`), training and evaluation by part, and their GPU-hours on `gpu`."""
    known = [c for c in costs if c is not None]
    unknown = Counter(cost.why_unknown(r.cfg) for r, c in zip(todo, costs) if c is None)
    for why, count in unknown.items():
        console.print(f"cost: unknown for {count} runs ({why})", markup=False)
    if not known:
        return
    train, parts = cost.total(known)
    evaluation = sum(parts.values())
    by_part = ", ".join(f"{k} {v:.3g}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v)
    console.print(f"cost of {len(known)} runs ({sum(c.evaluations for c in known)} evaluations): training "
                  f"{sum(train.values()):.3g} FLOPs, evaluation {evaluation:.3g} FLOPs ({by_part}); "
                  "FLOPs of matrix products and convolutions (docs/guides/sweeps.md: what a sweep costs)", markup=False)
    for note in dict.fromkeys(n for c in known for n in c.notes):
        console.print(f"cost: {note}", markup=False)
    if gpu is None:
        console.print(f"GPU-hours: add --gpu ({', '.join(gpus.GPUS)})")
        return
    train_h = sum(cost.hours(v, 0.0, dtype, gpu, utilization) for dtype, v in train.items())
    eval_h = cost.hours(0.0, evaluation, "float32", gpu, utilization)
    # a run on K GPUs computes its metrics on rank 0 while the other K - 1 wait: they count too (Cost.gpu_hours)
    eval_h += sum((c.processes - 1) * cost.hours(0.0, c.eval_alone, "float32", gpu, utilization) for c in known)
    console.print(f"estimate: {train_h + eval_h:.4g} GPU-hours on {gpu} (training {train_h:.4g}, evaluation "
                  f"{eval_h:.4g}); {cost.describe_gpu(gpu, utilization)}", markup=False)
