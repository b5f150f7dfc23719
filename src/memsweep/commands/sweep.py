"""`memsweep sweep`: launch a sweep's runs that are not finished, locally (worker processes, progress bars) or on
Slurm (job arrays, left running), after the plan every launch starts with (commands.plan)."""
from __future__ import annotations

from collections import Counter

from memsweep.commands import plan
from memsweep.states import DONE
from memsweep.store import identity
from memsweep.store.run_dir import ELSEWHERE
from memsweep.sweeps import spec
from memsweep.sweeps.local import run_local
from memsweep.sweeps.slurm import check_slurm, submit_slurm
from memsweep.sweeps.status import load_record, print_status
from memsweep.train.loop import prepare_data
from memsweep.train.signals import STOP_SIGNALS, interruptible


def run(args) -> int:
    planned = plan.prepare(args)
    sweep, launcher, todo, console = planned.sweep, planned.launcher, planned.todo, planned.console
    # data=folder / npz: decoded once, bad files refused before launching; CIFAR-10 locally
    prepare_data([r.cfg for r in todo], here=launcher == "local")
    plan.print_warnings(planned)
    plan.print_plan(planned, args)
    if launcher == "slurm":
        check_slurm()
    root = identity.output_root(sweep.runs[0].cfg)
    sweep_dir = sweep.dir(root)
    spec.record(sweep, root)
    if not todo:
        console.print("nothing to launch")
        return 0
    if launcher == "slurm":
        submitted = submit_slurm(todo, sweep_dir)
        job_ids = list(dict.fromkeys(j for _, j in submitted))
        shown = " ".join(job_ids) if len(job_ids) <= 20 else f"{' '.join(job_ids[:3])} ... {job_ids[-1]}"
        console.print(f"submitted {len(job_ids)} jobs ({len(submitted)} runs): {shown}")
        console.print(f"follow them with: memsweep status {sweep.name}")
        return 0
    lcfg = sweep.runs[0].cfg.launcher
    with interruptible(STOP_SIGNALS):  # the launcher passes SIGTERM on to its workers, which checkpoint
        results = run_local(todo, workers=lcfg.workers, show_progress=not args.quiet, pack=lcfg.get("pack", 1))
    print_status(load_record(root, sweep.name), root / "runs", console, show_all=args.all)
    tally = Counter(str(state) for state in results.values())  # the reason of each failure is logged above
    console.print(f"sweep {sweep.name}: " + ", ".join(f"{n} {state}" for state, n in tally.items()))
    return 0 if all(v in (*DONE, ELSEWHERE) for v in results.values()) else 1
