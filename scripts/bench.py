"""memsweep's speed against a textbook PyTorch loop and against this machine's limit, measured side by side.

    PYTHONPATH=src python scripts/bench.py [--quick] [--out bench.json] [--only training,evaluation,sweep,textbook]

(a) training steps/s of memsweep's loop (train.SoloStep on a train.Run) vs a textbook loop with the same model
    (DataLoader over a TensorDataset, loss.item() every step, an EMA loop over the parameters, default Adam);
(b) achieved training FLOP/s (torch.utils.flop_counter) vs the measured one-thread float32 matmul rate (roof),
    at batch 32, 128 and 512 (the model's best), and for a pack of 4 runs at batch 32 (memsweep.train.packed.PackedStep),
    with the share of each step's time spent in convolutions (torch.profiler) and the FLOP/s they reach;
(c) the cost of one evaluation (digits, n=64, default eval settings) by part, and its share of a demo run, both
    estimated from (a)-(c) and measured in (d)'s sweeps (each run's train_seconds and eval_seconds, status.json);
(d) the demo sweep's runs/hour: `memsweep sweep demo` (local launcher, 2 workers of one thread; packed and not)
    vs its runs one after another with the textbook loop (same evaluations at the same steps, torch's default
    threads). Both with logger=none.

Everything compared is measured in this one process and run, interleaved in rounds (a)-(b), because the
machine is shared and timings drift: the ratios are what to read. --quick: fewer rounds in (a)-(c), and in
(d) every run of the demo is 5x shorter (train.epochs 2000 -> 400, so 200-800 steps instead of 1000-4000, with
the same 16 evaluations each: evaluation weighs more than in the full demo).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from torch.profiler import profile
from torch.utils.flop_counter import FlopCounterMode

from memsweep import config
from memsweep.data import datasets
from memsweep.science import unet
from memsweep.eval.evaluator import Evaluator
from memsweep.metrics.loss import fixed_loss
from memsweep.train.packed import PackedStep
from memsweep.store.run import RunStore
from memsweep.train.active_run import Run
from memsweep.train.schedule import eval_steps
from memsweep.train.solo import SoloStep
from memsweep.store import identity
from memsweep.sweeps.spec import expand

ROOT = Path(__file__).resolve().parents[1]
DEMO_EPOCHS = 2000


def compose(root, *overrides):
    return config.compose_run(["logger=none", "runtime.progress=false", "runtime.threads=1",
                               f"paths.output_root={root}", *overrides])


# -- the textbook loop ------------------------------------------------------------------------------------
class Textbook:
    """What one writes from the PyTorch tutorials: a DataLoader, .item() every step, an EMA loop."""

    def __init__(self, cfg, data, batch_size=None):
        torch.manual_seed(cfg.seed)
        self.cfg, self.data = cfg, data
        self.B = batch_size or cfg.train.batch_size
        self.model = unet.build(cfg.model, cfg.data.image_size, cfg.data.channels, data.num_classes)
        self.ema = copy.deepcopy(self.model)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.optim.lr)
        ds = TensorDataset(data.train_x, data.train_y)  # n may be below the batch size: draw with replacement
        self.loader = DataLoader(ds, batch_size=self.B, sampler=RandomSampler(ds, replacement=True, num_samples=10**9))
        self.batches = iter(self.loader)
        self.losses, self.step = [], 0

    def train_step(self):
        x1, y = next(self.batches)
        x0, t = torch.randn_like(x1), torch.rand(len(x1))
        y = torch.where(torch.rand(len(y)) < self.cfg.train.label_dropout, self.data.num_classes, y)
        tt = t[:, None, None, None]
        loss = ((self.model((1 - tt) * x0 + tt * x1, t, y) - (x1 - x0)) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        decay = min(self.cfg.train.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for pe, p in zip(self.ema.parameters(), self.model.parameters()):
                pe.mul_(decay).add_(p, alpha=1 - decay)
        self.losses.append(loss.item())
        self.step += 1


def textbook_run(cfg) -> list[dict]:
    """A whole run with the textbook loop, evaluated at memsweep's steps by memsweep's evaluator."""
    data = datasets.load(cfg.data)
    tb = Textbook(cfg, data)
    evaluator = Evaluator(cfg, data, torch.device("cpu"))
    schedule = set(eval_steps(cfg.train.total_steps, cfg.eval.first_step, cfg.eval.num_points))
    rows = []
    while tb.step < cfg.train.total_steps:
        tb.train_step()
        if tb.step in schedule:
            rows.append(evaluator(tb.ema, tb.step)[0])
    return rows


# -- measuring ----------------------------------------------------------------------------------------------
def rate(fn, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return steps / (time.perf_counter() - t)


def matmul_rate(size=512, reps=10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * size ** 3 * reps / (time.perf_counter() - t)


def step_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


CONV_OPS = {"aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution", "aten::convolution",
            "aten::conv2d", "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward", "aten::mkldnn_convolution_backward"}


def conv_share(fn, steps: int) -> float:
    """The fraction of fn's time spent in convolution kernels (forward and backward), from torch.profiler."""
    with profile() as prof:
        for _ in range(steps):
            fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in CONV_OPS) / total


def memsweep_stepper(root, batch_size: int, k: int = 1):
    """A train.Run (or k of them, packed) and a function doing what train.py's loop does for one step,
    evaluation and checkpoints excepted."""
    runs = [Run(c, RunStore(identity.run_dir(c)), {}, torch.device("cpu"), None) for c in
            [compose(root, f"train.batch_size={batch_size}", f"data.n={16 * (i + 1)}", f"seed={i}") for i in range(k)]]
    stepper = SoloStep(runs[0]) if k == 1 else PackedStep(runs)
    for r in runs:
        r.schedule, r.cfg.runtime.checkpoint_every = set(), 10**9

    def one():
        losses = stepper.step()
        for r, loss in zip(runs, losses):
            r.advance(loss)
    return one, runs


def bench_training(root, rounds: int, chunk: int) -> dict:
    torch.set_num_threads(1)
    variants = {}
    for B in (32, 128):
        one, runs = memsweep_stepper(root / f"b{B}", B)
        tb = Textbook(runs[0].cfg, runs[0].data, B)
        variants[f"memsweep B={B}"] = (one, 1, step_flops(one))
        variants[f"textbook B={B}"] = (tb.train_step, 1, step_flops(tb.train_step))
    one, runs = memsweep_stepper(root / "b512", 512)  # the model's best at any batch size, about
    variants["memsweep B=512"] = (one, 1, step_flops(one))
    one, runs = memsweep_stepper(root / "pack", 32, k=4)
    # A pack does the arithmetic of its 4 runs, so it is credited 4 solo steps' FLOPs. Counting the pack itself
    # would overcount: torch's counter ignores `groups` in a convolution's weight gradient (4x too many there).
    variants["memsweep packed K=4 B=32"] = (one, 4, 4 * variants["memsweep B=32"][2])
    for fn, _, _ in variants.values():
        fn()
    rates = {k: [] for k in variants}
    roofs = []
    for _ in range(rounds):  # interleaved: each round measures every variant and the roof
        roofs.append(matmul_rate())
        for name, (fn, k, _) in variants.items():
            rates[name].append(rate(fn, max(2, chunk * 32 // (k * batch_of(name)))) * k)  # model-steps/s
    roof = statistics.median(roofs)
    out = {"roof_flops": roof, "threads": 1}
    for name, (fn, k, flops) in variants.items():
        r = statistics.median(rates[name])
        out[name] = {"model_steps_per_s": r, "flops_per_model_step": flops / k, "flops_per_s": r * flops / k,
                     "roof_fraction": r * flops / k / roof}
        # where the rest goes: convolutions' share of the step's time, and the FLOP/s they reach
        share = conv_share(fn, max(2, chunk * 32 // (k * batch_of(name)) // 2))
        out[name].update(conv_time_share=share, conv_roof_fraction=out[name]["roof_fraction"] / share)
    return out


def batch_of(name: str) -> int:
    return int(name.split("B=")[1])


def bench_eval(root, reps: int) -> dict:
    """One evaluation of a demo run (n=64, default eval settings), by part."""
    torch.set_num_threads(1)
    cfg = compose(root / "eval", "data.n=64")
    run = Run(cfg, RunStore(identity.run_dir(cfg)), {}, torch.device("cpu"), None)
    model = run.ema.eval()
    with torch.no_grad():  # away from the zero-initialized start, so every layer works
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ev = run.evaluator
    samples = ev.generate(model)
    parts = {  # the Evaluator's own pieces, as one evaluation calls them
        "loss (train+test)": lambda: (fixed_loss(ev.formulation, model, ev.train_batch, ev.cfg.t_bins),
                                      fixed_loss(ev.formulation, model, ev.test_batch, ev.cfg.t_bins)),
        "field_dist (closed-form memorizer)": lambda: ev.field_probe.distance(model),
        "sampling": lambda: ev.generate(model),
        "nearest neighbours (mem_ratio, bootstrap)": lambda: ev.mem_metrics(samples),
        "sliced Wasserstein": lambda: ev.sw_metrics(samples, ev.cfg.sw_features),
        "FID features+distance": lambda: ev.fd_metrics(samples, ev.cfg.fid_features),
        "whole evaluation": lambda: ev(model, 1),
    }
    times = {k: [] for k in parts}
    for _ in range(reps):
        for name, fn in parts.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    out = {k: statistics.median(v) for k, v in times.items()}
    out["evaluations_per_run"] = len(eval_steps(1000, cfg.eval.first_step, 16))
    return out


def demo_steps(epochs: int) -> list[int]:
    return [r.cfg.train.total_steps for r in expand("demo", [f"train.epochs={epochs}"]).runs]


SWEEP_VARIANTS = {"memsweep, one run per worker": 1, "memsweep, packed (launcher.pack=4)": 4}


def bench_sweep(root, epochs: int) -> dict:
    """Wall time of the demo sweep with memsweep's local launcher, one run per worker and packed."""
    env = {**os.environ, "WANDB_MODE": "disabled"}
    out = {"epochs": epochs, "runs": 5}
    for name, pack in SWEEP_VARIANTS.items():
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "memsweep.cli", "sweep", "demo", "--quiet", "logger=none",
                               f"train.epochs={epochs}", f"launcher.pack={pack}", "launcher.workers=2",
                               f"paths.output_root={root / f'sweep{pack}'}"], env=env, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"memsweep sweep failed: {proc.stderr[-2000:]}")
        out[name] = time.perf_counter() - t
        out[f"{name}: runs"] = run_timings(root / f"sweep{pack}")
    return out


def run_timings(root: Path) -> list[dict]:
    """Each run's n, steps and seconds in training steps and in evaluations (its status.json)."""
    rows = []
    for path in sorted((root / "runs").glob("*/status.json")):
        st, cfg = json.loads(path.read_text()), RunStore(path.parent).read_config()
        rows.append({"n": cfg.data.n, "steps": st["step"], "train_seconds": st["train_seconds"],
                     "eval_seconds": st["eval_seconds"]})
    return sorted(rows, key=lambda r: r["n"])


def bench_textbook_sweep(root, epochs: int) -> dict:
    """Wall time of the demo's runs one after another with the textbook loop (torch's default threads)."""
    torch.set_num_threads(os.cpu_count() or 1)
    t = time.perf_counter()
    for r in expand("demo", [f"train.epochs={epochs}", "logger=none", f"paths.output_root={root / 'tb'}"]).runs:
        textbook_run(r.cfg)
    return {"epochs": epochs, "runs": 5, "seconds": time.perf_counter() - t}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds; demo runs 5x shorter (see the docstring)")
    ap.add_argument("--out", default="bench.json")
    ap.add_argument("--only", default="training,evaluation,sweep,textbook",
                    help="comma-separated parts to run: training (a, b), evaluation (c), sweep and textbook (d)")
    ap.add_argument("--merge", help="a previous JSON whose parts not run now are kept (and shown)")
    args = ap.parse_args(argv)
    rounds, chunk, reps = (3, 20, 2) if args.quick else (7, 40, 5)
    epochs = DEMO_EPOCHS // 5 if args.quick else DEMO_EPOCHS
    result = json.loads(Path(args.merge).read_text()) if args.merge else {}
    result.update({"quick": args.quick, "torch": torch.__version__, "demo_steps": demo_steps(DEMO_EPOCHS)})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parts = {"training": lambda: bench_training(tmp / "train", rounds, chunk),
                 "evaluation": lambda: bench_eval(tmp, reps),
                 "sweep": lambda: bench_sweep(tmp, epochs),
                 "textbook": lambda: bench_textbook_sweep(tmp, epochs)}
        for name in args.only.split(","):
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            result[name] = {**parts[name](), "measured": started, "load_average": os.getloadavg()}
            Path(args.out).write_text(json.dumps(result, indent=1))  # what is done so far, if stopped later
    print_table(result)
    print(f"\nwritten to {args.out}")
    return 0


def training_lines(res: dict) -> list[tuple]:
    tr, ev, lines = res["training"], res["evaluation"], []
    for B in (32, 128):
        m, t = tr[f"memsweep B={B}"], tr[f"textbook B={B}"]
        lines.append((f"(a) steps/s B={B}: memsweep vs textbook", f"{m['model_steps_per_s']:.1f} vs "
                      f"{t['model_steps_per_s']:.1f}", f"{m['model_steps_per_s'] / t['model_steps_per_s']:.2f}x"))
    lines.append(("(b) roof: 1-thread fp32 matmul", f"{tr['roof_flops'] / 1e9:.1f} GFLOP/s", ""))
    for name in ("memsweep B=32", "memsweep B=128", "memsweep B=512", "memsweep packed K=4 B=32"):
        v = tr.get(name)
        if v is None:
            continue
        goal = " (goal 60%)" if "packed" in name else ""
        lines.append((f"(b) {name}: FLOP/s", f"{v['flops_per_s'] / 1e9:.1f} GFLOP/s "
                      f"({v['model_steps_per_s']:.1f} model-steps/s)", f"{100 * v['roof_fraction']:.0f}% of roof{goal}"))
        if "conv_time_share" in v:
            lines.append((f"(b) {name}: convolutions", f"{100 * v['conv_time_share']:.0f}% of the step's time",
                          f"at ~{100 * v['conv_roof_fraction']:.0f}% of roof"))
    solo, packed = tr["memsweep B=32"]["model_steps_per_s"], tr["memsweep packed K=4 B=32"]["model_steps_per_s"]
    lines.append(("(b) packed K=4 vs one run, model-steps/s", "", f"{packed / solo:.2f}x"))
    whole = ev["whole evaluation"]
    for part in [k for k in ev if k not in ("whole evaluation", "evaluations_per_run", "measured", "load_average")]:
        lines.append((f"(c) eval: {part}", f"{ev[part]:.3f} s", f"{100 * ev[part] / whole:.0f}% of an evaluation"))
    lines.append(("(c) eval: whole", f"{whole:.3f} s", ""))
    steps, n_eval = res["demo_steps"], ev["evaluations_per_run"]
    for label, sps in (("alone", solo), ("packed K=4", packed)):
        train_s = sum(steps) / sps
        share = n_eval * len(steps) * whole / (train_s + n_eval * len(steps) * whole)
        first = n_eval * whole / (steps[0] / sps + n_eval * whole)
        lines.append((f"(c) eval share of the demo's runs ({label})", f"{n_eval} evals/run",
                      f"{100 * share:.0f}% (n=16 run: {100 * first:.0f}%) (goal <=15%)"))
    return lines


def print_table(res: dict) -> None:
    lines = [("measure", "value", "ratio / goal")]
    if "training" in res and "evaluation" in res:
        lines += training_lines(res)
    if "sweep" in res and "textbook" in res:
        sw, tb = res["sweep"], res["textbook"]["seconds"]
        for name in SWEEP_VARIANTS:
            lines.append((f"(d) demo sweep: {name}", f"{sw[name]:.0f} s, {3600 * sw['runs'] / sw[name]:.0f} runs/h",
                          f"{tb / sw[name]:.2f}x textbook (goal 2.5x)"))
        for name in SWEEP_VARIANTS:
            runs = sw.get(f"{name}: runs") or []
            if runs:
                ev_s, tr_s = sum(r["eval_seconds"] for r in runs), sum(r["train_seconds"] for r in runs)
                per_n = ", ".join(f"n={r['n']} {100 * r['eval_seconds'] / (r['eval_seconds'] + r['train_seconds']):.0f}%"
                                  for r in runs)
                lines.append((f"(c) measured eval share: {name}", per_n,
                              f"{100 * ev_s / (ev_s + tr_s):.0f}% of the sweep (goal <=15%)"))
        lines.append(("(d) demo sweep: textbook, one after another", f"{tb:.0f} s, {3600 * sw['runs'] / tb:.0f} runs/h",
                      f"train.epochs={sw['epochs']}"))
    widths = [max(len(r[i]) for r in lines) for i in range(3)]
    for i, r in enumerate(lines):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    sys.exit(main())
