"""Slurm launching through submitit: job arrays (one run or one pack per job), submitted and left running."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import submitit
from omegaconf import open_dict

from memsweep.errors import ConfigError
from memsweep.sweeps.jobs import TrainJob, payload
from memsweep.sweeps.slurm_jobs import slurm_jobs, task_layout
from memsweep.states import State


def check_slurm() -> None:
    """Fail before any submission if no Slurm controller answers."""
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        raise ConfigError("launcher=slurm: no Slurm here (sbatch/sinfo not found); start one with slurm/up.sh "
                          "or use launcher=local")
    try:
        subprocess.run(["sinfo", "-h"], check=True, capture_output=True, timeout=20)
    except (subprocess.SubprocessError, OSError):
        raise ConfigError("launcher=slurm: the Slurm controller does not answer (sinfo failed)") from None


def _executor(folder: Path, res: dict) -> submitit.AutoExecutor:
    ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    params = {"timeout_min": int(res.get("timeout_min", 60)), "cpus_per_task": int(res.get("cpus_per_task", 1)),
              "slurm_array_parallelism": int(res.get("array_parallelism", 256)),
              "slurm_signal_delay_s": int(res.get("signal_delay_s", 120)),
              "slurm_additional_parameters": dict(res.get("additional_parameters") or {})}
    if res.get("mem_gb"):
        params["mem_gb"] = float(res["mem_gb"])
    if res.get("gpus_per_node"):
        params["gpus_per_node"] = int(res["gpus_per_node"])
    params.update(task_layout(int(res.get("processes") or 1), int(res.get("gpus_per_node") or 0)))
    for key in ("partition", "account", "qos", "constraint"):
        if res.get(key):
            params[f"slurm_{key}"] = res[key]
    ex.update_parameters(name="memsweep", **params)
    return ex


def submit_slurm(runs, sweep_dir: Path) -> list[tuple[str, str]]:
    """Submit runs as job arrays (grouped by resources, split under max_array_size; a pack of runs is one job).
    Returns (run_id, job_id) of every run, at once."""
    check_slurm()
    submitted = []
    for res, packs in slurm_jobs(runs):
        for run in (r for p in packs for r in p):
            with open_dict(run.cfg):
                run.cfg.runtime.progress = False
                run.cfg.runtime.threads = int(res.get("cpus_per_task", 1))
        ex = _executor(Path(res.get("folder") or sweep_dir / "slurm") / "%j", res)
        size = max(1, int(res.get("max_array_size", 1000)))
        for start in range(0, len(packs), size):
            chunk = packs[start:start + size]
            with ex.batch():
                jobs = [ex.submit(TrainJob(payload(p))) for p in chunk]
            for members, job in zip(chunk, jobs):
                for run in members:
                    run.store.set_status(state=State.QUEUED, job_id=job.job_id)
                    submitted.append((run.run_id, job.job_id))
    return submitted
