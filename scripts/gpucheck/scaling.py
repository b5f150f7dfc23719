"""The scaling part: one run on K GPUs (runtime.processes=K, DDP over nccl) against K = 1, the global batch fixed
as memsweep keeps it (train.batch_size is the global batch, each rank trains B/K): steps/s at each K, the
speedup over K = 1 and the scaling efficiency speedup / K. It needs two CUDA devices or more and says so in one
line otherwise; --cpu-smoke runs K = 1, 2 CPU processes with gloo (the code path, not a measure of scaling)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
from omegaconf import OmegaConf

from memsweep.store.identity import run_dir
from memsweep.store.run import RunStore
from memsweep.train import distributed
from memsweep.train.active_run import Run
from memsweep.train.solo import SoloStep

from gpucheck.context import Ctx, error_string, loop_step

STEPS_MIN = 3


def _rank(rank: int, size: int, port: int, cfg_container: dict, seconds: float, warmup: int, out: str) -> None:
    """One rank: the run's training steps (SoloStep under DDP, as memsweep's loop takes them), a fixed number
    of them timed (rank 0 picks it from the warm-up and tells the others: every rank must take as many)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(size))
    cfg = OmegaConf.create(cfg_container)
    if cfg.runtime.device == "cpu":
        torch.set_num_threads(1)
    device = distributed.setup(cfg) if size > 1 else torch.device(cfg.runtime.device)
    try:
        store = RunStore(run_dir(cfg)) if rank == 0 else distributed.Replica(run_dir(cfg))
        run = Run(cfg, store, {}, device, None)
        run.schedule = set()  # no evaluations during the timed steps
        one = loop_step(SoloStep(run))
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        started = time.perf_counter()
        for _ in range(1 + warmup):
            one()
        sync()
        per_step = (time.perf_counter() - started) / (1 + warmup)
        steps = distributed.broadcast(max(STEPS_MIN, int(seconds / max(per_step, 1e-6))))
        distributed.summed(torch.zeros(1, device=device))  # every rank starts the clock together
        sync()
        started = time.perf_counter()
        for _ in range(steps):
            one()
        distributed.summed(torch.zeros(1, device=device))
        sync()
        elapsed = time.perf_counter() - started
        if rank == 0:
            Path(out).write_text(json.dumps({"steps": steps, "seconds": elapsed}))
    finally:
        distributed.teardown()


def processes_here(ctx: Ctx) -> tuple[list[int], str | None]:
    """The K to measure (1, 2, 4, 8 up to the devices here), or why there is nothing to measure."""
    if not ctx.cuda:
        return ([1, 2], None) if ctx.smoke else ([], "no CUDA device here")
    count = torch.cuda.device_count()
    if count < 2:
        return [], f"{count} CUDA device here: the K-GPU step rate needs 2 or more"
    return [k for k in (1, 2, 4, 8, 16) if k <= count], None


def measure(ctx: Ctx, k: int, cfg_container: dict) -> dict:
    """Steps/s of the run on k processes (spawned, as torchrun would start them); an error string if one fails
    or the part's time runs out."""
    out = ctx.root / f"scaling-{k}.json"
    procs = mp.start_processes(_rank, args=(k, distributed.free_port(), cfg_container, ctx.sizes.seconds, ctx.sizes.warmup,
                                            str(out)), nprocs=k, join=False, start_method="spawn")
    deadline = time.perf_counter() + max(30.0, ctx.clock.part_left())
    while not procs.join(timeout=1):
        if time.perf_counter() > deadline:
            for p in procs.processes:
                p.kill()
            return {"error": f"skipped: the part's time ran out at K={k}"}
    got = json.loads(out.read_text())
    return {"steps": got["steps"], "steps_per_s": got["steps"] / got["seconds"]}


def part_scaling(ctx: Ctx, results: dict) -> dict:
    ks, why = processes_here(ctx)
    if why:
        return {"skipped": f"skipped: {why}"}
    batch = ctx.sizes.scaling_batch
    out = {"batch_size": batch, "backend": "nccl" if ctx.cuda else "gloo", "processes": {}}
    for k in ks:
        if ctx.clock.part_left() < ctx.sizes.min_part_s["scaling"]:
            out["processes"][str(k)] = {"error": f"skipped: {ctx.clock.part_left():.0f} s left in this part"}
            continue
        cfg = ctx.compose(*ctx.sizes.timed, "eval.field_points=0", "eval.loss_points=64", "eval.num_samples=16",
                          f"train.batch_size={batch}", f"runtime.processes={k}",
                          f"runtime.device={'cuda' if ctx.cuda else 'cpu'}")
        try:
            out["processes"][str(k)] = measure(ctx, k, OmegaConf.to_container(cfg, resolve=True))
        except Exception as e:  # one K that fails does not lose the others
            out["processes"][str(k)] = {"error": error_string(e)}
    base = out["processes"].get("1", {}).get("steps_per_s")
    for k, row in out["processes"].items():
        if base and "steps_per_s" in row:
            row["images_per_s"] = row["steps_per_s"] * batch
            row["speedup"] = row["steps_per_s"] / base
            row["efficiency"] = row["speedup"] / int(k)
    return out
