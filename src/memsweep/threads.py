"""How many CPU threads torch may use for a piece of work: a bottom layer (the report's analyses and probes)."""
from __future__ import annotations

import contextlib

import torch

# Elements (rows x values) of the reference set below which one thread is fastest: the distance blocks of a
# small set (digits: 1,797 x 64) are too small to share, and threads fight the other processes of a shared
# CPU. Above it the blocked products scale with threads: 1,024 CIFAR-shaped images (3.1M elements) already
# give one evaluation (2,000 samples against them and 2,000 test images) 1.7-2.1x faster on 2 threads than on
# one here.
SMALL_WORK = 1 << 20


def threads_for(elements: int) -> int:
    """One thread for work on a small set, torch's default (the cores) for a large one."""
    return 1 if elements < SMALL_WORK else torch.get_num_threads()


@contextlib.contextmanager
def torch_threads(count: int):
    """torch's intra-op threads set to `count` inside the block, restored after."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(count)))
    try:
        yield
    finally:
        torch.set_num_threads(old)
