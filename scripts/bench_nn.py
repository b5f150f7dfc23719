"""Time one CIFAR-10-sized nearest-neighbour search: 10,000 queries against 50,000 x 3,072 references.

    python scripts/bench_nn.py [--queries 10000] [--refs 50000] [--dim 3072] [--block 1024] [--ref-block 16384]

Random data in [-1, 1] (the scale of images), float32, on the CPU (or --device cuda). Prints the time and the
peak extra memory one block pair needs, and checks a few queries against a brute-force float64 search.
"""
from __future__ import annotations

import argparse
import time

import torch

from memsweep.metrics.memorization import nearest_neighbours


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--refs", type=int, default=50_000)
    p.add_argument("--dim", type=int, default=3072)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--block", type=int, default=1024)
    p.add_argument("--ref-block", type=int, default=16384)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    refs = (torch.rand(args.refs, args.dim, generator=g) * 2 - 1).to(args.device)
    queries = (torch.rand(args.queries, args.dim, generator=g) * 2 - 1).to(args.device)
    queries[:10] = refs[:10] + 0.01 * torch.randn(10, args.dim, generator=g).to(args.device)  # a few near-copies
    full_gb = args.queries * args.refs * 4 / 1e9
    block_mb = min(args.block, args.queries) * min(args.ref_block, args.refs) * 4 / 1e6
    print(f"{args.queries} queries x {args.refs} refs x {args.dim} dims, k={args.k}, device={args.device}, "
          f"{torch.get_num_threads()} threads; block {args.block} x {args.ref_block} "
          f"({block_mb:.0f} MB per distance block; the full matrix would be {full_gb:.1f} GB)")
    t0 = time.perf_counter()
    d, i = nearest_neighbours(queries, refs, k=args.k, block=args.block, ref_block=args.ref_block)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    print(f"search time: {seconds:.1f} s ({args.queries / seconds:.0f} queries/s)")
    # check 50 queries against brute force in float64
    check = torch.cat([torch.arange(10), torch.randint(10, args.queries, (40,), generator=g)])
    ref = torch.cdist(queries[check].double().cpu(), refs.double().cpu()).topk(args.k, largest=False)
    same = torch.equal(i[check].cpu(), ref.indices)
    err = (d[check].double().cpu() - ref.values).abs().max().item()
    print(f"brute-force check on {len(check)} queries: indices equal: {same}, max |distance error| {err:.2e}")


if __name__ == "__main__":
    main()
