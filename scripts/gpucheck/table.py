"""The table gpu_check.py prints: one row per measurement, from the JSON's parts."""
from __future__ import annotations

from gpucheck.context import PARTS, error_string


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


def rows_scaling(r: dict) -> list[tuple]:
    rows = []
    for k, p in r["processes"].items():
        name = f"K={k} processes ({r['backend']}, B={r['batch_size']} global)"
        if "error" in p:
            rows.append((name, p["error"], ""))
            continue
        ratio = f"{p['speedup']:.2f}x K=1, efficiency {p['efficiency']:.0%}" if "speedup" in p else ""
        rows.append((name, f"{p['steps_per_s']:.2f} steps/s", ratio))
    return rows


FORMATTERS = {"correctness": rows_correctness, "speed": rows_speed, "pack": rows_pack,
              "evaluation": rows_evaluation, "sweeps": rows_sweeps,
              "scaling": rows_scaling}


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
