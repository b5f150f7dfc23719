"""Time `memsweep report` on a synthetic CIFAR-sized sweep: the first report, the second, one after a new
evaluation, and the old code's first report on the same store; and the cost of one evaluation by analysis.

    PYTHONPATH=src python scripts/bench_report.py [--quick] [--out bench_report.json] [--baseline-src DIR]

The store: CIFAR-10 python batches (data.datasets.write_cifar_batch) of 3x32x32 uint8 images drawn from a
10-class Gaussian mixture (structured like images: each class a mean image, so nearest neighbours mean
something), enough for the largest n; one finished run per (n, seed) with metrics.jsonl and saved evaluations
(samples/step_*.npz, uint8) in which a growing fraction of samples are near-copies of training images (within
a few levels), the rest new draws; and sweeps/bench/sweep.json listing the runs as a launched sweep would.
Default: n = 4,096, 16,384, 32,768, 3 evaluations of 10,000 samples, a 10,000-image test split (the CIFAR-10
scale of the issue: hours of CPU for the old code on a shared core). --quick: n = 1,024 and 4,096, two seeds
(runs of a seed axis share their training set), 2 evaluations of 2,000 samples, 2,000 test images: minutes.

Each report runs in its own process (`make_report`, with the peak RSS of it or of its figure workers from
getrusage; the time of its sample analyses apart), in rounds (--rounds, the fastest of each kept) of: the old code's first report
(--baseline-src: the src/ of the base commit, e.g. after `git worktree add /tmp/base17 4cf0b94`,
--baseline-src /tmp/base17/src), this code's first report (analysis/ and the last report's files removed) and its second (an unchanged
sweep: reads what the first stored); then one after a run gained an evaluation (a sweep still training: only
that one is computed). Then one evaluation of the largest run, by analysis, in the old code and in this one
(each in its own process, one torch thread: the analyses' own cost, without the threads this code's
report gives large data). The machine is shared: the ratios of timings in
one invocation are what to read.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from memsweep.data import datasets
from memsweep.data.datasets import write_cifar_batch
from memsweep.metrics import memorization, novelty
from memsweep.report import copies
from memsweep.store.run import RunStore

SRC = Path(__file__).resolve().parents[1] / "src"
SWEEP = "bench"
DIM = (32, 32, 3)   # NHWC, as CIFAR-10's batches


def mixture(rng, count: int, means: np.ndarray):
    """`count` uint8 images (NHWC) of the class mixture, and their labels."""
    labels = rng.integers(0, len(means), count)
    x = means[labels] + 0.35 * rng.standard_normal((count, *DIM), dtype=np.float32)
    return np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8), labels


def write_data(root: Path, pool: int, test: int, means, rng) -> tuple[Path, np.ndarray]:
    """CIFAR-10's python batches under root/cifar-10-batches-py; returns root and the training pool (NHWC)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-pool // 5)
    batches = [mixture(rng, per, means) for _ in range(5)]
    for i, (x, y) in enumerate(batches, 1):
        write_cifar_batch(folder / f"data_batch_{i}", x, y)
    write_cifar_batch(folder / "test_batch", *mixture(rng, test, means))
    return root, np.concatenate([x for x, _ in batches])


def metric_rows(steps, n: int) -> list[dict]:
    """Plausible curves (the report needs them; their values do not matter here)."""
    s = np.asarray(steps, float)
    mem = 1 / (1 + np.exp(-(np.log10(s) - np.log10(10.0 * n)) / 0.3))
    return [{"step": int(t), "train_loss": 1.0 - 0.3 * m, "test_loss": 1.0 + 0.1 * m, "loss_gap": 0.4 * m,
             "mem_ratio": float(m), "nn_dist": 3.0 * (1 - m), "sw_train": 0.2, "sw_test": 0.21,
             "train_loss_by_t": [1.0] * 10, "test_loss_by_t": [1.1] * 10} for t, m in zip(s, mem)]


def save_evaluation(run_dir: Path, step: int, train_u8: np.ndarray, count: int, copied: float, means, rng):
    """`count` samples (NCHW uint8, as RunStore.save_samples), a fraction `copied` of them training images
    moved by at most 3 levels, the rest new draws of the mixture."""
    x, labels = mixture(rng, count, means)
    k = int(round(copied * count))
    pick = rng.integers(0, len(train_u8), k)
    noise = rng.integers(-3, 4, (k, *DIM))
    x[:k] = np.clip(train_u8[pick].astype(np.int16) + noise, 0, 255).astype(np.uint8)
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(run_dir / "samples" / f"step_{step:09d}.npz", images=x.transpose(0, 3, 1, 2),
                        labels=labels)


def build_store(root: Path, ns, seeds, evals: int, count: int, test: int) -> list[str]:
    """The sweep's runs (finished, `evals` saved evaluations each) and sweep.json; returns the run ids."""
    rng = np.random.default_rng(0)
    means = rng.uniform(-0.8, 0.8, (10, *DIM)).astype(np.float32)
    data_root, pool = write_data(root / "data", max(ns), test, means, rng)
    entries = []
    for n in ns:
        for seed in seeds:
            run_id = f"bench{n:06d}s{seed}"
            d = root / "runs" / run_id
            steps = [int(x) for x in np.geomspace(100, 100 * n, 8)]
            cfg = {"data": {"name": "cifar10", "n": n, "offset": 0, "test_size": test, "image_size": 32,
                            "channels": 3, "num_classes": 10, "root": str(data_root), "download": False},
                   "model": {"name": "c128"}, "train": {"batch_size": 128, "total_steps": steps[-1]},
                   "optim": {"lr": 2e-4}, "seed": seed,
                   "eval": {"sw_features": "pixels", "fid_features": "pixels", "mem_threshold": 1 / 3}}
            d.mkdir(parents=True)
            (d / "config.yaml").write_text(yaml.safe_dump(cfg))
            (d / "status.json").write_text(json.dumps({"state": "finished", "step": steps[-1],
                                                       "total_steps": steps[-1], "parameters": 35_000_000}))
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metric_rows(steps, n)))
            for j, step in enumerate(steps[-evals:]):
                save_evaluation(d, step, pool[:n], count, 0.6 * j / max(1, evals - 1), means, rng)
            entries.append({"run_id": run_id, "axes": {"data.n": n, "seed": seed}})
    (root / "sweeps" / SWEEP).mkdir(parents=True)
    (root / "sweeps" / SWEEP / "sweep.json").write_text(json.dumps(
        {"name": SWEEP, "axes": ["data.n", "seed"], "spec": {"description": "bench_report's synthetic sweep"},
         "runs": entries}))
    return [e["run_id"] for e in entries]


REPORT_CHILD = """
import json, resource, sys, time
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import importlib.util
from memsweep.report import build
spent = [0.0]
# the module of the sample analyses: report.sample_analyses, report.samples in older code
analyses = importlib.import_module(next(m.name for m in (importlib.util.find_spec(f"memsweep.report.{n}")
                                                        for n in ("sample_analyses", "samples")) if m))
# the sample analyses alone, where the report calls them: report.beyond_paper, report.extra in older code
caller = next(m for m in (importlib.util.find_spec(f"memsweep.report.{n}") for n in ("beyond_paper", "extra")) if m)
caller = importlib.import_module(caller.name)
inner = caller.analyze_samples
def timed(*args, **kwargs):
    t = time.perf_counter()
    try:
        return inner(*args, **kwargs)
    finally:
        spent[0] += time.perf_counter() - t
caller.analyze_samples = timed
t = time.perf_counter()
build.make_report(Path(sys.argv[1]), sys.argv[2])
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "analyses_s": spent[0], "computed": dict(getattr(analyses, "COMPUTED", {})),
                  "peak_rss_mb": max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                                     resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024}))
"""


def _child(args: list[str], src: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}
    p = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"child {args[:2]} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def time_report(root: Path, src: Path) -> dict:
    return _child(["-c", REPORT_CHILD, str(root), SWEEP], src)


def _report(root: Path, src: Path, what: str) -> dict:
    r = time_report(root, src)
    print(f"{what} report: {r['seconds']:.1f} s (sample analyses {r['analyses_s']:.1f} s), computed {r['computed']}",
          flush=True)
    return r


def _timed(out: dict, name: str, func, *args):
    t = time.perf_counter()
    value = func(*args)
    out[name] = out.get(name, 0.0) + time.perf_counter() - t
    return value


def breakdown_old(samples, train, test) -> dict:
    """One evaluation as the base commit's report computes it (novelty_row, then copies; isolation and the
    copies' search once more at the last evaluation)."""
    t, cov = {}, getattr(novelty, "_coverage")
    radii = _timed(t, "real radii (once per data)", lambda: (novelty.knn_radii(train, 1),
                                                           novelty.knn_radii(train, 3), novelty.knn_radii(test, 3)))
    _timed(t, "isolation (last evaluation)", memorization.nearest_neighbours, train, train, 2)
    _timed(t, "vs train: NN ratio, authenticity", memorization.nearest_neighbours, samples, train, 2)
    for _ in range(2):   # precision_recall computed the samples' radii for each split
        s_radii = _timed(t, "samples' k-NN radii", novelty.knn_radii, samples, 3)
    _timed(t, "vs train: precision/recall", lambda: (cov(samples, train, radii[1]), cov(train, samples, s_radii)))
    _timed(t, "vs test: precision/recall", lambda: (cov(samples, test, radii[2]), cov(test, samples, s_radii)))
    _timed(t, "vs train: copies", copies.copy_assignments, samples, train)
    _timed(t, "copies again (last evaluation)", copies.copy_assignments, samples, train)
    return t


def breakdown_new(samples, train, test) -> dict:
    """One evaluation as this code computes it when nothing is stored yet."""
    t = {}
    refs = _timed(t, "real radii (once per data)", novelty.reference_radii, train, test)
    s_radii = _timed(t, "samples' k-NN radii", novelty.knn_radii, samples, 3)
    _timed(t, "vs train: NN ratio, authenticity, copies, precision/recall", novelty.scan, samples, train, 2,
           refs["train"], s_radii)
    _timed(t, "vs test: precision/recall", novelty.scan, samples, test, 0, refs["test"], s_radii)
    return t


def breakdown_child(run_dir: Path) -> None:
    """In a child process (this file run with --breakdown RUN_DIR, under either code's PYTHONPATH)."""
    store = RunStore(run_dir)
    data = datasets.load(store.read_config().data)
    samples, _ = store.load_samples(max(int(p.stem.split("_")[1]) for p in store.samples_dir.glob("*.npz")))
    torch.set_num_threads(1)   # the analyses' own cost (this code's report uses the cores on large data)
    func = breakdown_new if hasattr(novelty, "reference_radii") else breakdown_old
    t = func(samples, data.train_x, data.test_x)
    print(json.dumps({"seconds": t, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def add_evaluation(run_dir: Path) -> None:
    """One more saved evaluation (the last one's samples at a later step): the run is still training."""
    last = max(run_dir.glob("samples/step_*.npz"))
    step = int(last.stem.split("_")[1]) * 2
    shutil.copy(last, run_dir / "samples" / f"step_{step:09d}.npz")


def table(rows: list[tuple], head: tuple) -> str:
    w = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r))  # noqa: E731
    return "\n".join([line(head), *map(line, rows)])


def _ratio(a, b) -> str:
    return f"{a / b:.1f}x" if a and b else "-"


def report_rows(res: dict) -> list[tuple]:
    """report, whole s, of which sample analyses s, each against the old code's first report, peak RSS."""
    base, base_a = res.get("baseline_first_report_s"), res.get("baseline_analyses_s")
    rows = [("old code: first report", f"{base:.1f}", f"{base_a:.1f}", "", "",
             f"{res['peak_rss_mb']['baseline']:.0f}")] if base else []
    first, first_a = res["first_report_s"], res["first_analyses_s"]
    for name, key in (("first report", "first"), ("second report (unchanged)", "second"),
                      ("after one new evaluation", "incremental")):
        whole, part = res[f"{key}_report_s"], res[f"{key}_analyses_s"]
        vs = f"{_ratio(base, whole)} / {_ratio(base_a, part)}" if base else "-"
        rows.append((name, f"{whole:.1f}", f"{part:.1f}", vs, f"{_ratio(first, whole)} / {_ratio(first_a, part)}",
                     f"{res['peak_rss_mb'][key]:.0f}"))
    return rows


def breakdown_rows(old: dict | None, new: dict) -> list[tuple]:
    keys = list(dict.fromkeys([*(old or {}), *new]))
    rows = [(k, f"{old[k]:.2f}" if old and k in old else "", f"{new[k]:.2f}" if k in new else "") for k in keys]
    per_eval = lambda t: sum(v for k, v in t.items() if "once" not in k and "last" not in k)  # noqa: E731
    total = lambda t: sum(t.values())  # noqa: E731
    for name, f in (("per evaluation (excluding once-per-data and last-evaluation work)", per_eval),
                    ("one evaluation with everything", total)):
        rows.append((name, f"{f(old):.2f}" if old else "", f"{f(new):.2f}", _ratio(f(old), f(new)) if old else "-"))
    return [r if len(r) == 4 else (*r, "") for r in rows]


def run(args, root: Path) -> dict:
    ns, seeds, evals, count, test = ((1024, 4096), (0, 1), 2, 2000, 2000) if args.quick else \
        ((4096, 16384, 32768), (0,), 3, 10_000, 10_000)
    ns = tuple(args.n) if args.n else ns
    t0 = time.perf_counter()
    ids = build_store(root, ns, seeds, evals, count, test)
    res = {"store": {"n": list(ns), "seeds": list(seeds), "evaluations": evals, "samples": count, "test": test,
                     "runs": len(ids), "build_s": round(time.perf_counter() - t0, 1)}, "peak_rss_mb": {}}
    print(f"store: {len(ids)} runs (n = {', '.join(map(str, ns))}; seeds {list(seeds)}), {evals} evaluations of "
          f"{count} samples each, {test} test images, built in {res['store']['build_s']} s under {root}", flush=True)
    base = Path(args.baseline_src) if args.baseline_src else None
    rounds = []
    for k in range(args.rounds):   # interleaved, the minimum kept: the machine is shared and timings drift
        for p in (root / "runs").glob("*/analysis"):
            shutil.rmtree(p)   # a cold store for each round's first report: no stored analyses, no figures
        for p in (root / "sweeps" / SWEEP).iterdir():
            if p.name != "sweep.json":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        rounds.append({key: _report(root, src, f"round {k + 1}: {key}")
                       for key, src in (("baseline", base), ("first", SRC), ("second", SRC)) if src})
    add_evaluation(root / "runs" / ids[-1])
    rounds[-1]["incremental"] = _report(root, SRC, "after one new evaluation")
    res["rounds"] = rounds
    for key in ("baseline", "first", "second", "incremental"):
        got = [r[key] for r in rounds if key in r]
        if got:
            best = min(got, key=lambda r: r["seconds"])
            name = "baseline_first" if key == "baseline" else key
            res[f"{name}_report_s"], res[f"{key}_analyses_s"] = best["seconds"], best["analyses_s"]
            res["peak_rss_mb"][key] = max(r["peak_rss_mb"] for r in got)
            res[f"{key}_computed"] = best["computed"]
    largest = root / "runs" / ids[-1]
    script = str(Path(__file__).resolve())
    res["breakdown_old"] = _child([script, "--breakdown", str(largest)], base)["seconds"] if base else None
    res["breakdown_new"] = _child([script, "--breakdown", str(largest)], SRC)["seconds"]
    res["ratios"] = {"second_vs_first": res["first_report_s"] / res["second_report_s"],
                     "first_vs_baseline": (res["baseline_first_report_s"] / res["first_report_s"]) if base else None,
                     "analyses_first_vs_baseline": (res["baseline_analyses_s"] / res["first_analyses_s"]) if base
                     else None, "analyses_second_vs_first": res["first_analyses_s"] / res["second_analyses_s"]}
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smaller store: minutes, not hours")
    p.add_argument("--n", type=int, nargs="*", help="training-set sizes (default: by --quick)")
    p.add_argument("--baseline-src", default=None, help="src/ of the old code, timed on the same store")
    p.add_argument("--rounds", type=int, default=1, help="first and second reports (old code's too) in this many "
                   "interleaved rounds, the fastest of each kept (default 1)")
    p.add_argument("--store", default=None, help="build the store here (kept) instead of a temporary folder")
    p.add_argument("--out", default=None, help="write the results as JSON to this file")
    p.add_argument("--breakdown", default=None, help=argparse.SUPPRESS)   # the child's mode
    args = p.parse_args()
    if args.breakdown:
        return breakdown_child(Path(args.breakdown))
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        root = Path(args.store) if args.store else Path(tmp)
        res = run(args, root)
    print()
    print(table(report_rows(res), ("report", "whole s", "sample analyses s", "old first / this (whole / analyses)",
                                   "first / this", "peak RSS MB")))
    print()
    print(f"one evaluation of the largest run (n = {res['store']['n'][-1]}, {res['store']['samples']} samples), "
          "by analysis, one thread:")
    print(table(breakdown_rows(res["breakdown_old"], res["breakdown_new"]),
                ("analysis", "old s", "this s", "old / this")))
    print(f"\nsecond report {res['ratios']['second_vs_first']:.1f}x faster than the first"
          + (f"; first report {res['ratios']['first_vs_baseline']:.1f}x faster than the old code's"
             if res["ratios"]["first_vs_baseline"] else ""))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
