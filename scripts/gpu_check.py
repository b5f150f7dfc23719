"""memsweep on one GPU, in one command: is each speed option correct, how fast is it, and what do the paper's
sweeps cost in GPU-hours. No network, no dataset: it writes random CIFAR-shaped data itself.

On a GPU machine (sized to finish in under 8 minutes on one H100/H200; --budget-s, default 450 s, stops starting
parts and measurements when the time nears it, and says which it skipped):

    PYTHONPATH=src python scripts/gpu_check.py --out benchmarks/$(date +%F)-gpu.json

On a CPU (what the tests run: every part with tiny sizes, about a minute):

    PYTHONPATH=src python scripts/gpu_check.py --cpu-smoke --out /tmp/gpu_check.json

Other options: --peak-tflops X (the bf16 peak to compare against, when the GPU is not in BF16_PEAK_TFLOPS, whose
figures are NVIDIA's data-sheet dense peaks, e.g. 989 for an H100/H200 SXM, or runs at other clocks),
--only correctness,speed,... (some parts), --merge FILE (below), --device cuda:1.

Everything goes through memsweep's own code: runs are train.Run objects composed by memsweep's config code
(+experiment=paper_cifar10 on CIFAR-10 python batches of random images written to a temp folder), steps are
train.SoloStep / packed.PackedStep, samples come from the run's Evaluator. The numbers (all in the JSON, the
table prints the main ones; ratios are measured in the same run):

correctness   a short run of paper_cifar10's U-Net (B=128, 32x32, 25 steps, same seed hence the same batches)
              trained five ways: float32 (plain: no channels-last, unfused Adam, eager), bfloat16 autocast,
              channels-last, fused Adam, torch.compile. Every run starts from the seed's weights plus the same
              small random change (scale 0.02): the U-Net's zero-initialized output layers would otherwise leave
              the first steps' losses and most gradients independent of the network (with it, the network's
              output is ~10% of its initial loss). `max_rel_diff`: the largest |loss - loss_fp32| / loss_fp32
              over the steps; each check passes within its stated tolerance (bf16: 5e-2; the float32 options:
              1e-3 on a CPU, 1e-2 on CUDA, where float32 convolutions run as TF32 by default and cuDNN picks
              other algorithms for another layout). `weights_rel_diff`: ||w - w_fp32|| / ||w_fp32|| after the
              run (information). `compile_s`: the first compiled step's time minus an eager step's (dynamo +
              inductor, cold).
speed         that U-Net at B=16 (the paper's), 128 and 512, options stacked: fp32, fp32+fused (memsweep's
              runtime defaults), bf16, bf16+channels-last, +fused Adam, +compile (at 128 and 512). steps/s and
              images/s (synchronized, after warm-up), FLOP/s = FlopCounterMode's count of one step x steps/s, its
              fraction of the GPU's dense bf16 peak (the roof for every option, fp32 included),
              torch.cuda.max_memory_allocated.
pack          K tiny digits models (K = 1, 4, 16, 64) as one packed.PackedStep: model-steps/s (K x steps/s),
              and FLOP/s crediting the pack K single-model steps' FLOPs (torch's counter ignores `groups` in a
              convolution's weight gradient, so counting the pack itself would overcount), against one run
              trained alone (train.SoloStep).
evaluation    the paper's protocol (eval.num_samples and eval.sampler_steps of paper_cifar10): sampling
              by the Evaluator (float32, as memsweep samples) and its FLOP/s; the fixed losses and the field
              probe of one evaluation; the Evaluator's own mem_metrics (NN vs its n training images + bootstrap);
              nearest_neighbours of 10,000 samples against 50,000 random 3x32x32 images on the device; the
              report's novelty_row (first call, which computes the real images' radii, and a second one with
              them cached) on the device; and, if time is left, sampling under bf16 autocast (not memsweep's
              path: a what-if). If the budget cannot fit all the samples, fewer are timed and scaled (said so).
sweeps        GPU-hours of configs/sweep/{dataset_size,model_size,batch_size,learning_rate}.yaml: each run
              composed by memsweep.sweeps.spec.expand (with data.root pointing at the temp folder, which validation
              needs) for its total steps, batch size, model and evaluation schedule. Training time: the step's
              FLOPs (counted on the meta device for every model) over the FLOP/s measured for the timed model
              at the nearest batch sizes (log-interpolated; exact for the timed U-Net at 16, 128 and 512,
              "scaled" otherwise), for memsweep's runtime defaults (fp32, fused Adam) and for the option fastest
              at the run's batch size (bf16 is a different run: a what-if). Evaluation time: the measured
              sampling, losses and NN per evaluation, scaled by forward FLOPs, samples and n, times the number of
              evaluations (Inception FID/SW excluded: their weights are not here; so are the samples generated
              beyond eval.num_samples for FID, eval.fid_samples). One GPU per run, no packing, checkpoints not
              counted.

A part (or one option within it) that fails is reported as an error string; the others still run. What the
budget made it skip is listed at the end (parts, and measurements within parts) and in the JSON. The JSON is
rewritten after each part, so a run cut short keeps what it measured; --merge FILE keeps an earlier run's
parts that are not run now (e.g. --only sweeps --merge earlier.json recomputes the GPU-hours).
--cpu-smoke: the same parts with tiny sizes (tiny U-Net with attention, 16x16 synthetic data, a handful of
steps, K = 1, 2, 32 samples); compile uses the aot_eager backend there (inductor took ~3 minutes on a 2-core CPU),
at the first batch size only.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

# -- memsweep: every import of it is here (module paths are being reorganized; update them in this block) ------
from memsweep.config import compose_run
from memsweep.data.datasets import make_synthetic_cifar
from memsweep.metrics.loss import fixed_loss
from memsweep.metrics.memorization import nearest_neighbours
from memsweep.metrics.novelty import novelty_row
from memsweep.science import unet as ms_unet
from memsweep.science.objective import build as build_formulation
from memsweep.store.identity import run_dir
from memsweep.store.run import RunStore
from memsweep.sweeps.spec import expand
from memsweep.train.packed import PackedStep
from memsweep.train.active_run import Run
from memsweep.train.schedule import eval_steps
from memsweep.train.solo import SoloStep
# ---------------------------------------------------------------------------------------------------------------

PARTS = ("correctness", "speed", "evaluation", "pack", "sweeps")
PAPER_SWEEPS = ("dataset_size", "model_size", "batch_size", "learning_rate")
# dense bf16 tensor-core peaks from NVIDIA's data sheets, matched in this order against the device name
BF16_PEAK_TFLOPS = (("H200 NVL", 835.0), ("H200", 989.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0),
                    ("H100", 989.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0))
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


GPU_SIZES = Sizes(
    timed=("+experiment=paper_cifar10",), batches=(16, 128, 512), compile_batches=(128, 512), correct_batch=128,
    correct_steps=25, seconds=2.0, warmup=2, pack_ks=(1, 4, 16, 64), eval_extra=(), nn_refs=50_000,
    novelty_test=10_000, compile_backend="true",
    compile_est_s=60.0, min_part_s={"correctness": 30, "speed": 30, "evaluation": 40, "pack": 10, "sweeps": 5})
SMOKE_SIZES = Sizes(
    timed=("+experiment=paper_cifar10", "data=synthetic", "data.image_size=16", "data.channels=3",
           "data.num_classes=10", "data.n=256", "data.pool_size=512", "data.test_size=64", "model=tiny",
           "model.attn_resolutions=[8]", "model.head_dim=12"),
    batches=(4,), compile_batches=(), correct_batch=8, correct_steps=6, seconds=0.2, warmup=1, pack_ks=(1, 2),
    eval_extra=("eval.num_samples=32", "eval.sampler_steps=4", "eval.loss_points=64", "eval.bootstrap=100"),
    nn_refs=512, novelty_test=128, compile_backend="aot_eager", compile_est_s=15.0,
    min_part_s={p: 1 for p in PARTS})
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
    WEIGHTS = {"correctness": 3.0, "speed": 4.0, "evaluation": 3.0, "pack": 1.0, "sweeps": 0.5}

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


# -- correctness --------------------------------------------------------------------------------------------
def train_curve(ctx: Ctx, opts: dict) -> dict:
    """A short run of the timed model with option set `opts`: its per-step losses, final weights, step times."""
    free()
    run = ctx.run(*ctx.sizes.timed, *CHEAP_EVAL, f"train.batch_size={ctx.sizes.correct_batch}", *options(opts, ctx))
    perturb_(run.model)  # in place: the optimizer's and the compiled module's parameters are these
    one = loop_step(SoloStep(run))
    losses, times = [], []
    for _ in range(ctx.sizes.correct_steps):
        seconds, loss = timed(one, ctx)
        losses.append(loss)
        times.append(seconds)
    weights = torch.cat([p.detach().flatten().float().cpu() for p in run.model.parameters()])
    out = {"losses": torch.cat(losses).float().cpu().tolist(), "weights": weights, "step_s": times}
    del run, one
    free()
    return out


def rel_diff(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))


def part_correctness(ctx: Ctx, results: dict) -> dict:
    tol = OPTION_TOL[ctx.device.type]
    out = {"batch_size": ctx.sizes.correct_batch, "steps": ctx.sizes.correct_steps, "option_tolerance": tol,
           "bf16_tolerance": BF16_TOL, "checks": {}}
    if ctx.cuda:
        out["tf32"] = {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32}
    ref = train_curve(ctx, CORRECT_OPTIONS["fp32"])
    out["fp32_losses"] = ref["losses"]
    eager_step = statistics.median(ref["step_s"][1:])
    for name, opts in CORRECT_OPTIONS.items():
        if name == "fp32":
            continue
        if name == "compile" and ctx.clock.part_left() < ctx.sizes.compile_est_s:
            out["checks"][name] = {"error": f"skipped: {ctx.clock.part_left():.0f} s left in this part, a compile "
                                            f"is expected to take ~{ctx.sizes.compile_est_s:.0f} s"}
            continue
        try:
            got = train_curve(ctx, opts)
            limit = BF16_TOL if name == "bf16" else tol
            check = {"max_rel_diff": rel_diff(got["losses"], ref["losses"]), "tolerance": limit,
                     "weights_rel_diff": ((got["weights"] - ref["weights"]).norm() / ref["weights"].norm()).item(),
                     "losses": got["losses"]}
            check["passed"] = bool(math.isfinite(check["max_rel_diff"]) and check["max_rel_diff"] <= limit)
            if name == "compile":
                check["backend"] = ctx.sizes.compile_backend
                check["compile_s"] = got["step_s"][0] - eager_step
            out["checks"][name] = check
        except Exception as e:  # one broken option does not lose the others
            out["checks"][name] = {"error": error_string(e)}
    return out


# -- speed ----------------------------------------------------------------------------------------------------
def measure_option(ctx: Ctx, batch: int, opts: dict, count: bool) -> dict:
    free()
    reset_peak(ctx)
    run = ctx.run(*ctx.sizes.timed, *CHEAP_EVAL, f"train.batch_size={batch}", *options(opts, ctx))
    one = loop_step(SoloStep(run))
    first_s, _ = timed(one, ctx)  # the compile, if any
    for _ in range(ctx.sizes.warmup):
        one()
    out = {"first_step_s": first_s}
    if count:
        out["flops_per_step"] = count_flops(one)
    out["steps_per_s"] = steps_per_s(one, ctx, ctx.sizes.seconds)
    out["images_per_s"] = out["steps_per_s"] * batch
    out["peak_mem_gib"] = peak_gib(ctx)
    del run, one
    free()
    return out


def speed_order(batches) -> list[tuple[int, str]]:
    """(batch, option) in the order measured: the compiled ones last, as the budget may not fit them."""
    pairs = [(b, name) for b in batches for name in SPEED_OPTIONS]
    return sorted(pairs, key=lambda p: ("compile" in p[1], batches.index(p[0])))


def part_speed(ctx: Ctx, results: dict) -> dict:
    out = {"peak_tflops": ctx.peak_flops / 1e12 if ctx.peak_flops else None,
           "batches": {str(b): {"flops_per_step": None, "options": {}} for b in ctx.sizes.batches}}
    for batch, name in speed_order(list(ctx.sizes.batches)):
        entry = out["batches"][str(batch)]
        if "compile" in name and batch not in ctx.sizes.compile_batches:
            entry["options"][name] = {"error": "skipped in --cpu-smoke: the correctness part's compile exercises "
                                               "the path"}
            continue
        need = ctx.sizes.seconds + (ctx.sizes.compile_est_s if "compile" in name else 5.0)
        if ctx.clock.part_left() < need:
            entry["options"][name] = {"error": f"skipped: {ctx.clock.part_left():.0f} s left in this part "
                                               f"(needs ~{need:.0f})"}
            continue
        try:
            row = measure_option(ctx, batch, SPEED_OPTIONS[name], count=entry["flops_per_step"] is None)
            entry["flops_per_step"] = row.get("flops_per_step", entry["flops_per_step"])  # same for every option
            row["flops_per_s"] = row["steps_per_s"] * entry["flops_per_step"]
            row["peak_fraction"] = row["flops_per_s"] / ctx.peak_flops if ctx.peak_flops else None
            entry["options"][name] = row
        except Exception as e:
            entry["options"][name] = {"error": error_string(e)}
    for entry in out["batches"].values():  # the table reads them in SPEED_OPTIONS' order
        entry["options"] = {k: entry["options"][k] for k in SPEED_OPTIONS if k in entry["options"]}
    return out


# -- pack ---------------------------------------------------------------------------------------------------
def pack_runs(ctx: Ctx, first: int, stop: int) -> list[Run]:
    """Tiny digits runs first..stop-1 that share a pack key (n and seed differ), as the demo sweep's."""
    return [ctx.run("data=digits", "model=tiny", *CHEAP_EVAL, f"data.n={16 * (i + 1)}", f"seed={i}")
            for i in range(first, stop)]


def part_pack(ctx: Ctx, results: dict) -> dict:
    started = time.perf_counter()
    runs = pack_runs(ctx, 0, 1)
    build_s = time.perf_counter() - started  # per run, for the budget guard
    solo = loop_step(SoloStep(runs[0]))
    solo()
    solo_flops = count_flops(solo)
    out = {"batch_size": runs[0].cfg.train.batch_size, "flops_per_model_step": solo_flops,
           "solo": {"model_steps_per_s": steps_per_s(solo, ctx, ctx.sizes.seconds)}, "packs": {}}
    for k in ctx.sizes.pack_ks:
        need = ctx.sizes.seconds + 3 + build_s * max(0, k - len(runs))
        if ctx.clock.part_left() < need:
            out["packs"][str(k)] = {"error": f"skipped: {ctx.clock.part_left():.0f} s left in this part "
                                             f"(needs ~{need:.0f})"}
            continue
        try:
            runs += pack_runs(ctx, len(runs), k)  # built as the packs grow, so a short budget builds few
            for run in runs[:k]:
                run.step = 0  # every run at one step count: one Adam call for the pack (PackedStep._adam)
            one = loop_step(PackedStep(runs[:k]))
            for _ in range(1 + ctx.sizes.warmup):
                one()
            rate = k * steps_per_s(one, ctx, ctx.sizes.seconds)
            out["packs"][str(k)] = {"model_steps_per_s": rate, "flops_per_s": rate * solo_flops,
                                    "vs_solo": rate / out["solo"]["model_steps_per_s"]}
            if ctx.peak_flops:
                out["packs"][str(k)]["peak_fraction"] = rate * solo_flops / ctx.peak_flops
        except Exception as e:
            out["packs"][str(k)] = {"error": error_string(e)}
    del runs
    free()
    return out


# -- evaluation -------------------------------------------------------------------------------------------------
def random_images(count: int, shape, device, seed: int) -> torch.Tensor:
    """Random uint8 images scaled to [-1, 1] as memsweep's data are, made on the device."""
    g = torch.Generator(device).manual_seed(seed)
    return torch.randint(0, 256, (count, *shape), generator=g, device=device).float() / 127.5 - 1


def attempt(out: dict, key: str, fn):
    """out[key] = fn(), or {"error": ...}: one failed measurement does not lose the others."""
    try:
        out[key] = fn()
    except Exception as e:
        free()  # after an out-of-memory error, what the failed call held
        out[key] = {"error": error_string(e)}
    return out[key]


def sample_count(ctx: Ctx, want: int, seconds_each: float | None, share: float) -> int:
    """`want` samples, or fewer when the estimate (seconds per sample) does not fit `share` of what is left."""
    if seconds_each is None or seconds_each * want <= share * ctx.clock.part_left():
        return want
    return max(min(want, 256), int(share * ctx.clock.part_left() / seconds_each) // 256 * 256)


def fwd_flops_per_image(run: Run) -> int:
    """Forward FLOPs of the run's model on one image (counted on a small batch on its device)."""
    data = run.data
    x = data.train_x[:2]
    t = torch.full((len(x),), 0.5, device=x.device)
    with torch.inference_mode():
        return count_flops(lambda: run.ema(x, t, data.train_y[:2])) // len(x)


def time_sampling(ctx: Ctx, run: Run, model, count: int, autocast: bool, keep: dict) -> dict:
    """The Evaluator's sampler on `count` of its samples (kept in keep["samples"]), scaled to all of them."""
    ev = run.evaluator
    reset_peak(ctx)
    with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=autocast):
        seconds, keep["samples"] = timed(lambda: ev.generate(model, count), ctx)
    want, steps = int(ev.cfg.num_samples), int(ev.cfg.sampler_steps)
    out = {"samples_timed": count, "seconds_timed": seconds, "seconds": seconds * want / count,
           "scaled": count != want, "peak_mem_gib": peak_gib(ctx),
           "flops_per_s": count * steps * keep["fwd_flops"] / seconds}
    out["peak_fraction"] = out["flops_per_s"] / ctx.peak_flops if ctx.peak_flops else None
    return out


def sampling_estimate(results: dict, fwd_flops: int, steps: int) -> float | None:
    """Seconds per sample from the speed part's float32 FLOP/s, if measured (sampling runs in float32)."""
    rates = [row["flops_per_s"] for b in (results.get("speed") or {}).get("batches", {}).values()
             for name, row in b["options"].items() if name.startswith("fp32") and "flops_per_s" in row]
    return steps * fwd_flops / max(rates) if rates else None


def part_evaluation(ctx: Ctx, results: dict) -> dict:
    run = ctx.run(*ctx.sizes.timed, *ctx.sizes.eval_extra)
    ev, model = run.evaluator, perturb_(run.ema).eval()
    want, steps = int(ev.cfg.num_samples), int(ev.cfg.sampler_steps)
    keep = {"fwd_flops": fwd_flops_per_image(run)}
    out = {"num_samples": want, "sampler_steps": steps, "sampler": str(ev.cfg.sampler), "n": len(run.data.train_x),
           "loss_points": int(ev.cfg.loss_points), "fwd_flops_per_image": keep["fwd_flops"]}
    count = sample_count(ctx, want, sampling_estimate(results, keep["fwd_flops"], steps), share=0.8)
    sampling = attempt(out, "sampling", lambda: time_sampling(ctx, run, model, count, False, keep))
    if "samples" in keep:  # the protocol's count, for the searches
        samples = torch.cat([keep.pop("samples")] * math.ceil(want / count))[:want]
    else:
        samples = random_images(want, run.data.train_x.shape[1:], ctx.device, seed=3)
        out["searched"] = "random images (sampling failed)"
    attempt(out, "losses_s", lambda: timed(lambda: (fixed_loss(ev.formulation, model, ev.train_batch, ev.cfg.t_bins),
                                                    fixed_loss(ev.formulation, model, ev.test_batch, ev.cfg.t_bins)),
                                           ctx)[0])
    if ev.field_probe is not None:
        attempt(out, "field_dist_s", lambda: timed(lambda: ev.field_probe.distance(model), ctx)[0])
    attempt(out, "mem_metrics_s", lambda: timed(lambda: ev.mem_metrics(samples), ctx)[0])
    refs = random_images(ctx.sizes.nn_refs, samples.shape[1:], ctx.device, seed=1)
    out["nn_refs"], out["nn_queries"] = len(refs), len(samples)
    attempt(out, "nn_s", lambda: timed(lambda: nearest_neighbours(samples, refs, k=2, block=ev.block), ctx)[0])
    attempt(out, "novelty", lambda: time_novelty(ctx, samples, refs))
    fits = "seconds_timed" in sampling and sampling["seconds_timed"] / count * want <= 0.8 * ctx.clock.part_left()
    if fits:
        bf16 = attempt(out, "sampling_bf16_autocast", lambda: time_sampling(ctx, run, model, want, True, {**keep}))
        if "seconds" in bf16:
            bf16.update(note="not memsweep's path (the Evaluator samples in float32)",
                        vs_fp32=sampling["seconds"] / bf16["seconds"])
    else:
        why = ("the float32 sampling failed" if "error" in sampling
               else f"{ctx.clock.part_left():.0f} s left in this part")
        out["sampling_bf16_autocast"] = {"error": f"skipped: {why}"}
    del run, model, ev, samples, refs
    free()
    return out


def novelty_times(ctx: Ctx, samples, train, test) -> dict:
    cache = {}
    out = {"samples": len(samples), "train": len(train), "test": len(test), "device": str(samples.device)}
    out["first_s"], _ = timed(lambda: novelty_row(samples, train, test, cache=cache), ctx)  # real images' radii too
    out["cached_s"], _ = timed(lambda: novelty_row(samples, train, test, cache=cache), ctx)  # each further one
    return out


def time_novelty(ctx: Ctx, samples, refs) -> dict:
    """novelty_row on the device (it computes on its inputs' device, having no device argument); if that fails,
    on the CPU with a tenth of the images (the full size would take minutes there), and said so."""
    test = random_images(ctx.sizes.novelty_test, samples.shape[1:], ctx.device, seed=2)
    try:
        return novelty_times(ctx, samples, refs, test)
    except Exception as e:
        if not ctx.cuda:
            raise
        failed = error_string(e)
    free()
    small = [x[:max(len(x) // 10, 8)].cpu() for x in (samples, refs, test)]
    return {**novelty_times(ctx, *small), "error_on_device": failed,
            "note": "on the CPU with a tenth of the images, as it failed on the device"}


# -- sweeps ----------------------------------------------------------------------------------------------------
def step_flops_per_image(model_cfg, image: tuple, classes: int) -> tuple[int, int]:
    """(forward, forward+backward) FLOPs of one image through memsweep's U-Net and loss, counted on the meta
    device: shapes only, so a c192 counts in milliseconds on any machine."""
    channels, size = image
    batch = 2
    with torch.device("meta"):
        model = ms_unet.build(model_cfg, size, channels, classes)
        x1, x0 = torch.randn(batch, channels, size, size), torch.randn(batch, channels, size, size)
        t, labels = torch.rand(batch), torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        loss = build_formulation("rectified_flow").loss_per_sample(model, x1, labels, x0, t).mean()
        fwd = counter.get_total_flops()
        loss.backward()
        both = counter.get_total_flops()
    return fwd // batch, both // batch


def measured_rates(speed: dict) -> dict:
    """option -> {batch: FLOP/s} from the speed part."""
    rates = {}
    for batch, b in speed.get("batches", {}).items():
        for name, row in b["options"].items():
            if "flops_per_s" in row:
                rates.setdefault(name, {})[int(batch)] = row["flops_per_s"]
    return rates


def rate_at(rates: dict, batch: int) -> tuple[float, bool]:
    """FLOP/s at `batch`, log-interpolated between measured batch sizes (clamped outside); measured or not."""
    if batch in rates:
        return rates[batch], True
    xs = sorted(rates)
    lo = max([b for b in xs if b < batch], default=xs[0])
    hi = min([b for b in xs if b > batch], default=xs[-1])
    if lo == hi:
        return rates[lo], False
    w = (math.log(batch) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return math.exp((1 - w) * math.log(rates[lo]) + w * math.log(rates[hi])), False


def runtime_option(cfg) -> str:
    """The speed option matching a run's own precision and runtime settings."""
    key = (cfg.train.dtype, bool(cfg.runtime.channels_last), bool(cfg.runtime.fused_adam), bool(cfg.runtime.compile))
    names = {("float32", False, False, False): "fp32", ("float32", False, True, False): "fp32+fused (defaults)",
             ("bfloat16", False, False, False): "bf16", ("bfloat16", True, False, False): "bf16+channels_last",
             ("bfloat16", True, True, False): "bf16+channels_last+fused",
             ("bfloat16", True, True, True): "bf16+channels_last+fused+compile"}
    return names.get(key, f"unmeasured runtime {key}")


def usable(ev: dict | None) -> bool:
    """Whether the evaluation part measured what an evaluation's cost is made of."""
    return bool(ev) and "seconds" in ev.get("sampling", {}) and all(
        isinstance(ev.get(k), float) for k in ("losses_s", "nn_s"))


def eval_seconds(cfg, fwd: int, ev: dict) -> float:
    """One evaluation of run `cfg` from the measured one: sampling and losses scaled by forward FLOPs, samples
    and steps; the NN search by queries and training images; the field probe as measured."""
    e, s = cfg.eval, ev["sampling"]
    per_fwd = s["seconds"] / (ev["num_samples"] * ev["sampler_steps"] * ev["fwd_flops_per_image"])
    sampling = per_fwd * fwd * e.num_samples * e.sampler_steps
    losses = ev["losses_s"] / (2 * ev["loss_points"] * ev["fwd_flops_per_image"]) * fwd * 2 * e.loss_points
    nn = ev["nn_s"] * (e.num_samples / ev["nn_queries"]) * (cfg.data.n / ev["nn_refs"])
    field = ev.get("field_dist_s") if isinstance(ev.get("field_dist_s"), float) and e.field_points else 0.0
    return sampling + losses + nn + field


def fastest_at(rates: dict, batch: int) -> str:
    return max(rates, key=lambda option: rate_at(rates[option], batch)[0])


def sweep_cost(name: str, ctx: Ctx, rates: dict, ev: dict | None, timed_flops: int, flops: dict) -> dict:
    sweep = expand(name, [f"data.root={ctx.data_root}", "logger=none", f"paths.output_root={ctx.root / 'sweeps'}"])
    runs, totals = [], {"train_h_defaults": 0.0, "train_h_fastest": 0.0, "eval_h": 0.0}
    for planned in sweep.runs:
        cfg = planned.cfg
        model = cfg.model.name
        if model not in flops:
            flops[model] = step_flops_per_image(cfg.model, (cfg.data.channels, cfg.data.image_size),
                                                cfg.data.num_classes)
        fwd, step = flops[model]
        B, total = int(cfg.train.batch_size), int(cfg.train.total_steps)
        own = runtime_option(cfg)
        row = {"axes": planned.axes, "model": model, "n": int(cfg.data.n), "batch_size": B, "steps": total,
               "evaluations": len(eval_steps(total, cfg.eval.first_step, cfg.eval.num_points)), "runtime": own}
        row["fastest"] = fastest_at(rates, B)
        for label, option in (("defaults", own), ("fastest", row["fastest"])):
            if option not in rates:
                row[f"train_h_{label}"] = None
                continue
            rate, exact = rate_at(rates[option], B)
            row[f"train_h_{label}"] = total * B * step / rate / 3600
            row[f"steps_per_s_{label}"] = rate / (B * step)
            row[f"{label}_is"] = "measured" if exact and step == timed_flops else "scaled by FLOPs"
        row["eval_h"] = row["evaluations"] * eval_seconds(cfg, fwd, ev) / 3600 if ev else None
        for key in totals:
            totals[key] = None if totals[key] is None or row[key] is None else totals[key] + row[key]
        runs.append(row)
    total = (None if totals["train_h_defaults"] is None or totals["eval_h"] is None
             else totals["train_h_defaults"] + totals["eval_h"])
    return {"runs": runs, **totals, "total_h_defaults": total,
            "fastest_options": sorted({r["fastest"] for r in runs}),
            "composed": "memsweep.sweeps.spec.expand with data.root=<temp folder of synthetic CIFAR-10 batches>"}


def part_sweeps(ctx: Ctx, results: dict) -> dict:
    speed, ev = results.get("speed") or {}, results.get("evaluation")
    rates = measured_rates(speed)
    if not rates:
        raise RuntimeError("no training speed measured (the speed part failed or was skipped)")
    timed_cfg = ctx.compose(*ctx.sizes.timed)
    timed_flops = step_flops_per_image(timed_cfg.model, (timed_cfg.data.channels, timed_cfg.data.image_size),
                                       timed_cfg.data.num_classes)
    counted = next((b["flops_per_step"] / int(batch) for batch, b in speed["batches"].items() if b["flops_per_step"]),
                   None)
    out = {"timed_model": f"{timed_cfg.model.name} at {timed_cfg.data.image_size}x{timed_cfg.data.image_size}",
           "timed_flops_per_image_step": timed_flops[1], "counted_on_device_per_image_step": counted,
           "evaluation_cost": "measured" if usable(ev) else "missing (evaluation part failed or skipped)",
           "note": ("smoke: a tiny CPU model's rates scaled by FLOPs, not GPU-hours" if ctx.smoke else
                    "one GPU per run, no packing; checkpoints and Inception FID/SW not counted; models not timed are "
                    "scaled by FLOPs, optimistic for small ones (a GPU is then less busy)"),
           "sweeps": {}}
    ev = ev if usable(ev) else None
    flops = {}  # model -> (forward, step) FLOPs per image at 32x32
    for name in PAPER_SWEEPS:
        try:
            out["sweeps"][name] = sweep_cost(name, ctx, rates, ev, timed_flops[1], flops)
        except Exception as e:
            out["sweeps"][name] = {"error": error_string(e)}
    out["model_flops_per_image"] = {k: {"forward": f, "step": s} for k, (f, s) in flops.items()}
    return out


# -- the table ------------------------------------------------------------------------------------------------
def fmt(x, unit: str = "", digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}g}{unit}"


def flops_str(flops_per_s: float) -> str:
    return f"{flops_per_s / 1e12:.1f} TFLOP/s" if flops_per_s >= 1e12 else f"{flops_per_s / 1e9:.2f} GFLOP/s"


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}% of bf16 peak"


def rows_correctness(r: dict) -> list[tuple]:
    rows = []
    for name, c in r["checks"].items():
        if "error" in c:
            rows.append((f"fp32 vs {name}", c["error"], ""))
            continue
        extra = f", compile {c['compile_s']:.1f} s ({c['backend']})" if "compile_s" in c else ""
        rows.append((f"fp32 vs {name}: max rel. loss diff over {r['steps']} steps (B={r['batch_size']})",
                     f"{c['max_rel_diff']:.2e} (weights {c['weights_rel_diff']:.1e}){extra}",
                     f"{'PASS' if c['passed'] else 'FAIL'} (tolerance {c['tolerance']:g})"))
    return rows


def rows_speed(r: dict) -> list[tuple]:
    rows = []
    for batch, b in r["batches"].items():
        base = b["options"].get("fp32", {}).get("steps_per_s")
        for name, o in b["options"].items():
            if "error" in o:
                rows.append((f"B={batch} {name}", o["error"], ""))
                continue
            mem = f", {o['peak_mem_gib']:.1f} GiB" if o.get("peak_mem_gib") is not None else ""
            ratio = f"{o['steps_per_s'] / base:.2f}x fp32" if base else ""
            rows.append((f"B={batch} {name}", f"{o['steps_per_s']:.2f} steps/s, {o['images_per_s']:.0f} img/s, "
                         f"{flops_str(o['flops_per_s'])}{mem}", f"{ratio}; {pct(o.get('peak_fraction'))}"))
    return rows


def rows_pack(r: dict) -> list[tuple]:
    rows = [(f"one tiny digits run alone (B={r['batch_size']})",
             f"{r['solo']['model_steps_per_s']:.1f} model-steps/s", "")]
    for k, p in r["packs"].items():
        if "error" in p:
            rows.append((f"pack K={k}", p["error"], ""))
            continue
        rows.append((f"pack K={k}", f"{p['model_steps_per_s']:.1f} model-steps/s, {flops_str(p['flops_per_s'])}",
                     f"{p['vs_solo']:.2f}x alone; {pct(p.get('peak_fraction'))}"))
    return rows


def secs(value, digits: int = 2) -> str:
    return value["error"] if isinstance(value, dict) else f"{value:.{digits}f} s"


def rows_evaluation(r: dict) -> list[tuple]:
    rows, s = [], r["sampling"]
    name = f"sampling {r['num_samples']} x {r['sampler_steps']} {r['sampler']} steps (fp32)"
    if "error" in s:
        rows.append((name, s["error"], ""))
    else:
        scaled = f" (scaled from {s['samples_timed']})" if s["scaled"] else ""
        mem = f", {s['peak_mem_gib']:.1f} GiB" if s.get("peak_mem_gib") is not None else ""
        rows.append((name, f"{s['seconds']:.1f} s{scaled}, {flops_str(s['flops_per_s'])}{mem}",
                     pct(s.get("peak_fraction"))))
    b = r.get("sampling_bf16_autocast", {})
    rows.append(("sampling under bf16 autocast (what-if)", b.get("error") or f"{b['seconds']:.1f} s",
                 f"{b['vs_fp32']:.2f}x fp32's speed" if "vs_fp32" in b else ""))
    rows.append((f"fixed losses, 2 x {r['loss_points']} points", secs(r["losses_s"]), ""))
    if "field_dist_s" in r:
        rows.append(("field_dist probe", secs(r["field_dist_s"]), ""))
    rows.append((f"Evaluator.mem_metrics (n={r['n']}, bootstrap)", secs(r["mem_metrics_s"]), ""))
    rows.append((f"nearest_neighbours {r['nn_queries']} vs {r['nn_refs']} images", secs(r["nn_s"]),
                 r.get("searched", "")))
    nv = r["novelty"]
    if "error" in nv:
        rows.append(("novelty_row", nv["error"], ""))
    else:
        rows.append((f"novelty_row ({nv['samples']} samples, train {nv['train']}, test {nv['test']})",
                     f"{nv['first_s']:.2f} s first, {nv['cached_s']:.2f} s with the real images' radii cached",
                     f"on {nv['device']}" + (f" ({nv['note']}: {nv['error_on_device']})" if "note" in nv else "")))
    return rows


def rows_sweeps(r: dict) -> list[tuple]:
    rows = [("sweeps: timed model, FLOPs per image-step (meta / on device)",
             f"{r['timed_model']}: {fmt(r['timed_flops_per_image_step'] / 1e9)} / "
             f"{fmt((r['counted_on_device_per_image_step'] or 0) / 1e9)} GFLOP", f"eval cost {r['evaluation_cost']}"),
            ("sweeps: what the hours count", r["note"], "")]
    for name, s in r["sweeps"].items():
        if "error" in s:
            rows.append((f"sweep {name}", s["error"], ""))
            continue
        steps = sum(x["steps"] for x in s["runs"])
        rows.append((f"sweep {name}: {len(s['runs'])} runs, {steps / 1e6:.2f}M steps",
                     f"{fmt(s['total_h_defaults'], ' GPU-h')} (train {fmt(s['train_h_defaults'], ' h')} + "
                     f"eval {fmt(s['eval_h'], ' h')})",
                     f"train {fmt(s['train_h_fastest'], ' h')} with {', '.join(s['fastest_options'])}"))
    return rows


FORMATTERS = {"correctness": rows_correctness, "speed": rows_speed, "pack": rows_pack,
              "evaluation": rows_evaluation, "sweeps": rows_sweeps}


def print_table(result: dict) -> None:
    lines = [("part", "measure", "value", "ratio / check")]
    for part in PARTS:
        r = result["parts"].get(part)
        if r is None:
            continue
        if "error" in r or "skipped" in r:
            lines.append((part, "", r.get("error") or r["skipped"], ""))
            continue
        try:
            lines += [(part, *row) for row in FORMATTERS[part](r)]
        except Exception as e:  # a formatting slip must not hide the JSON's numbers
            lines.append((part, "", f"(table row failed: {error_string(e)}; see the JSON)", ""))
    widths = [min(max(len(str(r[i])) for r in lines), 70) for i in range(4)]
    for i, r in enumerate(lines):
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


# -- main -------------------------------------------------------------------------------------------------------
def peak_flops(device: torch.device, given: float | None) -> tuple[float | None, str]:
    if given:
        return given * 1e12, "--peak-tflops"
    if device.type != "cuda":
        return None, "none on a CPU"
    name = torch.cuda.get_device_name(device)
    for key, tflops in BF16_PEAK_TFLOPS:
        if key in name:
            return tflops * 1e12, f"table ({key})"
    return None, f"unknown GPU {name!r}: pass --peak-tflops"


def machine(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "host": platform.node(),
            "device": str(device), "threads": torch.get_num_threads(),
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=torch.cuda.get_device_name(device), gpu_mem_gib=props.total_memory / 2 ** 30,
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def run_parts(ctx: Ctx, todo: list[str], result: dict, out_path: Path) -> None:
    impl = {"correctness": part_correctness, "speed": part_speed, "evaluation": part_evaluation,
            "pack": part_pack, "sweeps": part_sweeps}
    for i, part in enumerate(todo):
        allowed = ctx.clock.begin(part, todo[i:])
        if allowed < ctx.sizes.min_part_s[part]:
            result["parts"][part] = {"skipped": f"skipped: {ctx.clock.left():.0f} s of the budget left "
                                                f"(needs ~{ctx.sizes.min_part_s[part]} s)"}
            result["skipped"].append(part)
        else:
            print(f"[{ctx.clock.elapsed():5.0f} s] {part} (up to {allowed:.0f} s)", file=sys.stderr, flush=True)
            started = time.perf_counter()
            try:
                result["parts"][part] = impl[part](ctx, result["parts"])
            except Exception as e:  # one broken part does not lose the others
                result["parts"][part] = {"error": error_string(e), "traceback": traceback.format_exc()[-4000:]}
            result["parts"][part]["seconds"] = time.perf_counter() - started
            free()
        result["elapsed_s"] = ctx.clock.elapsed()
        out_path.write_text(json.dumps(result, indent=1, default=str))  # what is done so far, if stopped later


def skipped_inside(value, path: str = "") -> list[str]:
    """Where a part skipped a measurement of its own (entries {"error": "skipped: ..."})."""
    if isinstance(value, dict):
        if str(value.get("error", "")).startswith("skipped"):
            return [path]
        return [p for k, v in value.items() for p in skipped_inside(v, f"{path}/{k}" if path else str(k))]
    return []


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="gpu_check.json", help="the JSON file with every number")
    ap.add_argument("--cpu-smoke", action="store_true", help="every part with tiny sizes on the CPU (~1 minute)")
    ap.add_argument("--budget-s", type=float, default=450.0, help="stop starting parts when the time nears this")
    ap.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak (default: BF16_PEAK_TFLOPS)")
    ap.add_argument("--device", default=None, help="default: cuda, or cpu with --cpu-smoke")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {','.join(PARTS)}")
    ap.add_argument("--merge", help="an earlier JSON whose parts not run now are kept (e.g. --only sweeps)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    clock = Clock(args.budget_s)
    device = torch.device(args.device or ("cpu" if args.cpu_smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run with --cpu-smoke (tiny sizes on the CPU) or on a GPU machine", file=sys.stderr)
        return 2
    todo = [p for p in args.only.split(",") if p]
    unknown = set(todo) - set(PARTS)
    if unknown:
        print(f"--only: unknown part(s) {sorted(unknown)} (choose from {', '.join(PARTS)})", file=sys.stderr)
        return 2
    if args.cpu_smoke:
        torch.set_num_threads(1)  # as memsweep's CPU runs: a shared CPU's other core only contends
    peak, peak_source = peak_flops(device, args.peak_tflops)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    result = {"mode": "cpu-smoke" if args.cpu_smoke else "gpu", "budget_s": args.budget_s, "machine": machine(device),
              "peak_bf16_tflops": peak / 1e12 if peak else None, "peak_source": peak_source,
              "parts": {}, "skipped": []}
    if args.merge:  # parts not run now, from an earlier run (the sweeps part reads speed and evaluation)
        earlier = json.loads(Path(args.merge).read_text())
        result["parts"] = {k: v for k, v in earlier.get("parts", {}).items() if k not in todo}
        result["merged_from"] = {"file": args.merge, "parts": sorted(result["parts"]),
                                 "measured": earlier.get("machine", {}).get("measured")}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        root = Path(tmp)
        # random CIFAR-10 python batches: 5 x 1,024 training images (n = 4,096 fits), 1,024 test images
        make_synthetic_cifar(root / "data", per_batch=20 if args.cpu_smoke else 1024)
        ctx = Ctx(device, SMOKE_SIZES if args.cpu_smoke else GPU_SIZES, root, root / "data", clock, peak,
                  args.cpu_smoke)
        run_parts(ctx, todo, result, out_path)
    result["elapsed_s"] = clock.elapsed()
    m = result["machine"]
    print(f"\nmemsweep gpu_check ({result['mode']}): {m.get('gpu') or m.get('cpu')}, torch {m['torch']}, "
          f"bf16 peak {fmt(result['peak_bf16_tflops'], ' TFLOP/s')} ({peak_source})")
    print_table(result)
    result["skipped_measurements"] = skipped_inside({p: result["parts"].get(p) for p in todo})
    out_path.write_text(json.dumps(result, indent=1, default=str))
    if result["skipped"]:
        print(f"\nparts skipped for the time budget ({args.budget_s:.0f} s): {', '.join(result['skipped'])}")
    if result["skipped_measurements"]:
        print(f"measurements skipped within parts: {', '.join(result['skipped_measurements'])}")
    print(f"\n{result['elapsed_s']:.0f} s in all; every number in {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
