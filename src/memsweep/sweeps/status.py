"""What a sweep's runs are doing: the `memsweep status` table and the live progress of a local launch.

Everything is read from the run store (status.json, metrics.jsonl), so it works from any shell, also after
the launching terminal is gone.
"""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from memsweep.store.live import live_state
from memsweep.store.run import RunStore
from memsweep.states import State


def _fmt(x, digits=3) -> str:
    return "-" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def status_rows(record: dict, runs_root) -> list[dict]:
    rows = []
    for entry in record["runs"]:
        store = RunStore(runs_root / entry["run_id"])
        status = store.status()
        metrics = store.read_metrics()
        last = metrics[-1] if metrics else {}
        rows.append({"run_id": entry["run_id"], **entry["axes"], "state": live_state(status),
                     "step": status.get("step", 0), "total": status.get("total_steps"),
                     "loss_gap": last.get("loss_gap"), "mem_ratio": last.get("mem_ratio"),
                     "job": status.get("job_id")})
    return rows


def print_status(record: dict, runs_root, console: Console | None = None) -> list[dict]:
    console = console or Console(width=160)
    rows = status_rows(record, runs_root)
    table = Table(title=f"sweep {record['name']}: {len(rows)} runs")
    axes = list(record.get("axes", []))
    for col in ["run_id", *axes, "state", "step", "loss_gap", "mem_ratio", "job"]:
        table.add_column(col, justify="left" if col in ("run_id", "state") else "right")
    for r in rows:
        step = f"{r['step']}/{r['total']}" if r["total"] else str(r["step"])
        table.add_row(r["run_id"], *[_fmt(r.get(a)) for a in axes], r["state"], step,
                      _fmt(r["loss_gap"], 4), _fmt(r["mem_ratio"], 2), _fmt(r["job"]))
    console.print(table)
    counts = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    console.print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    return rows


class LiveProgress:
    """One bar per run, fed from each run's status.json while local workers train."""

    def __init__(self, runs, enabled: bool = True):
        self.runs, self.enabled = runs, enabled
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[state]}"), TimeElapsedColumn(),
                                 console=Console(stderr=True), disable=not enabled)
        self.tasks = {}

    def __enter__(self):
        self.progress.__enter__()
        for run in self.runs:
            label = " ".join(f"{k}={v}" for k, v in run.axes.items())
            self.tasks[run.run_id] = (run, self.progress.add_task(f"{run.run_id} {label}",
                                                                  total=run.cfg.train.total_steps, state=""))
        return self

    def refresh(self) -> None:
        for run, task in self.tasks.values():
            status = run.store.status()
            self.progress.update(task, completed=status.get("step", 0), state=status.get("state", State.PENDING))

    def __exit__(self, *exc):
        self.refresh()
        return self.progress.__exit__(*exc)
