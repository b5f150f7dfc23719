"""One run on K processes (runtime.processes=K, issue 31): torch.distributed's DistributedDataParallel, one
process per device (gloo on CPUs, nccl on GPUs).

The result does not depend on K (docs: science.md section 12): every rank draws the global batch exactly as one
process would (the run's own generator, train.batch_size stays the global batch) and trains on its contiguous
slice; DDP averages the slices' gradients, which is the full batch's mean gradient up to the order of sums.
So every rank holds the same weights, optimizer and generator state, and a checkpoint resumes under any K.
Rank 0 alone writes the run directory (Replica: the other ranks' view of it) and evaluates.

Processes are started by `memsweep train runtime.processes=K` itself (`launch`, torchrun's environment:
MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK), or by torchrun (`torchrun --nproc-per-node K -m
memsweep.cli train ...`): the same code path, read from the environment (`world`).
"""
from __future__ import annotations

import datetime
import os
import re
import signal
import socket
import subprocess
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from memsweep.errors import ConfigError, RankLost
from memsweep.eval.shares import rank_and_size
from memsweep.store.run import RunStore

# a rank waits at most this long for the others (rank 0's evaluation included); a rank that dies ends the
# others sooner: gloo and nccl raise when a peer's connection closes, and the launcher ends the rest
TIMEOUT = datetime.timedelta(hours=2)
EXIT_S = 10   # after one rank failed: how long the others get to end on their own before SIGTERM
GRACE_S = 60  # then how long they get to stop on SIGTERM before SIGKILL


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) for one process."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", env.get("RANK", 0)))


def check(cfg, processes: int) -> None:
    """What makes a K-process run impossible, as one line before anything is written."""
    if processes < 1:
        raise ConfigError(f"runtime.processes={processes}: must be an integer >= 1")
    if processes == 1:
        return  # today's path: no process group
    if cfg.train.batch_size % processes:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is not divisible by runtime.processes="
                          f"{processes}: each process trains an equal slice of the global batch")
    name = cfg.runtime.device
    backend = "nccl" if name != "cpu" and torch.cuda.is_available() else "gloo"
    if not dist.is_available() or not (dist.is_nccl_available() if backend == "nccl" else dist.is_gloo_available()):
        raise ConfigError(f"runtime.processes={processes}: this torch build has no torch.distributed {backend} "
                          f"backend (a run on several {'GPUs' if backend == 'nccl' else 'CPU processes'} needs it)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"runtime.device={name}: CUDA is not available on {socket.gethostname()} (nccl needs it; "
                          "runtime.device=cpu trains the processes with gloo)")
    here = min(processes, int(os.environ.get("LOCAL_WORLD_SIZE", processes)))  # this node's ranks (Slurm: nodes)
    if name != "cpu" and torch.cuda.is_available() and here > torch.cuda.device_count():
        raise ConfigError(f"runtime.processes={here}: {socket.gethostname()} has {torch.cuda.device_count()} "
                          "CUDA devices (one process per device)")
    if name.startswith("cuda:") and processes > 1:
        raise ConfigError(f"runtime.device={name}: a run on {processes} processes uses devices 0..{processes - 1}; "
                          "choose them with CUDA_VISIBLE_DEVICES and runtime.device=cuda")


def setup(cfg) -> torch.device:
    """Join the process group of the ranks torchrun's environment names; this rank's device."""
    rank, size, local_rank = world()
    if cfg.runtime.processes not in (1, size):
        raise ConfigError(f"runtime.processes={cfg.runtime.processes} but {size} processes were started "
                          "(WORLD_SIZE)")
    check(cfg, size)
    cuda = cfg.runtime.device != "cpu" and torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=size, timeout=TIMEOUT,
                                **({"device_id": device} if cuda else {}))
    return device


def lost(e: BaseException) -> RankLost | None:
    """The error a collective raised because another rank is gone (its connection closed, a timeout), in one
    line; None for any other error."""
    if isinstance(e, RankLost):
        return e
    text = re.sub(r"^\[[^\]]*\]\s*", "", " ".join(str(e).split())).split(" This is typically")[0]  # gloo's source path
    words = ("gloo", "nccl", "c10d", "connection closed by peer", "connection reset by peer", "timed out")
    if not dist.is_initialized() or not (isinstance(e, dist.DistError) or isinstance(e, RuntimeError) and any(
            w in str(e).lower() for w in words)):
        return None
    return RankLost(f"another of the run's {dist.get_world_size()} processes ended or stopped answering "
                    f"({type(e).__name__}: {text[:200]})")


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The training forward of `model` under DDP when there are several ranks (gradients averaged in
    backward); `model` itself keeps its plain names for checkpoints and evaluation."""
    if rank_and_size()[1] == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shard(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """This rank's contiguous slice of the global batch: rows [r B/K, (r+1) B/K)."""
    rank, size = rank_and_size()
    if size == 1:
        return tensors
    per = tensors[0].shape[0] // size
    return tuple(t[rank * per:(rank + 1) * per] for t in tensors)


def summed(value: torch.Tensor) -> torch.Tensor:
    """`value` summed over the ranks (in place): the divergence check then decides the same on every rank."""
    if rank_and_size()[1] > 1:
        dist.all_reduce(value)
    return value


def broadcast(obj):
    """Rank 0's `obj` on every rank."""
    if rank_and_size()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def agree(guard, device: torch.device) -> list:
    """The held-back signals to act on after this step (guard.run). Signals reach the ranks at different steps:
    every rank takes those it held before the agreement and the one any rank has (the highest number), so all
    stop at the same step and rank 0's checkpoint is that step's. A signal that arrives during the agreement
    waits for the next step's: acting on it now would stop this rank alone."""
    held = len(guard.pending)
    now = guard.pending[:held]
    del guard.pending[:held]
    if rank_and_size()[1] == 1:
        return now
    flag = torch.tensor([max(now, default=0)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    signum = int(flag.item())
    if signum and signum not in now and signum in guard.handlers:
        now.append(signal.Signals(signum))
    return now


class Replica(RunStore):
    """The run directory as ranks other than 0 see it: they read it (the checkpoint to resume from, the status)
    and write nothing, so every file is written once, by rank 0, as one process writes it."""

    def write_config(self, cfg) -> None: ...
    def keep_metrics_until(self, step: int) -> None: ...
    def append_metrics(self, row: dict) -> None: ...
    def save_checkpoint(self, state: dict, step: int, keep_last: int = 2, keep_steps=()) -> None: ...
    def save_samples(self, step, samples, labels) -> None: ...
    def save_eval_weights(self, step, state_dict) -> None: ...

    def set_status(self, **fields) -> dict:
        return {**self.status(), **fields}

    def lock(self, wait_s: float = 0.0):
        return _no_lock()


class _no_lock:
    def __enter__(self): ...
    def __exit__(self, *exc): return False


def free_port() -> int:
    """A TCP port free on this machine now (MASTER_PORT of a run's ranks)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], processes: int, env: dict | None = None) -> list[subprocess.Popen]:
    """Start `command` as `processes` ranks on this machine, in torchrun's environment (plus `env`)."""
    port, procs = free_port(), []
    for rank in range(processes):
        ranks = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                 "WORLD_SIZE": str(processes), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(processes)}
        procs.append(subprocess.Popen(command, env={**os.environ, **(env or {}), **ranks}))
    return procs


def launch(argv: list[str], processes: int) -> int:
    """Run `memsweep <argv>` as `processes` ranks on this machine (torchrun's environment), pass SIGTERM and
    SIGINT on to them, and end the others when one fails (no rank is left waiting for a dead one). The exit
    status: the failed rank's (one killed by a signal first: the others then fail for want of it), else 0."""
    procs = start([sys.executable, "-m", "memsweep.cli", *argv], processes)

    def forward(signum, frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while any(p.poll() is None for p in procs) and not any(p.returncode for p in procs):
            time.sleep(0.2)
        code, message = ended(procs)
        if message:
            print(f"memsweep: {message}", file=sys.stderr)
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def ended(procs) -> tuple[int, str | None]:
    """Once a rank has ended (or all have): end the others if one failed, wait for all; the exit status (the
    shell's, 128 + signal for one killed) and a line naming the rank that failed first, if one did."""
    if any(p.returncode for p in procs):
        _end(procs)
    codes = [p.wait() for p in procs]
    if not any(codes):
        return 0, None
    culprit = min(range(len(procs)), key=lambda r: (codes[r] >= 0, codes[r] == 0, r))  # killed by a signal first
    code = codes[culprit]
    if code in (-signal.SIGTERM, -signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGINT):
        return 128 + abs(code) % 128, None  # stopped by a signal passed on (each rank said where it stopped)
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"ended with exit status {code}"
    return (128 - code if code < 0 else code), f"rank {culprit} of {len(procs)} {how}; the other ranks stopped"


def _end(procs) -> None:
    """After one rank failed: the others a moment to end on their own (gloo fails their collectives at once),
    then SIGTERM (each checkpoints if it can), then SIGKILL after GRACE_S (one stuck in a collective)."""
    deadline = time.monotonic() + EXIT_S
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
