"""The disjoint-subsets test of generalization (Kadkhodaie et al. 2024, "Generalization in diffusion models arises from geometry-adaptive harmonic representations").

Two runs identical but for their training images (a data.offset axis: [offset, offset + n) of the pool), each
sampled from the same initial noise (drawn from eval.noise_seed) with the same labels: at small n each model
copies its own training set and the paired samples differ; once the models generalize they produce nearly
the same image from the same noise. The samples come from the weights each run saved at its last evaluation
(checkpoints/eval_<step>.pt), with class labels 0, 1, 2, ... in turn, so both models get the same labels.
"""
from __future__ import annotations

import torch

from memsweep.data import datasets as data_mod
from memsweep.metrics.memorization import MEM_THRESHOLD, is_copy, nearest_neighbours
from memsweep.science import objective, networks
from memsweep.store.cache import Cache
from memsweep.store.run import RunStore
from memsweep.states import State

OFFSET_KEY = "data.offset"


def offset_pairs(runs: list) -> list[tuple[dict, object, object]]:
    """Pairs of runs (analysis.RunData) whose swept values differ only in data.offset: (the other axes, run
    with the smaller offset, run with the next offset). Groups with more offsets give one pair (the first
    two)."""
    groups: dict = {}
    for r in runs:
        if OFFSET_KEY not in r.axes:
            continue
        key = tuple(sorted((k, str(v)) for k, v in r.axes.items() if k != OFFSET_KEY))
        groups.setdefault(key, []).append(r)
    pairs = []
    for key, members in groups.items():
        by_offset = sorted({int(r.axes[OFFSET_KEY]): r for r in members}.items())
        if len(by_offset) >= 2:
            pairs.append((dict(key), by_offset[0][1], by_offset[1][1]))
    return pairs


def subsets_overlap(n: int, offset_a: int, offset_b: int) -> bool:
    """True if [offset_a, offset_a + n) and [offset_b, offset_b + n) share an image."""
    return abs(int(offset_a) - int(offset_b)) < int(n)


def pair_similarity(a: torch.Tensor, b: torch.Tensor, threshold: float = MEM_THRESHOLD) -> dict:
    """Similarity of paired samples a[i], b[i] (same noise, same label): their mean pixel L2 distance, the
    same between unpaired samples (a[i], b[j], j != i; what unrelated images give), and the fraction of pairs
    that are the same image by the 1/3 rule: b[i] is a[i]'s nearest sample of b and closer than 1/3 of the
    second-nearest."""
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    d = torch.cdist(fa, fb)
    paired = d.diagonal()
    off = d[~torch.eye(len(a), dtype=torch.bool)]
    others = d + torch.diag(torch.full((len(a),), float("inf"), dtype=d.dtype))
    same = is_copy(torch.stack([paired, others.min(1).values], 1), threshold)
    return {"pair_dist": paired.mean().item(), "unpaired_dist": off.mean().item(),
            "same_fraction": same.double().mean().item()}


@torch.no_grad()
def shared_samples(run_dir, num: int | None = None) -> tuple[torch.Tensor, dict]:
    """Samples of the weights a run saved at its last evaluation, from noise drawn from its eval.noise_seed and
    labels 0, 1, 2, ... in turn. Returns the samples and {step, train_x} (its training images)."""
    store = RunStore(run_dir)
    steps = store.eval_weight_steps()
    if not steps:
        raise FileNotFoundError(f"run {store.run_id}: no saved evaluation weights (eval.save_weights=false?)")
    cfg = store.read_config()
    ev = cfg.eval
    num = num or int(ev.num_samples)
    classes = data_mod.model_classes(cfg.data)   # 0: unconditional, every label is the null label 0
    model = networks.build(cfg.model, cfg.data.image_size, cfg.data.channels, classes)
    model.load_state_dict(store.load_eval_weights(steps[-1]))
    model.eval()
    g = torch.Generator().manual_seed(int(ev.noise_seed))
    noise = torch.randn((num, cfg.data.channels, cfg.data.image_size, cfg.data.image_size), generator=g)
    labels = torch.arange(num) % max(classes, 1)
    samples = objective.of_config(cfg).sample(model, noise, labels, int(ev.sampler_steps), ev.sampler,
                                                 ev.cfg_weight, classes).clamp(-1, 1)
    return samples, {"step": steps[-1], "train_x": data_mod.load(cfg.data, Cache(store.dir.parent.parent / "cache")).train_x, "n": int(cfg.data.n),
                     "offset": int(cfg.data.offset)}


def disjoint_table(runs: list, threshold: float = MEM_THRESHOLD) -> tuple[list[dict], dict]:
    """One row per pair (the other axes, n, offsets, the pair similarity, each model's mem_ratio on these
    samples against its own training set and against the other's) and, for the figure, a few samples of each
    pair. Pairs with an unfinished run or without saved weights are not compared (the reason under 'missing')."""
    rows, shown = [], {}
    for axes, ra, rb in offset_pairs(runs):
        unfinished = [r.run_id for r in (ra, rb) if r.state != State.FINISHED]
        if unfinished:   # compare the two models at the same point: the end of training
            rows.append({**axes, "run_a": ra.run_id, "run_b": rb.run_id,
                         "missing": f"not finished: {', '.join(unfinished)}"})
            continue
        try:
            a, ia = shared_samples(ra.dir)
            b, ib = shared_samples(rb.dir)
        except (FileNotFoundError, OSError) as e:
            rows.append({**axes, "run_a": ra.run_id, "run_b": rb.run_id, "missing": str(e)})
            continue
        row = {**axes, "run_a": ra.run_id, "run_b": rb.run_id, "n": ia["n"], "offset_a": ia["offset"],
               "offset_b": ib["offset"], "step_a": ia["step"], "step_b": ib["step"],
               "overlap": subsets_overlap(ia["n"], ia["offset"], ib["offset"]), **pair_similarity(a, b, threshold)}
        for name, s, own, other in (("a", a, ia["train_x"], ib["train_x"]), ("b", b, ib["train_x"], ia["train_x"])):
            for which, ref in (("own", own), ("other", other)):
                d, _ = nearest_neighbours(s, ref, k=2)
                row[f"mem_{name}_{which}"] = is_copy(d, threshold).double().mean().item()
        rows.append(row)
        shown[(ra.run_id, rb.run_id)] = (a[:10], b[:10])
    return rows, shown
