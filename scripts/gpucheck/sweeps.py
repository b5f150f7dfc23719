"""The sweeps part: GPU-hours of the paper's sweeps from the measured rates (scripts/gpu_check.py)."""
from __future__ import annotations

import math

from memsweep.sweeps.flops import step_flops
from memsweep.sweeps.spec import expand
from memsweep.train.active_run import eval_steps

from gpucheck.context import Ctx, PAPER_SWEEPS, error_string


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
            flops[model] = step_flops(cfg.model, cfg.data.image_size, cfg.data.channels, cfg.data.num_classes)
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
    timed_flops = step_flops(timed_cfg.model, timed_cfg.data.image_size, timed_cfg.data.channels,
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
