"""One evaluation at CIFAR-10's shape, by part: this code against an older one, measured side by side in one run.

    PYTHONPATH=src python scripts/bench_eval.py --baseline-src /tmp/base20/src [--out FILE] [--n 1024]
                                                [--samples 256] [--test 1000] [--threads 2]

The baseline: the src/ of the commit before the evaluation work of issue 20 (e.g. `git worktree add
/tmp/base20 3de6e88`). The data: CIFAR-10's python batches (data.datasets.write_cifar_batch) of a 10-class
Gaussian mixture of 3x32x32 images, written to a temporary folder. The run: model=c32 (random weights, away
from the zero-initialized start: sampling costs the same whatever the weights), the default eval settings
(pixels for SW and the Frechet distances, fd_train_test on) with eval.num_samples and data.test_size as given.

Each code runs in its own process (`--threads` torch threads): the Evaluator is built, then called twice; the
first call pays what is done once per data (reference statistics, fd_train_test, cached), the second is the
steady-state evaluation. The parts come from cProfile's cumulative time of the Evaluator's own methods, which
both codes have under the same names (fixed_loss, the field probe's distance, generate, mem_metrics,
sw_metrics, fd_metrics, and frechet_distance inside fd_metrics); this code's own clock (status.json's
eval_seconds_by_part) is printed beside them as a check.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from memsweep.data.datasets import write_cifar_batch

SRC = Path(__file__).resolve().parents[1] / "src"
PARTS = {"losses": "fixed_loss", "field_dist": "distance", "sampling": "generate", "mem_ratio": "mem_metrics",
         "sw": "sw_metrics", "fd (both splits)": "fd_metrics", "of which frechet_distance": "frechet_distance"}

CHILD = r"""
import cProfile, json, pstats, sys, time
import torch
from memsweep import config
from memsweep.data import datasets
from memsweep.eval.evaluator import Evaluator
from memsweep.science import unet

root, data_root, n, samples, test, threads = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
torch.set_num_threads(threads)
cfg = config.compose_run(["logger=none", "runtime.progress=false", f"paths.output_root={root}", "data=cifar10",
                          f"data.root={data_root}", f"data.n={n}", f"data.test_size={test}", "model=c32",
                          f"eval.num_samples={samples}"])
data = datasets.load(cfg.data)
torch.manual_seed(0)
model = unet.build(cfg.model, cfg.data.image_size, cfg.data.channels, data.num_classes)
with torch.no_grad():
    for p in model.parameters():
        p.add_(0.05 * torch.randn_like(p))
model.eval()
t = time.perf_counter()
ev = Evaluator(cfg, data, torch.device("cpu"))
out = {"build_s": time.perf_counter() - t}
names = json.loads(sys.argv[7])
for call in ("first", "second"):
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    ev(model, 1)
    prof.disable()
    out[f"{call}_s"] = time.perf_counter() - t
    stats = pstats.Stats(prof).stats
    parts = {}
    for part, fn in names.items():   # the outermost call of each method: cumulative time, not double counted
        parts[part] = max([v[3] for (file, _, name), v in stats.items() if name == fn and "memsweep" in file],
                          default=0.0)
    out[f"{call}_parts"] = parts
    out[f"{call}_clock"] = dict(getattr(ev, "seconds", {}))   # this code's own clock, summed over calls
print(json.dumps(out))
"""


def write_data(root: Path, n: int, test: int) -> Path:
    """CIFAR-10's python batches under root/cifar-10-batches-py (5 training batches, n images in all)."""
    rng = np.random.default_rng(0)
    means = rng.uniform(-0.8, 0.8, (10, 32, 32, 3)).astype(np.float32)

    def mixture(count):
        y = rng.integers(0, 10, count)
        x = means[y] + 0.35 * rng.standard_normal((count, 32, 32, 3), dtype=np.float32)
        return np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8), y

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    per = -(-n // 5)
    for i in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{i}", *mixture(per))
    write_cifar_batch(folder / "test_batch", *mixture(test))
    return root


def child(src: Path, label: str, tmp: Path, data_root: Path, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "WANDB_MODE": "disabled"}
    out = tmp / f"outputs_{label}"   # an output root (and reference cache) of its own
    p = subprocess.run([sys.executable, "-c", CHILD, str(out), str(data_root), str(args.n), str(args.samples),
                        str(args.test), str(args.threads), json.dumps(PARTS)], env=env, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"the evaluation under {src} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline-src", required=True, help="src/ of the older code")
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        tmp = Path(tmp)
        data_root = write_data(tmp / "data", args.n, args.test)
        res = {"settings": vars(args), "baseline": child(Path(args.baseline_src), "baseline", tmp, data_root, args),
               "this": child(SRC, "this", tmp, data_root, args)}
    old, new = res["baseline"], res["this"]
    print(f"one evaluation, c32 on CIFAR-shaped data (n = {args.n}, {args.samples} samples, {args.test} test "
          f"images, default eval settings, {args.threads} threads); seconds, from cProfile:")
    print(f"{'part':28s} {'old 1st':>8s} {'old 2nd':>8s} {'this 1st':>9s} {'this 2nd':>9s} {'old/this (2nd)':>15s}"
          "   this code's clock (both calls)")
    for part in PARTS:
        a1, a2, b1, b2 = (r[f"{c}_parts"][part] for r in (old, new) for c in ("first", "second"))
        ratio = f"{a2 / b2:.1f}x" if b2 > 0 else "-"
        clock = {"fd (both splits)": "fd"}.get(part, part)
        print(f"{part:28s} {a1:8.2f} {a2:8.2f} {b1:9.2f} {b2:9.2f} {ratio:>15s}   "
              f"{new['second_clock'].get(clock, float('nan')):.2f}")
    print(f"{'whole evaluation':28s} {old['first_s']:8.2f} {old['second_s']:8.2f} {new['first_s']:9.2f} "
          f"{new['second_s']:9.2f} {old['second_s'] / new['second_s']:14.1f}x")
    print(f"building the Evaluator (reference features): old {old['build_s']:.2f} s, this {new['build_s']:.2f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
