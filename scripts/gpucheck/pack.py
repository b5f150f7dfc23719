"""The pack part: K tiny digits models as one packed network against one alone (scripts/gpu_check.py)."""
from __future__ import annotations

import time

from memsweep.train.active_run import Run
from memsweep.train.packed import PackedStep
from memsweep.train.solo import SoloStep

from gpucheck.context import CHEAP_EVAL, Ctx, count_flops, error_string, free, loop_step, steps_per_s


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
