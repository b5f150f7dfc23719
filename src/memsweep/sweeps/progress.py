"""The live progress of a local launch: one bar per run, read from the run store while local workers train."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from memsweep.states import State
from memsweep.sweeps.status import fmt


class LiveProgress:
    """One bar per run, fed from each run's status.json and its latest evaluation (the last row of its
    metrics.jsonl) while local workers train."""

    def __init__(self, runs, enabled: bool = True):
        self.runs, self.enabled = runs, enabled
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[state]}"), TextColumn("{task.fields[latest]}"),
                                 TimeElapsedColumn(),
                                 console=Console(stderr=True), disable=not enabled)
        self.tasks = {}
        self.steps, self.latest = {}, {}   # per run: the step and latest evaluation last shown

    def __enter__(self):
        self.progress.__enter__()
        for run in self.runs:
            label = " ".join(f"{k}={v}" for k, v in run.axes.items())
            self.tasks[run.run_id] = (run, self.progress.add_task(f"{run.run_id} {label}",
                                                                  total=run.cfg.train.total_steps, state="",
                                                                  latest=""))
        return self

    def refresh(self) -> None:
        if not self.enabled:
            return
        for run, task in self.tasks.values():
            status = run.store.status()
            step = status.get("step", 0)
            if self.steps.get(run.run_id) != step:  # metrics.jsonl is read again only once the run moved on
                self.steps[run.run_id] = step
                last = run.store.last_metrics()
                self.latest[run.run_id] = (f"gap={fmt(last.get('loss_gap'), 4)} mem={fmt(last.get('mem_ratio'), 2)}"
                                           if last else "")
            self.progress.update(task, completed=step, state=status.get("state", State.PENDING),
                                 latest=self.latest[run.run_id])

    def __exit__(self, *exc):
        self.refresh()
        return self.progress.__exit__(*exc)
