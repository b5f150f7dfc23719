"""The correctness part: a short run trained five ways against plain float32 (scripts/gpu_check.py)."""
from __future__ import annotations

import math
import statistics

import torch

from memsweep.train.solo import SoloStep

from gpucheck.context import BF16_TOL, CHEAP_EVAL, CORRECT_OPTIONS, Ctx, OPTION_TOL, error_string, free, loop_step, options, perturb_, timed


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
