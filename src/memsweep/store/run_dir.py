"""The run store: one directory per run, files other tools and people read.

outputs/runs/<run_id>/
  config.yaml      the resolved config
  status.json      state (see State), step, total_steps, times, job id
  metrics.jsonl    one JSON object per evaluation, append-only, one line per write
  checkpoints/     step_<N>.pt, written atomically; the latest few kept, plus any kept for `memsweep eval`;
                   eval_<N>.pt, the weights each evaluation used
  samples/         step_<N>.png grids of generated samples beside their nearest training images;
                   step_<N>.npz, each evaluation's samples (uint8) and labels
  lock             held (flock) by the process training the run; the OS releases it if that process dies
  analysis/        what `memsweep report` derives from the saved samples, computed once (store.analysis_cache)

This module reads and writes them without torch (status, metrics, config, the lock: what `memsweep status`
reads); store.run.RunStore adds the checkpoints, samples and weights. The names of the per-step files are one
table (FILES); every reader and writer goes through `path` and `steps`. Every file that is rewritten goes through store.files.atomic_write, so a reader or a killed writer
never sees half a file.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from memsweep.shipped_configs import YAML_LOADER, complete
from memsweep.states import State
from memsweep.store.files import append_line, atomic_write_text, failpoint, read_json

log = logging.getLogger("memsweep")

TAIL_BLOCK = 64 * 1024  # bytes read at a time from the end of metrics.jsonl

# per-step files of a run directory: kind -> (subdirectory, prefix, suffix)
FILES = {"checkpoint": ("checkpoints", "step_", ".pt"),
         "eval_weights": ("checkpoints", "eval_", ".pt"),
         "samples": ("samples", "step_", ".npz"),
         "grid": ("samples", "step_", ".png")}


class RunLocked(RuntimeError):
    """Another live process is training this run."""


ELSEWHERE = "trained by another process"  # the state reported for a run left to the process that holds it


class RunDir:
    """A run directory's files that need no tensors."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.run_id = self.dir.name
        self.ckpt_dir = self.dir / "checkpoints"
        self.samples_dir = self.dir / "samples"

    # -- per-step files -------------------------------------------------------------------------------
    def path(self, kind: str, step: int) -> Path:
        """The file of `kind` (a key of FILES) at `step`, e.g. checkpoints/step_000000100.pt."""
        sub, prefix, suffix = FILES[kind]
        return self.dir / sub / f"{prefix}{step:09d}{suffix}"

    def steps(self, kind: str) -> list[int]:
        """The steps that have a file of `kind`, sorted."""
        sub, prefix, suffix = FILES[kind]
        d = self.dir / sub
        return sorted(int(p.name[len(prefix):-len(suffix)]) for p in d.glob(f"{prefix}*{suffix}")) if d.is_dir() else []

    # -- config and status ---------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.dir / "config.yaml"

    def write_config(self, cfg) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_path, OmegaConf.to_yaml(cfg, resolve=True))

    def read_config(self):
        """config.yaml, with the settings added since it was written at their defaults (shipped_configs)."""
        return complete(OmegaConf.load(self.config_path))

    def read_config_data(self) -> dict:
        """config.yaml as plain data, ~20x faster than read_config (a report reads every run's). The file is
        resolved and written by OmegaConf's YAML dumper, so a plain YAML load reads the same values."""
        return yaml.load(self.config_path.read_text(), Loader=YAML_LOADER)

    def status(self) -> dict:
        return read_json(self.dir / "status.json", default={"state": State.PENDING.value})

    def set_status(self, **fields) -> dict:
        status = {**self.status(), **fields, "updated": time.time()}
        self.dir.mkdir(parents=True, exist_ok=True)
        failpoint("status", self.dir / "status.json")
        atomic_write_text(self.dir / "status.json", json.dumps(status, indent=1))
        return status

    # -- metrics --------------------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.jsonl"

    def read_metrics(self) -> list[dict]:
        """All complete rows (a line cut short by a kill is ignored)."""
        rows = []
        if self.metrics_path.exists():
            for line in self.metrics_path.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return rows

    def last_metrics(self) -> dict | None:
        """The last complete row (as read_metrics()[-1]), read backwards from the end of the file: a status
        table needs only this, and a long run's metrics.jsonl can be large."""
        try:
            f = open(self.metrics_path, "rb")
        except FileNotFoundError:
            return None
        with f:
            pos, carry = f.seek(0, os.SEEK_END), b""
            while pos > 0:
                size = min(TAIL_BLOCK, pos)
                pos -= size
                f.seek(pos)
                lines = (f.read(size) + carry).split(b"\n")
                carry = lines.pop(0) if pos > 0 else b""  # may begin before pos: completed by the next block
                for line in reversed(lines):
                    try:
                        return json.loads(line)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        pass  # empty, or cut short by a kill
        return None

    def append_metrics(self, row: dict) -> None:
        """One line per row, never torn: a kill mid-line leaves a partial line that readers skip, a full disk
        leaves none (store.files.append_line)."""
        line = json.dumps(row, allow_nan=True) + "\n"
        torn = os.environ.get("MEMSWEEP_FAILPOINT", "").startswith("metrics")  # a line cut halfway, for the kill tests
        append_line(self.metrics_path, line, point="metrics" if torn else None)

    def keep_metrics_until(self, step: int) -> None:
        """Drop rows after `step` (written after the checkpoint we resume from) and any torn line."""
        rows = [r for r in self.read_metrics() if r["step"] <= step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    # -- checkpoints and evaluation weights (their steps; store.run.RunStore reads and writes them) ---------
    def checkpoint_steps(self) -> list[int]:
        return self.steps("checkpoint")

    def eval_weight_steps(self) -> list[int]:
        return self.steps("eval_weights")

    # -- the training lock ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, wait_s: float = 0.0):
        """Exclusive right to train this run. flock is released by the OS when the holder dies, so a lock
        left by a killed process is taken over without any stale-lock heuristics. `wait_s`: how long to wait
        for a holder to go away (a requeued Slurm job can start while its previous attempt still exits)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        deadline, waited = time.monotonic() + wait_s, False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                    if time.monotonic() >= deadline:
                        raise RunLocked(f"run {self.run_id} is being trained by another process ({holder})") from None
                    if not waited:
                        log.warning("run %s is held by %s; waiting up to %.0f s", self.run_id, holder, wait_s)
                    waited = True
                    time.sleep(2)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()}".encode(), 0)
            yield
        finally:
            os.close(fd)
