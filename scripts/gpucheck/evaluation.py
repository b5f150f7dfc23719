"""The evaluation part: the paper's evaluation protocol timed piece by piece (scripts/gpu_check.py)."""
from __future__ import annotations

import math

import torch

from memsweep.metrics.loss import fixed_loss
from memsweep.metrics.memorization import nearest_neighbours
from memsweep.metrics.novelty import novelty_row
from memsweep.train.active_run import Run

from gpucheck.context import Ctx, count_flops, error_string, free, peak_gib, perturb_, reset_peak, timed


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
