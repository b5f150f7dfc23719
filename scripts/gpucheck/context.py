"""What every part shares: the sizes, the time budget, the device and its clock, stepping a run as memsweep's
loop does."""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from memsweep.config import compose_run
from memsweep.store.identity import run_dir
from memsweep.store.run import RunStore
from memsweep.train.active_run import Run

PARTS = ("scaling", "correctness", "speed", "evaluation", "pack", "sweeps")  # scaling first: skipped at once on one GPU
PAPER_SWEEPS = ("dataset_size", "model_size", "batch_size", "learning_rate")
BF16_TOL = 5e-2
OPTION_TOL = {"cpu": 1e-3, "cuda": 1e-2}  # see the docstring: TF32 convolutions on CUDA
PLAIN = {"train.dtype": "float32", "runtime.channels_last": "false", "runtime.fused_adam": "false",
         "runtime.compile": "false"}
NEVER = 10 ** 9  # steps and checkpoint cadence of the benchmark runs: they never finish nor checkpoint
RUN_FIXED = ["logger=none", "runtime.progress=false", f"train.steps={NEVER}", "train.images=null",
             "train.epochs=null", f"runtime.checkpoint_every={NEVER}", "eval.sw_features=none",
             "eval.fid_features=none", "eval.fd_train_test=false"]
CHEAP_EVAL = ["eval.field_points=0", "eval.loss_points=64", "eval.num_samples=16"]  # Evaluators no one calls


@dataclass(frozen=True)
class Sizes:
    """What each part runs: the paper's sizes on a GPU, tiny ones for --cpu-smoke."""
    timed: tuple            # overrides: the timed model and its data (on top of the data folder's)
    batches: tuple          # speed part
    compile_batches: tuple  # where the speed part measures compile (each is a compile)
    correct_batch: int
    correct_steps: int
    seconds: float          # timed stretch of each speed measurement
    warmup: int             # steps after the first (which compiles, if it does) before timing
    pack_ks: tuple
    eval_extra: tuple       # overrides of the paper's evaluation protocol (none on a GPU)
    nn_refs: int
    novelty_test: int
    compile_backend: str
    compile_est_s: float    # what a compile is expected to take, for the budget guard
    min_part_s: dict        # a part is skipped when less than this is left for it
    scaling_batch: int      # the global batch of the scaling part (divisible by every K)


GPU_SIZES = Sizes(
    timed=("+experiment=paper_cifar10",), batches=(16, 128, 512), compile_batches=(128, 512), correct_batch=128,
    correct_steps=25, seconds=2.0, warmup=2, pack_ks=(1, 4, 16, 64), eval_extra=(), nn_refs=50_000,
    novelty_test=10_000, compile_backend="true",
    compile_est_s=60.0, min_part_s={"correctness": 30, "speed": 30, "evaluation": 40, "pack": 10, "sweeps": 5,
                                     "scaling": 20},
    scaling_batch=512)  # Gu et al.'s global batch, 64 per GPU on 8
SMOKE_SIZES = Sizes(
    timed=("+experiment=paper_cifar10", "data=synthetic", "data.image_size=16", "data.channels=3",
           "data.num_classes=10", "data.n=256", "data.pool_size=512", "data.test_size=64", "model=tiny",
           "model.attn_resolutions=[8]", "model.head_dim=12"),
    batches=(4,), compile_batches=(), correct_batch=8, correct_steps=6, seconds=0.2, warmup=1, pack_ks=(1, 2),
    eval_extra=("eval.num_samples=32", "eval.sampler_steps=4", "eval.loss_points=64", "eval.bootstrap=100"),
    nn_refs=512, novelty_test=128, compile_backend="aot_eager", compile_est_s=15.0,
    min_part_s={p: 1 for p in PARTS}, scaling_batch=8)
# the speed part's options, stacked as the brief orders them, plus memsweep's runtime defaults (fp32, fused Adam)
SPEED_OPTIONS = {
    "fp32": {},
    "fp32+fused (defaults)": {"runtime.fused_adam": "true"},
    "bf16": {"train.dtype": "bfloat16"},
    "bf16+channels_last": {"train.dtype": "bfloat16", "runtime.channels_last": "true"},
    "bf16+channels_last+fused": {"train.dtype": "bfloat16", "runtime.channels_last": "true",
                                 "runtime.fused_adam": "true"},
    "bf16+channels_last+fused+compile": {"train.dtype": "bfloat16", "runtime.channels_last": "true",
                                         "runtime.fused_adam": "true", "runtime.compile": "COMPILE"},
}
# compile first: it is the one the budget may not fit
CORRECT_OPTIONS = {"fp32": {}, "compile": {"runtime.compile": "COMPILE"}, "bf16": {"train.dtype": "bfloat16"},
                   "channels_last": {"runtime.channels_last": "true"}, "fused_adam": {"runtime.fused_adam": "true"}}


# -- the context: device, data folder, clock -----------------------------------------------------------------
class Clock:
    """The time budget: parts share what is left in proportion to their weights; a part (or one measurement in
    it) does not start when less than it needs is left."""
    WEIGHTS = {"correctness": 3.0, "speed": 4.0, "evaluation": 3.0, "pack": 1.0, "sweeps": 0.5, "scaling": 2.0}

    def __init__(self, budget_s: float):
        self.start, self.budget = time.perf_counter(), budget_s
        self.part_end = self.start + budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget - self.elapsed()

    def begin(self, part: str, todo: list[str]) -> float:
        """Start `part` (todo: it and the parts after it); returns the seconds it may take."""
        share = self.WEIGHTS[part] / sum(self.WEIGHTS[p] for p in todo)
        self.part_end = time.perf_counter() + max(0.0, self.left()) * share
        return self.part_end - time.perf_counter()

    def part_left(self) -> float:
        return self.part_end - time.perf_counter()


@dataclass
class Ctx:
    device: torch.device
    sizes: Sizes
    root: Path            # temp folder: run stores, the CIFAR-10 folder
    data_root: Path       # holds cifar-10-batches-py
    clock: Clock
    peak_flops: float | None
    smoke: bool

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def compose(self, *overrides):
        """A run's config on the device, its store under a fresh folder (runs differing only in runtime
        options share an id)."""
        folder = self.root / "runs" / f"{time.perf_counter_ns()}"
        return compose_run([*RUN_FIXED, f"data.root={self.data_root}", f"paths.output_root={folder}",
                            f"runtime.device={self.device.type}", *overrides])

    def run(self, *overrides) -> Run:
        cfg = self.compose(*overrides)
        run = Run(cfg, RunStore(run_dir(cfg)), {}, self.device, None)
        run.schedule = set()  # no evaluations during the timed steps
        return run


def options(opts: dict, ctx: Ctx) -> list[str]:
    """Overrides of the plain path for an option set ("COMPILE" is the backend this mode compiles with)."""
    merged = {**PLAIN, **opts}
    return [f"{k}={ctx.sizes.compile_backend if v == 'COMPILE' else v}" for k, v in merged.items()]


def free() -> None:
    """Between measurements: dynamo's cache emptied (a compiled option then compiles cold, though inductor's
    on-disk cache may hit, and no earlier model stays alive through it), and the memory of what was dropped."""
    torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def error_string(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:500]}"


def perturb_(model, scale: float = 0.02):
    """The same small random change to every weight, whatever the run: U-Net's zero-initialized output layers
    would otherwise make the first steps' losses (and samples) independent of the rest of the network."""
    with torch.no_grad():
        g = torch.Generator(next(model.parameters()).device).manual_seed(0)
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, device=p.device))
    return model


# -- stepping a run as the training loop does (memsweep.train.loop) ---------------------------------------------
def loop_step(stepper):
    """One step of `stepper` (SoloStep or PackedStep) and each run's bookkeeping, as memsweep.train.loop does it
    (its loss check every 50 steps included; no evaluation or checkpoint is due). Returns the losses."""
    runs = list(stepper.runs)

    def one():
        losses = stepper.step()
        for run, loss in zip(runs, losses):
            run.advance(loss)
        return losses
    return one


def steps_per_s(one, ctx: Ctx, seconds: float) -> float:
    """Steps/s of one() over at least `seconds`, synchronized at both ends (the caller warms up)."""
    ctx.sync()
    start, done, chunk = time.perf_counter(), 0, 1
    while True:
        for _ in range(chunk):
            one()
        done += chunk
        ctx.sync()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and done >= 3:
            return done / elapsed
        chunk = min(2 * chunk, 64)


def timed(fn, ctx: Ctx):
    """(seconds, result) of fn(), synchronized."""
    ctx.sync()
    start = time.perf_counter()
    out = fn()
    ctx.sync()
    return time.perf_counter() - start, out


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def reset_peak(ctx: Ctx) -> None:
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)


def peak_gib(ctx: Ctx) -> float | None:
    return torch.cuda.max_memory_allocated(ctx.device) / 2 ** 30 if ctx.cuda else None
