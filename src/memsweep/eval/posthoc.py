"""Metrics after the fact: `memsweep eval RUN_OR_SWEEP [METRIC ...]`.

Every evaluation of a run saved its generated samples (samples/step_<N>.npz, uint8) and the weights it used
(checkpoints/eval_<N>.pt). From them a metric can be computed later for every evaluation step — FID once the
Inception weights are at hand, a new feature space, a different threshold, more samples — and merged into
the run's metrics.jsonl: the new keys are added to the existing row of each step (never a new row), the file
is rewritten atomically, and keys already there are left alone (unless --force). Keys follow the scheme of
memsweep.eval.evaluator (fd_inception_test, copy_sscd, ..._s<count> for another number of samples).

METRIC is one of
  mem    the nearest-neighbour rule (pixels unless --features; threshold eval.mem_threshold unless --threshold)
  copy   copy detection (in eval.copy_features unless --features; threshold eval.copy_threshold or --threshold)
  fd     Frechet distance to the training and test subsets, and between them (eval.fid_features or --features)
  fid    fd in the Inception space (the usual FID)
  sw     sliced Wasserstein distance (eval.sw_features or --features)
  kid    kernel inception distance, unbiased MMD^2 (eval.kid_features or --features; Bińkowski et al. 2018)
  mifid  memorization-informed FID (eval.mifid_features or --features; epsilon eval.mifid_epsilon unless
         --threshold; Bai et al. 2021)
  hybrid, els, traj   issue 16's probes of the evaluation weights (metrics.probes; e.g. --steps first,last);
         els with the run's probes.els_* settings, or --els-bank, --els-patch, --els-padding (another variant
         of the ELS machine gets its own keys: els_dist_interior, els_dist_calibrated, ...)
Without METRIC, the run's own configured metrics: those missing are computed (e.g. FID skipped in training
because the Inception weights were missing).

More samples than were saved (--num-samples N, or `reference`: as many as each reference split has) are
generated from the evaluation's weights with the run's sampler and the same fixed noise and labels (the first
eval.num_samples are the saved ones). A run being trained is skipped (its lock is held); `memsweep eval`
holds that lock while it works, so the run cannot start training meanwhile.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from omegaconf import open_dict

from memsweep.data import datasets
from memsweep.errors import ConfigError, path_problem, yaml_problem
from memsweep.eval.evaluator import Evaluator, keys_of, metric_key, sample_tag
from memsweep.eval.feature_specs import SPACES, file_problem, inception_problem, space_name
from memsweep.eval.features import FeatureUnavailable
from memsweep.eval.probe_checkpoints import probe_step
from memsweep.eval.metric_names import METRICS, SPACE_KEYS
from memsweep.metrics.probe_settings import PROBES, ProbeSettings, probe_keys, settings_problem
from memsweep.science import networks
from memsweep.store.cache import data_cache
from memsweep.store.files import atomic_write_text, read_json
from memsweep.store.run import RunStore
from memsweep.store.run_dir import RunLocked

log = logging.getLogger("memsweep")



@dataclass(frozen=True)
class Job:
    kind: str                  # mem | copy | fd | sw | kid | mifid
    spec: str                  # feature space spec
    threshold: float | None = None
    count: object = None       # None (eval.num_samples) | int | "reference"


def parse_count(value):
    if value in (None, "", "null"):
        return None
    if str(value) in ("reference", "ref"):
        return "reference"
    try:
        count = int(value)
    except ValueError:
        raise ConfigError(f"--num-samples={value}: give a number of samples or `reference`") from None
    if count < 2:
        raise ConfigError(f"--num-samples={value}: at least 2 samples")
    return count


def check_request(metrics=(), features=(), num_samples=None, steps=None, inception_path=None,
                  data_root=None) -> None:
    """Bad input to `memsweep eval` (unknown metric, feature space, sample count or steps; a file or folder it
    names that cannot be read) fails before any work."""
    for metric in metrics or ():
        if metric not in METRICS:
            raise ConfigError(f"metric {metric!r}: unknown (choose from: {', '.join(METRICS)})")
    for spec in features or ():
        try:
            space_name(spec)
        except ValueError:
            raise ConfigError(f"--features={spec}: unknown feature space (use {', '.join(SPACES)})") from None
        problem = file_problem(spec)
        if problem:
            raise ConfigError(f"--features={spec}: {problem}")
    problem = inception_problem(inception_path)
    if problem:
        raise ConfigError(f"--inception-path {inception_path}: {problem}")
    problem = path_problem(data_root, "folder") if data_root else None
    if problem:
        raise ConfigError(f"--data-root {data_root}: {problem}")
    parse_count(num_samples)
    if steps not in (None, "all") and not all(p.strip().isdigit() or p.strip() in ("first", "last")
                                                for p in str(steps).split(",")):
        raise ConfigError(f"--steps={steps}: use all, or a comma-separated list of steps, first and last")


def plan_jobs(ev_cfg, metrics=(), features=(), count=None, threshold=None) -> list[Job]:
    """The metrics to compute for a run whose eval config is `ev_cfg`."""
    features = [str(f) for f in (features or [])]
    jobs = []
    if not metrics:  # the run's own metrics
        jobs.append(Job("mem", "pixels", None, count))
        for kind, key in SPACE_KEYS.items():
            spec = str(ev_cfg[key])
            if spec != "none":
                jobs.append(Job(kind, spec, None, ev_cfg.fid_samples if kind == "fd" and count is None
                                else count))
        return jobs
    for metric in metrics:
        if metric not in METRICS:
            raise ConfigError(f"metric {metric!r}: unknown (choose from: {', '.join(METRICS)})")
        if metric == "fid":
            jobs.append(Job("fd", "inception", None, count))
            continue
        if metric in PROBES:   # from the evaluation weights and the fixed noise: no space, count or threshold
            jobs.append(Job(metric, "pixels"))
            continue
        default = "pixels" if metric == "mem" else str(ev_cfg[SPACE_KEYS[metric]])
        for spec in features or [default]:
            if spec == "none":
                raise ConfigError(f"metric {metric}: no feature space configured for this run; give --features "
                                  "(pixels, inception, digitnet, torchscript:<path>)")
            jobs.append(Job(metric, spec, threshold if metric in ("mem", "copy", "mifid") else None, count))
    return jobs


def _aliases(ev_cfg, job: Job) -> dict[str, str]:
    """Old-style keys (sw_train, fid_test, ...) that mean the same as a job's keys for this run: canonical key
    -> alias. Only for the run's configured spaces and sample counts."""
    tag = sample_tag(ev_cfg.num_samples, job.count)
    if job.kind == "sw" and job.spec == str(ev_cfg.sw_features) and tag is None:
        return {metric_key("sw", space_name(job.spec), s): f"sw_{s}" for s in ("train", "test")}
    if (job.kind == "fd" and job.spec == str(ev_cfg.fid_features)
            and tag == sample_tag(ev_cfg.num_samples, ev_cfg.fid_samples)):
        return {metric_key("fd", space_name(job.spec), s, samples=tag if s != "train_test" else None): f"fid_{s}"
                for s in ("train", "test", "train_test")}
    return {}


def resolve_runs(target: str, output_root: Path) -> list[Path]:
    """A run directory, a run id, or a sweep's name -> run directories, each config.yaml checked (readable YAML)
    before any work."""
    p = Path(target).expanduser()
    root = Path(output_root)
    if (p / "config.yaml").is_file():
        runs = [p.resolve()]
    elif (root / "runs" / target / "config.yaml").is_file():
        runs = [root / "runs" / target]
    elif (record := read_json(root / "sweeps" / target / "sweep.json")) is not None:
        runs = [root / "runs" / r["run_id"] for r in record["runs"]]
    elif p.is_dir():
        raise ConfigError(f"{target}: not a run directory (no config.yaml in it)")
    else:
        raise ConfigError(f"{target}: neither a run directory, nor a run id or a launched sweep under {root}")
    for run in runs:
        config_path = run / "config.yaml"
        if not config_path.is_file():
            continue  # a sweep's run not started yet: evaluate_run says so
        try:
            body = RunStore(run).read_config_data()
        except yaml.YAMLError as e:
            raise ConfigError(f"{target}: {yaml_problem(e, config_path)}") from None
        except OSError as e:
            raise ConfigError(f"{target}: cannot read {config_path} ({e.strerror or type(e).__name__})") from None
        if not isinstance(body, dict) or not all(k in body for k in ("data", "eval")):
            raise ConfigError(f"{target}: {config_path} is not a run's config (no data or eval section)")
    return runs


def _quantize(x: torch.Tensor) -> torch.Tensor:
    """Like the saved samples: 8-bit images back in [-1, 1]."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


class _Samples:
    """A step's generated samples: the saved ones, and more from the evaluation's weights if needed."""

    def __init__(self, store: RunStore, cfg, evaluator, device):
        self.store, self.cfg, self.ev, self.device = store, cfg, evaluator, device

    def get(self, step: int, need: int) -> tuple[torch.Tensor | None, str]:
        saved = None
        if self.store.path("samples", step).is_file():
            saved, _ = self.store.load_samples(step)
            saved = saved.to(self.device)
        have = 0 if saved is None else len(saved)
        if need <= have:
            return saved[:need], f"{need} saved samples"
        if not self.store.path("eval_weights", step).is_file():
            return None, (f"step {step}: {have} samples saved, {need} needed, and no evaluation weights "
                          f"({self.store.path('eval_weights', step).relative_to(self.store.dir)}) to generate more")

        c = self.cfg
        model = networks.build(c.model, c.data.image_size, c.data.channels, self.ev.data.num_classes)
        model.load_state_dict(self.store.load_eval_weights(step, map_location="cpu"))
        model = model.to(self.device).eval()
        t0 = time.time()
        more = _quantize(self.ev.generate(model, need - have, start=have))
        note = f"{have} saved + {need - have} generated in {time.time() - t0:.0f}s"
        return (more if saved is None else torch.cat([saved, more])), note


def _select_steps(rows: list[dict], steps) -> list[dict]:
    if steps in (None, "all"):
        return rows
    wanted = set()
    for part in (p.strip() for p in str(steps).split(",")):
        wanted.add(rows[0]["step"] if part == "first" else rows[-1]["step"] if part == "last" else int(part))
    return [r for r in rows if r["step"] in wanted]


def evaluate_run(run_dir: Path, metrics=(), output_root: Path | None = None, *, features=(), num_samples=None,
                 threshold=None, force: bool = False, device: str = "cpu", steps=None, data_root=None,
                 inception_path=None, probes: dict | None = None) -> dict:
    """Compute `metrics` for every evaluation of one run and merge them into its metrics.jsonl. `probes`: probe
    settings over the run config's (els_bank, els_patch, els_padding; metrics.probes.ProbeSettings).
    Returns {"run_id", "status", "steps", "keys", "notes"}."""
    store = RunStore(run_dir)
    result = {"run_id": store.run_id, "status": "ok", "steps": 0, "keys": [], "notes": []}
    if not store.config_path.is_file():
        return {**result, "status": "skipped", "notes": ["not started (no config.yaml)"]}
    cfg = store.read_config()
    with open_dict(cfg):
        if output_root is not None:  # the cache lives under the output root we are given
            cfg.paths.output_root = str(Path(output_root).resolve())
        if inception_path:
            cfg.eval.inception_path = str(inception_path)
        if data_root:
            cfg.data.root = str(data_root)
    count = parse_count(num_samples)
    jobs = plan_jobs(cfg.eval, metrics, features, count, threshold)
    settings = ProbeSettings.of_config(cfg, **(probes or {}))
    problem = settings_problem(settings, cfg.data.get("image_size"))
    if problem:
        raise ConfigError(problem)
    rows = store.read_metrics()
    if not rows:
        return {**result, "status": "skipped", "notes": ["no evaluations logged yet"]}
    added: set[str] = set()
    try:
        with store.lock():
            rows = store.read_metrics()  # as of now that we hold the lock
            todo = []
            for row in _select_steps(rows, steps):
                for job in jobs:
                    for canonical, alias in _aliases(cfg.eval, job).items():  # an old-style key says it already
                        if canonical not in row and alias in row and not force:
                            row[canonical] = row[alias]
                            added.add(canonical)
                    wanted = (probe_keys(job.kind, settings) if job.kind in PROBES
                              else keys_of(cfg.eval, job.kind, job.spec, job.threshold, job.count))
                    if force or any(k not in row for k in wanted):
                        todo.append((row, job))
            if not todo:
                if added:
                    _write(store, rows)
                result["notes"].append("nothing missing")
                return {**result, "keys": sorted(added)}
            dev = torch.device(device)
            data = datasets.load_for_model(cfg.data, data_cache(cfg)).to(dev)
            ev = Evaluator(cfg, data, dev, eager=False)
            source = _Samples(store, cfg, ev, dev)
            by_row: dict[int, tuple[dict, list[Job]]] = {}
            for row, job in todo:
                by_row.setdefault(id(row), (row, []))[1].append(job)
            for row, all_jobs in by_row.values():
                new, note = _probes(store, cfg, ev, row["step"], [j.kind for j in all_jobs if j.kind in PROBES],
                                    dev, result["notes"], settings)
                row_jobs = [j for j in all_jobs if j.kind not in PROBES]
                need = max([ev.samples_needed(j.kind, j.count) for j in row_jobs], default=0)
                samples, sample_note = source.get(row["step"], need) if row_jobs else (None, "")
                note = "; ".join(n for n in (note, sample_note) if n)
                if row_jobs and samples is None:
                    result["notes"].append(sample_note)
                    row_jobs = []
                if not row_jobs and not new:
                    continue
                for job in row_jobs:
                    new.update(_compute(ev, samples, job))
                    for canonical, alias in _aliases(cfg.eval, job).items():
                        if canonical in new:
                            new[alias] = new[canonical]
                for k, v in new.items():
                    if force or k not in row:
                        row[k] = v
                        added.add(k)
                _write(store, rows)  # after every step: the work done so far is kept if we are stopped
                result["steps"] += 1
                log.info("run %s step %d: %s (%s)", store.run_id, row["step"],
                         ", ".join(f"{k}={v:.4g}" for k, v in new.items() if isinstance(v, float)), note)
    except RunLocked as e:
        return {**result, "status": "locked", "notes": [f"{e}; skipped"]}
    return {**result, "keys": sorted(added)}


def _probes(store, cfg, ev, step: int, names: list, device, notes: list, settings) -> tuple[dict, str]:
    """Issue 16's probes `names` at one step (metrics.probes), from the evaluation weights."""
    if not names:
        return {}, ""
    keys, note = probe_step(store, cfg, ev, step, names, device, settings)
    if keys is None:
        notes.append(note)
        return {}, ""
    return keys, note


def _compute(ev, samples, job: Job) -> dict:
    if job.kind == "mem":
        return ev.mem_metrics(samples, job.spec, job.threshold, job.count)[0]
    if job.kind == "copy":
        return ev.copy_metrics(samples, job.spec, job.threshold, job.count)
    if job.kind == "fd":
        return ev.fd_metrics(samples, job.spec, job.count)
    if job.kind == "kid":
        return ev.kid_metrics(samples, job.spec, job.count)
    if job.kind == "mifid":
        return ev.mifid_metrics(samples, job.spec, job.count, job.threshold)
    return ev.sw_metrics(samples, job.spec, job.count)


def _write(store: RunStore, rows: list[dict]) -> None:
    atomic_write_text(store.metrics_path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))


def evaluate_after(run_dir_or_sweep, metrics, output_root: Path, **options) -> list[dict]:
    """`memsweep eval` as a function: every run of a sweep (or the one run given), one result per run."""
    check_request(metrics, options.get("features"), options.get("num_samples"), options.get("steps"),
                  options.get("inception_path"), options.get("data_root"))
    output_root = Path(output_root).resolve()
    results = []
    for run_dir in resolve_runs(str(run_dir_or_sweep), output_root):
        try:
            results.append(evaluate_run(run_dir, metrics, output_root, **options))
        except (FeatureUnavailable, ConfigError) as e:
            results.append({"run_id": Path(run_dir).name, "status": "failed", "steps": 0, "keys": [],
                            "notes": [str(e)]})
    return results
