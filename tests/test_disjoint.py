"""The disjoint-subsets test: pairing by offset and the similarity of paired samples on exact cases."""
import torch

from memsweep.report.summary import RunData
from memsweep.report.disjoint import offset_pairs, pair_similarity, subsets_overlap


def test_pairs_differ_only_in_the_offset():
    def run(rid, n, off, seed=0):
        return RunData(rid, "finished", {"data.n": n, "data.offset": off, "seed": seed}, {}, None)
    runs = [run("a", 16, 0), run("b", 16, 648), run("c", 64, 0), run("d", 64, 648), run("e", 64, 0, seed=1),
            run("f", 32, 0)]
    pairs = {(a.run_id, b.run_id) for _, a, b in offset_pairs(runs)}
    assert pairs == {("a", "b"), ("c", "d")}                  # e has no partner with seed 1, f none at n=32
    assert not subsets_overlap(16, 0, 648) and subsets_overlap(700, 0, 648) and not subsets_overlap(648, 0, 648)


def test_pair_similarity_exact_cases():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(12, 1, 4, 4, generator=g)
    same = pair_similarity(a, a.clone())
    assert same["pair_dist"] == 0 and same["same_fraction"] == 1.0 and same["unpaired_dist"] > 1
    shifted = pair_similarity(a, a.roll(1, 0))                # every sample's twin is another pair's
    assert shifted["same_fraction"] == 0.0 and shifted["pair_dist"] > 1
    d = torch.cdist(a.flatten(1), a.roll(1, 0).flatten(1))
    assert abs(shifted["pair_dist"] - d.diagonal().mean().item()) < 1e-6
    assert abs(shifted["unpaired_dist"] - d[~torch.eye(12, dtype=torch.bool)].mean().item()) < 1e-6
