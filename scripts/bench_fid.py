"""Time the Frechet distance at Inception's 2,048 and CIFAR-10 pixels' 3,072 dimensions: clean-fid's
frechet_distance (scipy's sqrtm of S1 S2) vs memsweep's full route (float64 eigh) vs its low-rank route
(when there are fewer samples than dimensions: eigenvalues of F1 S2 F1^T when one set has its factor F1, of
C C^T, C = F1 F2^T, when both have), measured side by side in one run, with the SVD of C for comparison.

    python scripts/bench_fid.py [--dims 2048 3072] [--samples 2000 10000] [--device cpu] [--threads 2]
                                [--out FILE]

For each d and n: two sets of n correlated random features (float32, the second scaled and shifted), their
statistics by gaussian_stats, then the distance by each route (clean-fid always on the CPU, from the same
statistics). Prints each route's time, value, relative difference from clean-fid and speed-up over it;
`--out FILE` also writes the table as JSON.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch
from cleanfid.fid import frechet_distance as cleanfid_frechet_distance

from memsweep.metrics.fid import GaussianStats, frechet_distance, gaussian_stats


def features(n: int, d: int, device: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / d ** 0.5
    a = torch.randn(n, d, generator=g) @ mix
    b = 1.1 * torch.randn(n, d, generator=g) @ mix + 0.05
    return a.to(device), b.to(device)


def timed(fn, device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    value = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return value, time.perf_counter() - t0


def cleanfid(sa, sb) -> float:
    a, b = [[x.cpu().numpy() for x in s] for s in (sa, sb)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's sqrtm(disp=...) deprecation inside clean-fid
        return float(cleanfid_frechet_distance(a[0], a[1], b[0], b[1]))


def svd_route(sa, sb) -> float:
    """The two-factor route by an SVD of F_a F_b^T (no rounding floor; slower than eigvalsh of C C^T)."""
    diff = sa[0] - sb[0]
    tr = torch.linalg.svdvals(sa.factor @ sb.factor.T).sum()
    return float(diff @ diff + sa[1].trace() + sb[1].trace() - 2 * tr)


def case(d: int, n: int, device: str) -> list[dict]:
    a, b = features(n, d, device, seed=d + n)
    (sa, sb), stats_s = timed(lambda: (gaussian_stats(a), gaussian_stats(b)), device)
    full_a, full_b = GaussianStats(sa[0], sa[1]), GaussianStats(sb[0], sb[1])
    routes = [("clean-fid sqrtm", lambda: cleanfid(sa, sb)), ("eigh (full)", lambda: frechet_distance(full_a, full_b))]
    if sa.factor is not None:  # one side with a factor (samples vs a large reference set), then both
        routes += [("low-rank, 1 side", lambda: frechet_distance(sa, full_b)),
                   ("low-rank, 2 sides", lambda: frechet_distance(sa, sb)),
                   ("2 sides by SVD", lambda: svd_route(sa, sb))]
    rows = []
    for name, fn in routes:
        value, seconds = timed(fn, device)
        rows.append({"d": d, "n": n, "route": name, "seconds": seconds, "value": value, "stats_seconds": stats_s})
    ref = rows[0]
    for r in rows:
        r["rel_diff"] = abs(r["value"] - ref["value"]) / abs(ref["value"])
        r["speedup"] = ref["seconds"] / r["seconds"]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dims", type=int, nargs="+", default=[2048, 3072])
    p.add_argument("--samples", type=int, nargs="+", default=[2000, 10000])
    p.add_argument("--device", default="cpu", help="where gaussian_stats and memsweep's routes run")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", help="also write the table as JSON here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device={args.device}, {torch.get_num_threads()} torch threads (set OMP_NUM_THREADS for numpy's)")
    print(f"{'d':>5} {'n':>6} {'route':<17} {'seconds':>8} {'value':>20} {'rel diff':>9} {'speed-up':>8}")
    case(32, 16, args.device)  # warm-up: first calls load libraries
    rows = []
    for d in args.dims:
        for n in args.samples:
            for r in case(d, n, args.device):
                rows.append(r)
                print(f"{r['d']:>5} {r['n']:>6} {r['route']:<17} {r['seconds']:>8.2f} {r['value']:>20.10f} "
                      f"{r['rel_diff']:>9.1e} {r['speedup']:>7.1f}x", flush=True)
            print(f"{'':>12} (gaussian_stats of both sets: {rows[-1]['stats_seconds']:.2f} s)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": args.device, "threads": torch.get_num_threads(), "numpy": np.__version__,
                       "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
