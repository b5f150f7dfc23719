"""The speed part: the timed U-Net's steps/s, images/s and FLOP/s by option and batch (scripts/gpu_check.py)."""
from __future__ import annotations

from memsweep.train.solo import SoloStep

from gpucheck.context import CHEAP_EVAL, Ctx, SPEED_OPTIONS, count_flops, error_string, free, loop_step, options, peak_gib, reset_peak, steps_per_s, timed


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
