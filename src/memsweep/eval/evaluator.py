"""One evaluation of a model: the row appended to metrics.jsonl, and a sample grid.

Everything random here (loss noise and t, initial noise and labels for samples, SW projections, bootstrap
resamples) is drawn from eval.noise_seed (and eval.sw_seed), so two evaluations differ only by the model.

Metric keys. A metric's identity is its kind, its feature space, its threshold and its number of generated
samples; the key says all of them, except the values the run's config sets (eval.num_samples,
eval.mem_threshold, eval.copy_threshold), which are left implicit:

    mem_ratio[_<space>][_t<threshold>][_s<count>]    1/3 nearest-neighbour rule (pixel L2 unless a space is named)
    copy_<space>[_t<threshold>][_s<count>]           copy detection: fraction with max cosine > threshold
    fd_<space>_<train|test>[_s<count>]               Frechet distance to the training / test subset
    fd_<space>_train_test                            Frechet distance between the training and test subsets
    sw_<space>_<train|test>[_s<count>]               sliced Wasserstein-2 distance
    kid_<space>_<train|test>[_s<count>][_std]        kernel inception distance (unbiased MMD^2), its std over subsets
    mifid_<space>_<train|test>[_t<epsilon>][_s<count>]  memorization-informed FID (epsilon: eval.mifid_epsilon)

with `_lo` / `_hi` (95% percentile-bootstrap interval over the samples) after mem_ratio* and copy_* keys, and
`_sim` (mean maximum cosine similarity) after copy_* keys. <space> is pixels, inception (fd_inception_* is
the FID), digitnet, or a TorchScript model's name (kid_inception_* is the usual KID); <count> is a number of samples or `ref` (as many as the
reference split has). Examples: fd_inception_test_sref (FID against the test set with as many samples as it
has), copy_sscd, copy_sscd_lo, mem_ratio_s10000.

Kept for existing readers: `mem_ratio`, `nn_dist` (pixel L2 to the nearest training image), and the aliases
`sw_train`, `sw_test` (sw in eval.sw_features), `fid_train`, `fid_test`, `fid_train_test` (fd in
eval.fid_features, with eval.fid_samples samples).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from memsweep import lazy
from memsweep.eval import features
from memsweep.eval.references import References
from memsweep.eval.shares import gathered, rank_and_size
from memsweep.eval.feature_specs import space_name
from memsweep.metrics.bootstrap import bootstrap_ci
from memsweep.metrics.copy_detection import max_cosine
from memsweep.metrics.field import FieldProbe
from memsweep.metrics.fixed_inputs import fixed_inputs, sample_labels
from memsweep.metrics.fid import frechet_distance, gaussian_stats
from memsweep.metrics.kid import kid
from memsweep.metrics.loss import FixedLossBatch, loss_by_t, per_sample_loss
from memsweep.metrics.memorization import is_copy, nearest_neighbours
from memsweep.metrics.mifid import mifid
from memsweep.metrics.sliced_wasserstein import projections, sliced_wasserstein
from memsweep.science import objective
from memsweep.store import cache
from memsweep.shipped_configs import complete
from memsweep.store.files import atomic_write

log = logging.getLogger("memsweep")

KINDS = ("mem", "copy", "fd", "sw", "kid", "mifid")
SPLITS = ("train", "test")
EXTRA_NOISE_CHUNK = 1024  # noise of samples beyond eval.num_samples comes in chunks seeded by their index


def _fmt(x: float) -> str:
    return f"{x:g}"


def metric_key(kind: str, space: str = "pixels", split: str | None = None, threshold: float | None = None,
               samples=None, stat: str | None = None) -> str:
    """The key of a metric (see the module docstring). `threshold` and `samples` are given only when they
    differ from the run's config (`samples` a count or "ref")."""
    if kind == "mem":
        key = "mem_ratio" + ("" if space == "pixels" else f"_{space}")
    elif kind == "copy":
        key = f"copy_{space}"
    elif kind in ("fd", "sw", "kid", "mifid"):
        key = f"{kind}_{space}_{split}"
    else:
        raise ValueError(f"unknown metric kind {kind!r} (use {', '.join(KINDS)})")
    if threshold is not None and kind in ("mem", "copy", "mifid"):
        key += f"_t{_fmt(threshold)}"
    if samples is not None and split != "train_test":
        key += f"_s{samples}"
    return key + (f"_{stat}" if stat else "")


def sample_tag(num_samples: int, count):
    """What a key says about a number of samples: nothing if it is the run's eval.num_samples."""
    if count in (None, "null"):
        return None
    if str(count) in ("reference", "ref"):
        return "ref"
    return None if int(count) == int(num_samples) else int(count)


def threshold_tag(configured: float, threshold: float | None):
    """What a key says about a threshold: nothing if it is the run's configured one."""
    return None if threshold is None or math.isclose(float(threshold), float(configured)) else float(threshold)


def keys_of(ev_cfg, kind: str, spec: str, threshold: float | None = None, count=None,
            train_test: bool = True) -> list[str]:
    """The keys a metric writes (the Evaluator's *_metrics methods write exactly these)."""
    name, tag = space_name(spec), sample_tag(ev_cfg.num_samples, count)
    boot = ["lo", "hi"] if int(ev_cfg.bootstrap) else []
    if kind == "mem":
        key = metric_key("mem", name, threshold=threshold_tag(ev_cfg.mem_threshold, threshold), samples=tag)
        return [key] + [f"{key}_{s}" for s in boot]
    if kind == "copy":
        key = metric_key("copy", name, threshold=threshold_tag(ev_cfg.copy_threshold, threshold),
                         samples=tag)
        return [key, f"{key}_sim"] + [f"{key}_{s}" for s in boot]
    if kind == "kid":
        return [metric_key("kid", name, split, samples=tag, stat=stat) for split in SPLITS for stat in (None, "std")]
    if kind == "mifid":
        eps = threshold_tag(ev_cfg.mifid_epsilon, threshold)
        return [metric_key("mifid", name, split, threshold=eps, samples=tag) for split in SPLITS]
    keys = [metric_key(kind, name, split, samples=tag) for split in SPLITS]
    if kind == "fd" and train_test:
        keys.append(metric_key("fd", name, "train_test"))
    return keys


class Evaluator:
    def __init__(self, cfg, data, device, eager: bool = True):
        """`eager`: compute (or read from the cache) the reference features of the configured spaces now,
        rather than at the first evaluation."""
        cfg = complete(cfg)   # the settings a stored config lacks, from configs/eval/default.yaml
        ev = cfg.eval
        self.run_cfg = cfg
        self.cfg, self.data, self.device = ev, data, device
        self.formulation = objective.of_config(cfg)
        self.train_batch, self.test_batch, self.sample_noise = fixed_inputs(data, ev)
        self.sample_noise = self.sample_noise.to(device)
        # sample labels follow the training set's labels, in order (its class proportions)
        self.sample_labels = self.labels(0, ev.num_samples)
        self.null_label = data.num_classes
        self.cache = cache.for_config(cfg)
        self.refs = References(data, cfg.data, self.cache, device)
        self._spaces: dict[str, features.FeatureSpace | None] = {}
        self._proj: dict[int, torch.Tensor] = {}
        self.seconds: dict[str, float] = {}   # by part, summed over this process's evaluations
        self._memo_of, self._memo = None, {}   # features of the current samples (features())
        self.sw_space = self.space(ev.sw_features)
        self.fid_space = self.space(ev.fid_features)
        self.copy_space = self.space(ev.copy_features)
        self.kid_space = self.space(ev.kid_features)
        self.mifid_space = self.space(ev.mifid_features)
        if eager:
            if self.sw_space is not None:
                for split in SPLITS:
                    self.refs.features(self.sw_space, split)
            if self.fid_space is not None:
                for split in SPLITS:
                    self.refs.stats(self.fid_space, split)
                if ev.fd_train_test:
                    self.refs.fd_train_test(self.fid_space)
            if self.copy_space is not None:
                self.refs.features(self.copy_space, "train")
            for space in (self.kid_space, self.mifid_space):
                for split in SPLITS if space is not None else ():
                    self.refs.features(space, split)
        # distance of the learned field to the closed-form memorizer on fixed probe points (0 points: off)
        self.field_probe = (FieldProbe.make(self.formulation, data, ev.field_points, ev.field_t, ev.noise_seed)
                            if ev.field_points else None)

    # -- settings ------------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> int:
        return int(self.cfg.bootstrap)

    @property
    def block(self) -> int:
        return int(self.cfg.nn_block)

    def space(self, spec, required: bool = False) -> features.FeatureSpace | None:
        """The feature space of a spec, built once; None (with a warning) if unavailable here, or if `none`."""
        spec = str(spec)
        if spec == "none":
            return None
        if spec not in self._spaces:
            try:
                self._spaces[spec] = features.build(spec, self.device, self.cfg.inception_path,
                                                    data_cfg=self.run_cfg.data, cache=self.cache)
            except features.FeatureUnavailable as e:
                if required:
                    raise
                log.warning("%s: no metric in this space is computed or logged. %s", spec, e)
                self._spaces[spec] = None
        if required and self._spaces[spec] is None:
            raise features.FeatureUnavailable(f"feature space {spec} is unavailable here (see the warning above)")
        return self._spaces[spec]

    def projections(self, dim: int) -> torch.Tensor:
        if dim not in self._proj:
            self._proj[dim] = projections(dim, self.cfg.sw_projections, seed=self.cfg.sw_seed).to(self.device)
        return self._proj[dim]

    def sample_count(self, count, split: str = "train") -> int:
        """None -> eval.num_samples; "reference" -> the size of the reference split; else the count."""
        if count in (None, "null"):
            return int(self.cfg.num_samples)
        if str(count) in ("reference", "ref"):
            return len(self.refs.images[split])
        return int(count)

    def sample_tag(self, count):
        return sample_tag(self.cfg.num_samples, count)

    # -- generated samples -----------------------------------------------------------------------------
    def labels(self, start: int, count: int) -> torch.Tensor:
        return sample_labels(self.data.train_y, start, count)

    def noise(self, start: int, count: int) -> torch.Tensor:
        """Initial noise of samples start..start+count-1. The first eval.num_samples are the fixed noise of
        every evaluation; later ones come in chunks seeded by (eval.noise_seed, chunk index), so sample i has
        the same noise whatever the count asked for."""
        num, shape = int(self.cfg.num_samples), tuple(self.data.train_x.shape[1:])
        parts = []
        if start < num:
            parts.append(self.sample_noise[start:min(start + count, num)])
        first, stop = max(start, num), start + count
        for chunk in range((first - num) // EXTRA_NOISE_CHUNK, math.ceil((stop - num) / EXTRA_NOISE_CHUNK)
                           if stop > num else 0):
            lo = num + chunk * EXTRA_NOISE_CHUNK
            seed = int(hashlib.sha256(f"{self.cfg.noise_seed}:extra:{chunk}".encode()).hexdigest()[:15], 16)
            z = torch.randn((EXTRA_NOISE_CHUNK, *shape), generator=torch.Generator().manual_seed(seed))
            parts.append(z[max(first, lo) - lo:min(stop, lo + EXTRA_NOISE_CHUNK) - lo].to(self.device))
        return torch.cat(parts) if parts else self.sample_noise[:0]

    @torch.inference_mode()  # lighter than no_grad: sampling is most of an evaluation's time
    def generate(self, model, count: int | None = None, start: int = 0) -> torch.Tensor:
        """Samples start..start+count-1 (default: the eval.num_samples samples of every evaluation), with the
        fixed noise and labels above, in batches of at least eval.num_samples. On K processes each rank samples
        a contiguous 1/K of them, gathered in order on every rank (eval.shares: sample i has noise i either
        way, so the samples are one process's up to the order of float sums)."""
        count = int(self.cfg.num_samples) if count is None else int(count)
        return gathered(count, lambda lo, hi: self._generate(model, hi - lo, start + lo), self.sample_noise)

    def fixed_loss(self, model, batch: FixedLossBatch) -> tuple[float, list[float]]:
        """The loss on the fixed triples, and by bin of t (metrics.loss.fixed_loss); on K processes each rank
        computes 1/K of the triples."""
        losses = gathered(len(batch.t), lambda lo, hi: per_sample_loss(self.formulation, model, batch.rows(lo, hi)),
                          batch.t)
        return loss_by_t(losses, batch.t, self.cfg.t_bins)

    def field_distance(self, model) -> tuple[float, list[float]]:
        """The field probe's distance; on K processes each rank predicts at 1/K of the probe points."""
        probe = self.field_probe
        return probe.distance_of(gathered(len(probe.t), lambda lo, hi: probe.errors(model, lo, hi),
                                          probe.t.new_zeros((0, 2))))

    def _generate(self, model, count: int, start: int) -> torch.Tensor:
        batch = max(int(self.cfg.num_samples), 1024)
        out = []
        for s in range(start, start + count, batch):
            c = min(batch, start + count - s)
            x0 = self.sample_noise if (s, c) == (0, int(self.cfg.num_samples)) else self.noise(s, c)
            labels = self.sample_labels if (s, c) == (0, int(self.cfg.num_samples)) else self.labels(s, c)
            out.append(self.formulation.sample(model, x0, labels, self.cfg.sampler_steps, self.cfg.sampler,
                                               self.cfg.cfg_weight, self.null_label).clamp(-1, 1))
        return torch.cat(out) if out else self.sample_noise[:0]

    # -- metrics of a set of samples -------------------------------------------------------------------
    def features(self, space: features.FeatureSpace, samples: torch.Tensor, count: int) -> torch.Tensor:
        """space(samples[:count]) on the evaluation's device, computed once per evaluation and shared by every
        metric in that space (e.g. SW and FID both in Inception's space). The memo holds the last samples seen:
        a new set of samples (the next evaluation) starts it afresh."""
        if self._memo_of is not samples:
            self._memo_of, self._memo = samples, {}
        key = (id(space), count)   # spaces are built once per spec (self.space)
        if key not in self._memo:
            self._memo[key] = space(samples[:count]).to(self.device)
        return self._memo[key]

    def _interval(self, values: torch.Tensor) -> tuple[float, float]:
        return bootstrap_ci(values, self.bootstrap, seed=int(self.cfg.noise_seed))

    def mem_metrics(self, samples, spec: str = "pixels", threshold: float | None = None, count=None):
        """The 1/3 rule (or `threshold`) in a space: ({key: value}, index of each sample's nearest training
        image). `threshold` None means eval.mem_threshold; `count` as in sample_count."""
        space = self.space(spec, required=True)
        thr = float(self.cfg.mem_threshold if threshold is None else threshold)
        s = samples[:self.sample_count(count, "train")]
        refs = self.data.train_x if space.cache_features is False else self.refs.features(space, "train")
        dist, idx = nearest_neighbours(self.features(space, samples, len(s)), refs, k=2, block=self.block)
        memorized = is_copy(dist, thr).float()
        key = metric_key("mem", space.name, threshold=threshold_tag(self.cfg.mem_threshold, thr),
                         samples=self.sample_tag(count))
        row = {key: memorized.mean().item()}
        if self.bootstrap:
            row[f"{key}_lo"], row[f"{key}_hi"] = self._interval(memorized)
        return row, dist, idx[:, 0]

    def copy_metrics(self, samples, spec: str, threshold: float | None = None, count=None) -> dict:
        space = self.space(spec, required=True)
        default = float(self.cfg.copy_threshold)
        thr = default if threshold is None else float(threshold)
        s = samples[:self.sample_count(count, "train")]
        sim, _ = max_cosine(self.features(space, samples, len(s)), self.refs.features(space, "train"),
                            block=self.block)
        copied = (sim > thr).float()
        key = metric_key("copy", space.name, threshold=threshold_tag(default, thr), samples=self.sample_tag(count))
        row = {key: copied.mean().item(), f"{key}_sim": sim.mean().item()}
        if self.bootstrap:
            row[f"{key}_lo"], row[f"{key}_hi"] = self._interval(copied)
        return row

    def fd_metrics(self, samples, spec: str, count=None, train_test: bool = True) -> dict:
        space = self.space(spec, required=True)
        row, by_count = {}, {}
        for split in SPLITS:
            k = self.sample_count(count, split)
            if k not in by_count:
                by_count[k] = gaussian_stats(self.features(space, samples, k))
            row[metric_key("fd", space.name, split, samples=self.sample_tag(count))] = frechet_distance(
                by_count[k], self.refs.stats(space, split))
        if train_test:
            row[metric_key("fd", space.name, "train_test")] = self.refs.fd_train_test(space)
        return row

    def sw_metrics(self, samples, spec: str, count=None) -> dict:
        space = self.space(spec, required=True)
        row, by_count = {}, {}
        for split in SPLITS:
            k = self.sample_count(count, split)
            if k not in by_count:
                by_count[k] = self.features(space, samples, k)
            refs = self.refs.features(space, split)
            row[metric_key("sw", space.name, split, samples=self.sample_tag(count))] = sliced_wasserstein(
                by_count[k], refs, self.projections(refs.shape[1]))
        return row

    def kid_metrics(self, samples, spec: str, count=None) -> dict:
        """KID (Bińkowski et al. 2018) to each split: eval.kid_subsets subsets of eval.kid_subset_size (at most
        the smaller set), drawn from eval.noise_seed."""
        space, ev = self.space(spec, required=True), self.cfg
        row = {}
        for split in SPLITS:
            fake = space(samples[:self.sample_count(count, split)])
            key = metric_key("kid", space.name, split, samples=self.sample_tag(count))
            row[key], row[f"{key}_std"] = kid(self.refs.features(space, split), fake, ev.kid_subsets,
                                              ev.kid_subset_size, seed=int(ev.noise_seed))
        return row

    def mifid_metrics(self, samples, spec: str, count=None, epsilon: float | None = None) -> dict:
        """MiFID (Bai et al. 2021) to each split; `epsilon` None means eval.mifid_epsilon (0.1)."""
        space = self.space(spec, required=True)
        default = float(self.cfg.mifid_epsilon)
        eps = default if epsilon is None else float(epsilon)
        row = {}
        for split in SPLITS:
            fake = space(samples[:self.sample_count(count, split)])
            key = metric_key("mifid", space.name, split, threshold=threshold_tag(default, eps),
                             samples=self.sample_tag(count))
            row[key] = mifid(self.refs.features(space, split), fake, eps)
        return row

    def samples_needed(self, kind: str, count=None) -> int:
        """How many generated samples a metric needs (the largest over the splits it compares with)."""
        splits = ("train",) if kind in ("mem", "copy") else SPLITS
        return max(self.sample_count(count, s) for s in splits)

    # -- one evaluation --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def timed(self, part: str):
        """Adds the seconds of a part of the evaluation to self.seconds[part] (status.json's
        eval_seconds_by_part). On a GPU the clock waits for the device, so a part is not billed to the next."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        started = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - started

    @torch.no_grad()
    def __call__(self, model, step: int) -> tuple[dict, torch.Tensor, torch.Tensor] | None:
        """The metrics row, the generated samples, and the index of each sample's nearest training image. On K
        processes every rank calls it: the losses, the probe and the samples are split over the ranks and
        gathered (eval.shares), then rank 0 alone computes the metrics; the other ranks get None."""
        was_training = model.training
        model.eval()
        ev = self.cfg
        row = {"step": step}
        with self.timed("losses"):
            row["train_loss"], row["train_loss_by_t"] = self.fixed_loss(model, self.train_batch)
            row["test_loss"], row["test_loss_by_t"] = self.fixed_loss(model, self.test_batch)
            row["loss_gap"] = row["test_loss"] - row["train_loss"]
        if self.field_probe is not None:
            with self.timed("field_dist"):
                row["field_dist"], row["field_dist_by_t"] = self.field_distance(model)
        with self.timed("sampling"):
            samples = self.generate(model)
            more = self.fid_samples(model, samples) if self.fid_space is not None else samples
        if rank_and_size()[0] > 0:
            model.train(was_training)
            return None
        with self.timed("mem_ratio"):
            mem, dist, nn_idx = self.mem_metrics(samples)
            row.update(mem)
            row["nn_dist"] = dist[:, 0].mean().item()  # mean pixel L2 to the nearest training image
        if self.copy_space is not None:
            with self.timed("copy"):
                row.update(self.copy_metrics(samples, ev.copy_features))
        if self.sw_space is not None:
            with self.timed("sw"):
                sw = self.sw_metrics(samples, ev.sw_features)
            row.update(sw)
            for split in SPLITS:
                row[f"sw_{split}"] = sw[metric_key("sw", self.sw_space.name, split)]
        if self.fid_space is not None:
            row.update(self.fid_row(more))
        if self.kid_space is not None:  # on the evaluation's samples: KID is unbiased at any count
            with self.timed("kid"):
                row.update(self.kid_metrics(samples, ev.kid_features))
        if self.mifid_space is not None:
            with self.timed("mifid"):
                row.update(self.mifid_metrics(samples, ev.mifid_features))
        model.train(was_training)
        return row, samples, nn_idx

    def fid_samples(self, model, samples) -> torch.Tensor:
        """The samples of the Fréchet distances (eval.fid_samples): the evaluation's, and those beyond them."""
        need = self.samples_needed("fd", self.cfg.fid_samples)
        if need <= len(samples):
            return samples
        return torch.cat([samples, self.generate(model, need - len(samples), start=len(samples))])

    def fid_row(self, samples) -> dict:
        """Fréchet distances of `samples` (fid_samples), and the fid_* aliases the report reads."""
        count = self.cfg.fid_samples
        with self.timed("fd"):
            fd = self.fd_metrics(samples, self.cfg.fid_features, count,
                                 train_test=self.cfg.fd_train_test)
        row = dict(fd)
        for split in (*SPLITS, "train_test"):
            key = metric_key("fd", self.fid_space.name, split, samples=self.sample_tag(count))
            if key in fd:
                row[f"fid_{split}"] = fd[key]
        return row

    def save_grid(self, path: Path, samples: torch.Tensor, nn_idx: torch.Tensor) -> None:
        """Generated samples (top row) above their nearest training images (bottom row)."""
        # torchvision loaded here (memsweep.lazy): ~1 s of import after torch, which `memsweep eval` (metrics of
        # saved samples, no grid) would pay
        torchvision_utils = lazy.load("torchvision.utils")

        k = min(self.cfg.grid_samples, len(samples))
        pairs = torch.cat([samples[:k], self.data.train_x[nn_idx[:k]]]).cpu()
        scale = max(1, math.ceil(32 / pairs.shape[-1]))  # small images are enlarged to be seen
        pairs = F.interpolate(pairs, scale_factor=scale, mode="nearest")
        path.parent.mkdir(parents=True, exist_ok=True)
        grid = torchvision_utils.make_grid(pairs, nrow=k, padding=2, normalize=True, value_range=(-1, 1))
        # a full disk leaves no half a PNG
        atomic_write(path, lambda f: torchvision_utils.save_image(grid, f, format="png"))
