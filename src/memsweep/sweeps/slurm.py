"""Slurm launching through submitit: job arrays (one run or one pack per job), submitted and left running."""
from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import submitit
from omegaconf import open_dict

from memsweep.errors import ConfigError
from memsweep.sweeps.jobs import TrainJob, container, payload
from memsweep.train.packed import make_packs
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


SLURM_KEYS = ("pack", "partition", "account", "qos", "timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb",
              "max_array_size", "array_parallelism", "signal_delay_s", "constraint", "additional_parameters",
              "folder", "name", "processes")  # processes: the run's runtime.processes (its tasks)


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


def task_layout(processes: int, gpus_per_node: int) -> dict:
    """submitit's tasks_per_node and nodes for a run on K processes (issue 31): one task per GPU, on as many
    nodes as K needs; on CPUs, K tasks on one node."""
    if processes == 1:
        return {}
    per_node = min(processes, gpus_per_node) if gpus_per_node else processes
    if processes % per_node:
        raise ConfigError(f"runtime.processes={processes} does not fill nodes of launcher.gpus_per_node="
                          f"{gpus_per_node} GPUs")
    return {"tasks_per_node": per_node, "nodes": math.ceil(processes / per_node)}


def slurm_jobs(runs) -> list[tuple[dict, list[list]]]:
    """The Slurm jobs that train `runs`, by resources: [(resources, [the runs of each job])]. A job trains one
    run, or up to launcher.pack runs that share a pack (memsweep.train.packed.pack_key) and their resources."""
    groups: dict[str, list] = {}
    for run in runs:
        res = {**container(run.cfg.launcher), **run.resources}
        if run.cfg.runtime.get("processes", 1) > 1:  # one run on K tasks, never packed
            res.update(processes=int(run.cfg.runtime.processes), pack=1)
        unknown = set(res) - set(SLURM_KEYS)
        if unknown:
            raise ConfigError(f"launcher.{sorted(unknown)[0]}: unknown Slurm setting (known: {', '.join(SLURM_KEYS)})")
        groups.setdefault(repr(sorted(res.items(), key=str)), []).append((run, res))
    out = []
    for items in groups.values():
        res, by_cfg = items[0][1], {id(run.cfg): run for run, _ in items}
        packs = make_packs([run.cfg for run, _ in items], max(1, int(res.get("pack") or 1)), workers=1)
        out.append((res, [[by_cfg[id(c)] for c in pack] for pack in packs]))
    return out


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
