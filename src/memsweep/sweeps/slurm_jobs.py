"""The Slurm jobs a sweep's runs make (sweeps.slurm submits them): runs grouped by their resources, packed up to
launcher.pack per job, and the tasks of a run on several processes; without submitit or torch (a dry run prints
them).
"""
from __future__ import annotations

import math

from omegaconf import OmegaConf

from memsweep.errors import ConfigError
from memsweep.train.packing import make_packs

SLURM_KEYS = ("pack", "partition", "account", "qos", "timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb",
              "max_array_size", "array_parallelism", "signal_delay_s", "constraint", "additional_parameters",
              "folder", "name", "processes")  # processes: the run's runtime.processes (its tasks)


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
    run, or up to launcher.pack runs that share a pack (memsweep.train.packing.pack_key) and their resources."""
    groups: dict[str, list] = {}
    for run in runs:
        res = {**OmegaConf.to_container(run.cfg.launcher, resolve=True), **run.resources}
        if run.cfg.runtime.processes > 1:  # one run on K tasks, never packed
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
