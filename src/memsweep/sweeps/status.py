"""What a sweep's runs are doing: the `memsweep status` table (the live progress of a local launch:
sweeps.progress).

Everything is read from the run store (status.json, metrics.jsonl), so it works from any shell, also after
the launching terminal is gone.
"""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from memsweep.errors import ConfigError
from memsweep.store.files import read_json
from memsweep.store.live import live_state
from memsweep.store.run_dir import RunDir


def fmt(x, digits=3) -> str:
    return "-" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def _axis_value(x) -> str:
    """A swept value as written (2.5e-4 stays 0.00025, not 0.000)."""
    return "-" if x is None else (f"{x:g}" if isinstance(x, float) else str(x))


MAX_ROWS = 20  # a longer table shows its first and last EDGE_ROWS rows (--all: every row)
EDGE_ROWS = 8


def print_table(console: Console, title: str, columns: list[str], rows: list[list[str]], show_all: bool = False,
                right: tuple = ()) -> None:
    """A table that reads at any size: past MAX_ROWS rows, the first and last few with a line saying how many
    are left out (show_all: every row). `right`: the columns aligned right."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left")
    shown = rows if show_all or len(rows) <= MAX_ROWS else rows[:EDGE_ROWS] + [None] + rows[-EDGE_ROWS:]
    for row in shown:
        if row is None:
            table.add_row(f"... {len(rows) - 2 * EDGE_ROWS} more rows ...", *[""] * (len(columns) - 1))
        else:
            table.add_row(*row)
    console.print(table)


def write_table(path, columns: list[str], rows: list[list]) -> Path:
    """Every row of a table as CSV (--table FILE)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def sizes(groups) -> str:
    """How many groups (packs, jobs) of each size: '96 x 4 runs' or '2 x 4, 1 x 3 runs'."""
    counts = Counter(len(g) for g in groups)
    return ", ".join(f"{counts[k]} x {k}" for k in sorted(counts, reverse=True)) + " runs"


def load_record(output_root: Path, name: str) -> dict:
    """outputs/sweeps/<name>/sweep.json, as spec.record wrote it."""
    path = Path(output_root) / "sweeps" / name / "sweep.json"
    body = read_json(path)
    if body is None:
        raise ConfigError(f"sweep {name}: not launched yet under {Path(output_root)} (no {path.name})")
    return body


def status_rows(record: dict, runs_root) -> list[dict]:
    """One row per run, from its status.json and the last row of its metrics.jsonl (nothing else is read)."""
    rows = []
    for entry in record["runs"]:
        store = RunDir(runs_root / entry["run_id"])
        status = store.status()
        last = store.last_metrics() or {}
        rows.append({"run_id": entry["run_id"], **entry["axes"], "state": live_state(status),
                     "step": status.get("step", 0), "total": status.get("total_steps"),
                     "loss_gap": last.get("loss_gap"), "mem_ratio": last.get("mem_ratio"),
                     "job": status.get("job_id")})
    return rows


def print_status(record: dict, runs_root, console: Console | None = None, show_all: bool = False,
                 table_path=None) -> list[dict]:
    console = console or Console(width=160)
    rows = status_rows(record, runs_root)
    axes = list(record.get("axes", []))
    columns = ["run_id", *axes, "state", "step", "loss_gap", "mem_ratio", "job"]
    cells = [[r["run_id"], *[_axis_value(r.get(a)) for a in axes], r["state"],
              f"{r['step']}/{r['total']}" if r["total"] else str(r["step"]),
              fmt(r["loss_gap"], 4), fmt(r["mem_ratio"], 2), fmt(r["job"])] for r in rows]
    print_table(console, f"sweep {record['name']}: {len(rows)} runs", columns, cells, show_all,
                right=tuple(columns[1:len(axes) + 1]) + ("step", "loss_gap", "mem_ratio", "job"))
    counts = Counter(r["state"] for r in rows)
    console.print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    jobs = {}
    for r in rows:
        if r["job"]:
            jobs.setdefault(str(r["job"]), []).append(r)
    if jobs and len(rows) > MAX_ROWS:  # a small sweep's table shows its jobs
        console.print(f"{len(jobs)} Slurm jobs: {sizes(jobs.values())}")
    if table_path:
        raw = [[r["run_id"], *[r.get(a) for a in axes], r["state"], r["step"], r["total"], r["loss_gap"],
                r["mem_ratio"], r["job"]] for r in rows]
        path = write_table(table_path, ["run_id", *axes, "state", "step", "total", "loss_gap", "mem_ratio", "job"], raw)
        console.print(f"table of {len(rows)} runs: {path}")
    return rows
