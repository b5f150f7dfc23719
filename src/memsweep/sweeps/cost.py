"""What a run costs before it runs: FLOPs of training and of each part of its evaluations, and GPU-hours.

FLOPs are those torch.utils.flop_counter counts (matrix products and convolutions, 2 per multiply-add;
normalizations and other elementwise work are not counted), of the run's network on the meta device: no
weights, no data (sweeps.flops). The network's forward FLOPs per sample F are counted once per architecture and
image shape, and kept with the other counts in the user's cache folder (Counts), so a dry run whose counts are
kept imports no torch. The GPUs' peaks: sweeps.gpus.

    training      3 F x batch x steps                   (forward + backward ~ 3 forwards)
    losses        2 x eval.loss_points x F               (the train and test loss triples)     } each evaluation
    field_dist    eval.field_points x len(field_t) x F   (+ the closed-form targets, once)     }
    sampling      samples x sampler evaluations x F      (x2 with guidance; eval.fid_samples beyond them)
    features      samples x the space's network FLOPs per image (inception, digitnet; pixels: none)
    mem_ratio, copy, sw, fd, kid, mifid: their distances (nearest neighbours 2 S n d, projections, covariances)
    reference features: the training and test subsets in each space, once per subset (cached, shared by a sweep)

GPU-hours: FLOPs / (the GPU's dense peak, sweeps.gpus, x an assumed utilization). Training runs at train.dtype's peak (bfloat16,
or TF32 for float32: PyTorch lets cuDNN's convolutions, most of a U-Net, use TF32 by default); evaluations run in
float32 (the TF32 peak). Real runs of small networks reach a fraction of the peak, hence the utilization.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from omegaconf import OmegaConf

from memsweep import lazy
from memsweep.data.sources import model_classes
from memsweep.science import objective_settings
from memsweep.science.network_spec import is_target, label
from memsweep.shipped_configs import complete
from memsweep.store import identity, user_cache
from memsweep.store.files import atomic_write_text, read_json
from memsweep.sweeps.gpus import peaks, rates
from memsweep.train.schedule import eval_steps

log = logging.getLogger("memsweep")

UTILIZATION = 0.3  # assumed fraction of the dense peak reached (small U-Nets at batch 128: typically 20-40%)
FD_CUBIC = 20  # FLOPs of one Frechet distance ~ 20 d^3 (a symmetric eigendecomposition and a few d x d products)
PARTS = ("losses", "field_dist", "sampling", "features", "mem_ratio", "copy", "sw", "fd", "kid", "mifid")
SPLIT = ("sampling", "losses", "field_dist")  # the parts a run on K GPUs splits over them (eval.shares)
# what the counts depend on besides their arguments: memsweep's networks, formulations and counting code
COUNTED_BY = ("sweeps/flops.py", "eval/features.py", "science")


def code_fingerprint() -> str:
    """A hash of the code that makes the counts (COUNTED_BY) and of torch's and torchvision's versions (their
    version.py, found without importing them; importlib.metadata took 7 ms to import): kept counts made by other
    code are counted again."""
    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for name in COUNTED_BY:
        path = package / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(file.read_bytes())
    for name in ("torch", "torchvision"):
        found = importlib.util.find_spec(name)
        for folder in (found.submodule_search_locations or []) if found else []:
            version = Path(folder) / "version.py"
            h.update(name.encode() + (version.read_bytes() if version.is_file() else b"?"))
    return h.hexdigest()[:16]


def counts_file() -> Path:
    """Where the FLOP counts are kept: flops.json in memsweep's folder of the user's cache (store.user_cache)."""
    return user_cache.folder() / "flops.json"


class Counts:
    """The FLOP counts a cost needs (a network's forward pass per architecture and image shape, a feature space's
    network, a sampler's network evaluations), kept between commands (counts_file) with the fingerprint of the
    code that made them: a dry run whose counts are kept loads no torch. A count not yet kept is made by
    sweeps.flops (torch, on the meta device) and added to the file when it can be written. A network of the
    user's (model._target_) is counted afresh in each process: its code is not memsweep's to fingerprint (and
    composing its run has loaded torch already)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fingerprint = code_fingerprint()
        kept = read_json(self.path, default={}) or {}
        self.kept: dict[str, list] = kept.get("counts", {}) if kept.get("fingerprint") == self.fingerprint else {}
        self.fresh: dict[str, list] = {}   # counts not to keep on disk
        self.made = 0   # counts made by this process (not read from the file)

    def get(self, kind: str, *args, keep: bool = True):
        """The count `kind` (a function of sweeps.flops) of `args` (plain data): (value, None), or (None, why)
        when it cannot be counted here (a network of the user's that cannot run on the meta device)."""
        key = json.dumps([kind, *args], sort_keys=True, default=str)
        store = self.kept if keep else self.fresh
        if key not in store:
            flops = lazy.load("memsweep.sweeps.flops")
            value = getattr(flops, kind)(*args)
            store[key] = [value, flops.uncounted(args[0]) if value is None and kind == "forward_flops" else None]
            self.made += 1
            if keep:
                self._write()
        return tuple(store[key])

    def _write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps({"fingerprint": self.fingerprint, "counts": self.kept}))
        except OSError as e:   # planning where the output root cannot be written: counted again next time
            log.debug("FLOP counts not kept in %s: %s", self.path, e)


@lru_cache(maxsize=None)
def counts_for(path: Path) -> Counts:
    """The counts kept in the file `path` (one instance per file and process)."""
    return Counts(path)


def forward_flops(cfg) -> tuple[int | None, str | None]:
    """FLOPs of one forward pass of the run's network for one sample, or (None, why) when its network cannot
    be run on the meta device."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    data = cfg.data
    return counts_for(counts_file()).get("forward_flops", model, int(data.image_size),
                                                      int(data.channels), int(model_classes(data) or 0),
                                                      keep=not is_target(cfg.model))


def why_unknown(cfg) -> str:
    """Why run_cost(cfg) is None, in words."""
    if cfg.data.get("image_size") is None or cfg.data.get("channels") is None:
        return "their image shape is read from data not on this machine"
    return (f"the FLOPs of model {label(cfg.model)} cannot be counted on the meta device: {forward_flops(cfg)[1]}")


def feature_dim(spec: str, pixels: int) -> int | None:
    return {"pixels": pixels, "inception": 2048, "digitnet": 64}.get(spec)


@dataclass
class Cost:
    """FLOPs of one run by part (every evaluation summed), and the reference features it needs (shared by the
    runs of a sweep on the same subsets: keyed so that a sweep counts each once)."""
    train: float
    parts: dict[str, float]
    evaluations: int
    forward: int
    dtype: str
    references: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    processes: int = 1   # runtime.processes: the GPUs the run holds (issue 31)

    @property
    def eval(self) -> float:
        return sum(self.parts.values()) + sum(self.references.values())

    @property
    def eval_alone(self) -> float:
        """The evaluation's FLOPs that rank 0 computes alone on K GPUs: all but the parts the ranks split
        (SPLIT: the samples, the loss triples, the probe points; eval.shares)."""
        return self.eval - sum(self.parts.get(k, 0.0) for k in SPLIT)

    def gpu_hours(self, gpu: str, utilization: float = UTILIZATION) -> float:
        """GPU-hours of the run on its K GPUs (runtime.processes): training and the SPLIT parts of each
        evaluation are split over them (perfect scaling assumed); the rest runs on rank 0 while the other K - 1 wait
        (train.distributed), so it counts K times."""
        one = hours(self.train, self.eval, self.dtype, gpu, utilization)
        return one + (self.processes - 1) * hours(0.0, self.eval_alone, "float32", gpu, utilization)

    def wall_hours(self, gpu: str, utilization: float = UTILIZATION) -> float:
        """The run's wall time on its K GPUs: training and the SPLIT parts in 1/K of one GPU's time, the rest on one."""
        alone = hours(0.0, self.eval_alone, "float32", gpu, utilization)
        return (hours(self.train, self.eval, self.dtype, gpu, utilization) - alone) / self.processes + alone


def run_cost(cfg) -> Cost | None:
    """The cost of a composed run; None when the image shape is unknown here (data=npz not readable) or its
    network's FLOPs cannot be counted (why_unknown)."""
    # plain containers: a 1,000-run sweep reads them fast (OmegaConf's attribute access is ~0.1 ms a key)
    cfg = complete(cfg)   # settings a lab's eval config may lack, from configs/eval/default.yaml
    data, ev, train = (OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "eval", "train"))
    if data.get("image_size") is None or data.get("channels") is None:
        return None
    size, ch = int(data["image_size"]), int(data["channels"])
    pixels, n = ch * size * size, int(data["n"])
    test = min(int(data["test_size"]), 10000) if data["name"] == "cifar10" else int(data["test_size"])
    refs = {"train": n, "test": test}
    F = forward_flops(cfg)[0]
    if F is None:
        return None
    counts = counts_for(counts_file())
    steps = int(train["total_steps"])
    evals = len(eval_steps(steps, int(ev["first_step"]), int(ev["num_points"])))
    S, notes = int(ev["num_samples"]), []
    nfe = counts.get("sampler_evaluations", objective_settings.block(cfg), str(ev["sampler"]),
                     int(ev["sampler_steps"]))[0]
    spaces = {k: str(ev[f"{k}_features"]) for k in ("copy", "sw", "fid", "kid", "mifid")}
    count = ev["fid_samples"]  # samples of each Frechet distance, per split (Evaluator.sample_count)
    fid = {s: S if count is None else refs[s] if str(count) in ("reference", "ref") else int(count) for s in refs}
    probes = int(ev["field_points"]) * len(ev["field_t"])

    per = dict.fromkeys(PARTS, 0.0)   # FLOPs of one evaluation by part
    per["losses"] = 2 * int(ev["loss_points"]) * F
    per["field_dist"] = probes * F
    per["sampling"] = max(S, *fid.values()) if spaces["fid"] != "none" else S
    per["sampling"] *= nfe * F * (2 if ev["cfg_weight"] else 1)   # guidance: a second, unconditional prediction
    per["mem_ratio"] = 2 * S * n * pixels
    memo: set[tuple[str, int]] = set()   # the samples' features, once per (space, count) and evaluation

    def features(spec: str, k: int, shared: bool = True) -> int | None:
        """Counts the features of k samples in `spec`; their dimension, None if unknown here."""
        flops, dim = counts.get("feature_flops", spec)[0], feature_dim(spec, pixels)
        if flops is None or dim is None:
            notes.append(f"{spec}: its network's FLOPs are unknown here (not counted)")
            return None
        if not shared or (spec, k) not in memo:
            per["features"] += k * flops
            memo.add((spec, k))
        return dim

    references: dict[str, float] = {}
    data_id = {k: v for k, v in data.items() if k not in identity.NOT_IDENTITY["data"]}
    test_id = {k: v for k, v in data_id.items() if k not in ("n", "offset")}  # the test subset is the same for any n

    def reference(spec: str, splits=("train", "test")) -> None:
        for split in splits:
            key = json.dumps([data_id if split == "train" else test_id, spec, split], sort_keys=True, default=str)
            references[key] = refs[split] * (counts.get("feature_flops", spec)[0] or 0)

    if spaces["copy"] != "none" and (d := features(spaces["copy"], S)):
        per["copy"] = 2 * S * n * d
        reference(spaces["copy"], ("train",))
    if spaces["sw"] != "none" and (d := features(spaces["sw"], S)):
        per["sw"] = 2 * (S + n + test) * d * int(ev["sw_projections"])
        reference(spaces["sw"])
    if spaces["fid"] != "none":
        dims = [features(spaces["fid"], k) for k in set(fid.values())]
        if dims[0]:  # covariances of the samples, then one Frechet distance per split
            per["fd"] = sum(2 * k * dims[0] ** 2 for k in set(fid.values())) + 2 * FD_CUBIC * dims[0] ** 3
            reference(spaces["fid"])
    for kind in ("kid", "mifid"):
        if spaces[kind] == "none":
            continue
        d = [features(spaces[kind], S, shared=False) for _ in refs][0]  # computed afresh for each split (Evaluator)
        if not d:
            continue
        if kind == "kid":   # three m x m kernel matrices per subset
            per["kid"] = sum(int(ev["kid_subsets"]) * 3 * 2 * min(int(ev["kid_subset_size"]), S, r) ** 2 * d
                             for r in refs.values())
        else:               # cosine distances to the split, then a Frechet distance
            per["mifid"] = sum(2 * S * r * d + 2 * S * d * d + FD_CUBIC * d ** 3 for r in refs.values())
        reference(spaces[kind])
    parts = {k: v * evals for k, v in per.items()}
    parts["field_dist"] += 4 * probes * n * pixels  # the closed-form targets of the probe points, once per run
    return Cost(3 * F * int(train["batch_size"]) * steps, parts, evals, F, str(train["dtype"]), references,
                list(dict.fromkeys(notes)), int(cfg.runtime.processes))


def hours(train: float, evaluation: float, dtype: str, gpu: str, utilization: float = UTILIZATION) -> float:
    """Hours of one GPU for `train` FLOPs at train.dtype and `evaluation` FLOPs in float32, at `utilization` of
    the dense peak."""
    bf16, fp32 = rates(gpu)
    return (train / (bf16 if dtype == "bfloat16" else fp32) + evaluation / fp32) / utilization / 3600


def total(costs: list[Cost]) -> tuple[dict[str, float], dict[str, float]]:
    """A sweep's FLOPs: ({train.dtype: training FLOPs}, {part: evaluation FLOPs}), each reference subset's features
    counted once (they are cached and shared by the sweep's runs)."""
    train: dict[str, float] = {}
    parts = dict.fromkeys(PARTS, 0.0)
    references: dict[str, float] = {}
    for c in costs:
        train[c.dtype] = train.get(c.dtype, 0.0) + c.train
        for k, v in c.parts.items():
            parts[k] += v
        references.update(c.references)
    parts["references"] = sum(references.values())
    return train, parts


def describe_gpu(gpu: str, utilization: float) -> str:
    bf16, tf32, fp32 = peaks(gpu)
    shown = ", ".join(f"{name} {v:g}" for name, v in (("bf16", bf16), ("tf32", tf32), ("fp32", fp32)) if v)
    return (f"{gpu}: dense peak TFLOP/s {shown}; training at train.dtype's peak (float32 via TF32), evaluations at "
            f"TF32's; assumed utilization {utilization:.0%} of the peak")
