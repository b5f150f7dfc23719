"""Issue 16's probes in the report (metrics.probes: hybrid sampling, the ELS machine, where trajectories go), at
each run's first and last evaluation ("early" and "late").

The report reads the keys `memsweep eval RUN hybrid els traj` wrote into metrics.jsonl and computes, at report
time, those missing, from the evaluation's saved weights (checkpoints/eval_<N>.pt, rebuilt with science.networks)
and the evaluation's fixed noise and labels (metrics.fixed_inputs, the Evaluator's own draws): the same
numbers `memsweep eval` writes. What it computes is stored in the run directory's analysis cache
(run_dir/analysis/probes_<step>.v<N>.npz, store.analysis_cache: keyed by the weights file and the probe
settings, with the seconds it took), so a second report computes nothing and says the same; metrics.jsonl is
left alone. hybrid.csv, els.csv and traj.csv go next to report.md. `probes.els=false` in a run's config leaves the ELS machine out; `memsweep report
--no-probes` computes nothing (and shows only what metrics.jsonl holds).
"""
from __future__ import annotations

import logging
import time

import pandas as pd
import torch

from memsweep.data import datasets as data_mod
from memsweep.metrics.fixed_inputs import fixed_inputs, sample_labels
from memsweep.metrics.probes import PROBES, ProbeInputs, ProbeSettings, els_suffix, probe_keys, run_probes
from memsweep.science import objective, networks
from memsweep.store import analysis_cache
from memsweep.store.cache import data_cache
from memsweep.store.run import RunStore
from memsweep.threads import torch_threads

log = logging.getLogger(__name__)

VERSION = 1   # of the stored probe results: bump when a probe's definition changes
# the key suffixes of the ELS machine's variants (metrics.probes.els_suffix), in the order shown
ELS_VARIANTS = tuple(els_suffix(ProbeSettings(els_bank=b, els_patch=p)) for b in ("padded", "interior")
                     for p in (5, "calibrated"))


def _inputs(store: RunStore, cfg, step: int) -> ProbeInputs:
    """The probes' inputs of one evaluation, as the Evaluator had them."""
    data = data_mod.load_for_model(cfg.data, data_cache(cfg))   # the model's classes (none if unconditional)
    ev = cfg.eval
    _, _, noise = fixed_inputs(data, ev)
    model = networks.build(cfg.model, cfg.data.image_size, cfg.data.channels, data.num_classes)
    model.load_state_dict(store.load_eval_weights(step, map_location="cpu"))
    return ProbeInputs(objective.of_config(cfg), model.eval(), noise,
                       sample_labels(data.train_y, 0, int(ev.num_samples)), int(ev.sampler_steps), str(ev.sampler),
                       data.train_x, data.train_y, data.test_x, data.num_classes, float(ev.cfg_weight),
                       float(ev.mem_threshold), int(ev.noise_seed))


def _probe_row(store: RunStore, cfg, row: dict, compute: bool, timing: dict) -> dict:
    """The probes' keys at one evaluation: those in the row, and the missing ones read from the analysis cache or
    computed there (if `compute`)."""
    settings = ProbeSettings.of_config(cfg)
    wanted = [p for p in PROBES if p != "els" or settings.els]
    keys = {p: probe_keys(p, settings) for p in wanted}
    have = {k: v for k, v in row.items() if k.startswith("els_")}   # every ELS variant `memsweep eval` wrote
    have.update({k: row[k] for p in wanted for k in keys[p] if all(key in row for key in keys[p])})
    missing = [p for p in wanted if not all(k in row for k in keys[p])]
    weights = store.path("eval_weights", row["step"])
    if missing and compute and weights.is_file():
        new, seconds = _stored_or_computed(store, cfg, row["step"], missing, settings, weights)
        timing[store.run_id] = timing.get(store.run_id, 0.0) + seconds
        have.update(new)
    return have


def _stored_or_computed(store, cfg, step, missing, settings, weights) -> tuple[dict, float]:
    """The keys of the probes `missing` at `step` and the CPU seconds they took (when first computed)."""
    name = f"probes_{step:09d}"
    expect = {"weights": analysis_cache.stamp(weights), "probes": missing, "settings": repr(settings)}
    got = analysis_cache.read(store.dir, name, VERSION, expect)
    if got is not None:
        arrays, meta = got
        return {k: v.tolist() for k, v in arrays.items()}, float(meta["seconds"])
    t0 = time.process_time()
    new, _ = run_probes(_inputs(store, cfg, step), missing, settings)
    seconds = time.process_time() - t0
    analysis_cache.write(store.dir, name, VERSION, new, expect, seconds=seconds)
    return new, seconds


def compute(runs, enabled: bool = True) -> dict:
    """{"hybrid", "els", "traj"}: long tables (one row per run, evaluation and grid point), "notes", "seconds"."""
    tables = {p: [] for p in PROBES}
    notes, timing = [], {}
    with torch_threads(1):   # digits-sized models and closed forms: threads only add overhead
        for r in runs:
            if r.dir is None or not len(r.frame):
                continue
            try:
                _run_tables(r, enabled, tables, timing)
            except Exception as e:   # one run failing must not lose the others
                notes.append(f"run `{r.run_id}`: probes not computed ({type(e).__name__}: {e})")
    out = {p: pd.DataFrame(rows) for p, rows in tables.items()}
    return {**out, "notes": notes, "seconds": timing}


def _run_tables(r, enabled: bool, tables: dict, timing: dict) -> None:
    store = RunStore(r.dir)
    cfg = store.read_config()
    rows = store.read_metrics()
    ends = [("early", rows[0]), ("late", rows[-1])] if len(rows) > 1 else [("late", rows[-1])]
    for when, row in ends:
        keys = _probe_row(store, cfg, row, enabled, timing)
        ident = {"run_id": r.run_id, "n": r.params.get("n"), "seed": r.params.get("seed"), "when": when,
                 "step": row["step"], "mem_ratio": row.get("mem_ratio")}
        if "hybrid_tau" in keys:
            tables["hybrid"] += [{**ident, "tau": tau, "hybrid_mem_ratio": m, "hybrid_dist": d} for tau, m, d in
                                 zip(keys["hybrid_tau"], keys["hybrid_mem_ratio"], keys["hybrid_dist"])]
        for sfx in ELS_VARIANTS:   # one row per variant of the ELS machine (bank, calibration) the row holds
            if f"els_dist{sfx}" in keys:
                tables["els"].append({**ident, "variant": sfx.strip("_") or "padded",
                                      "els_dist": keys[f"els_dist{sfx}"], "els_mem_dist": keys.get("els_mem_dist"),
                                      "els_mem_ratio": keys.get(f"els_mem_ratio{sfx}"),
                                      "els_patch": str(keys.get(f"els_patch{sfx}"))})
        if "traj_t" in keys:
            f = objective.of_config(cfg)
            lsnr = f.log_snr(torch.tensor(keys["traj_t"], dtype=torch.float64)).tolist()
            tables["traj"] += [{**ident, "t": t, "log_snr": ls, "traj_state": s, "traj_train": a, "traj_test": b}
                               for t, ls, s, a, b in zip(keys["traj_t"], lsnr, keys["traj_state"],
                                                         keys["traj_train"], keys["traj_test"])]


def write(ctx: dict, out) -> None:
    """hybrid.csv, els.csv, traj.csv (one of an earlier report that this one has no rows for is removed)."""
    for p in PROBES:
        if len(ctx[p]):
            ctx[p].to_csv(out / f"{p}.csv", index=False)
        else:
            (out / f"{p}.csv").unlink(missing_ok=True)
