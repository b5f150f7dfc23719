"""`memsweep report NAME`: the analysis of a sweep, written next to its sweep.json.

outputs/sweeps/<name>/
  summary.csv    one row per run (summary_table)
  fits.csv       across-run fits: each onset step (and mem_rate, best SW) against each swept numeric axis (a
                 study's: each arm's axis on that arm's runs)
  claims.csv     the paper's claims that the sweep speaks to, each with its measurement and verdict (report.claims)
  *.png          figures (each from its topic's module: report/__init__.py)
  report.md      what was varied, the definitions, the table, the fitted exponents in words, the figures,
                 and the runs that did not finish (report.document)
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from memsweep.errors import ConfigError
from memsweep.report import (architectures, beyond_paper, claims, collapse, curves, document, drawing, figure_cache,
                             findings, gap_by_noise, probe_report, sample_grids, scaling)
from memsweep.report.figure_cache import FigureCache
from memsweep.report.style import LABELS, slug
from memsweep.report.summary import RunData, SUMMARY_COLUMNS, axis_column, summary_table
from memsweep.science.curves import DEFAULT_GAP_THRESHOLD, metrics_frame
from memsweep.store.identity import run_path, sweep_dir
from memsweep.store.live import live_state
from memsweep.store.files import atomic_write_text, read_json
from memsweep.store.run import RunStore
from memsweep.states import State

log = logging.getLogger(__name__)

FIGURE_PATTERNS = ("curves_*.png", "collapse_*.png", "scaling_*.png", "window_*.png", "rate_fidelity_*.png",
                   "samples_*.png", "gap_by_t_*.png", "novelty_*.png", "nn_ratio_*.png", "copies_*.png", "disjoint.png",
                   "hybrid.png", "els.png", "traj.png")


# -- reading a sweep --------------------------------------------------------------------------------------------
def _config_params(cfg) -> dict:
    def get(path, default=None):
        node = cfg
        for part in path.split("."):
            try:
                node = node[part]
            except Exception:
                return default
        return node
    return {"n": get("data.n"), "data": get("data.name"), "model": get("model.name"),
            "batch_size": get("train.batch_size"), "lr": get("optim.lr"), "seed": get("seed"),
            "total_steps": get("train.total_steps"), "sw_features": get("eval.sw_features"),
            "fid_features": get("eval.fid_features")}


def load_sweep(output_root: Path, name: str) -> tuple[dict, list[RunData]]:
    """sweep.json and every run it lists (a run with no files yet is 'pending' with no metrics)."""

    output_root = Path(output_root)
    path = sweep_dir(output_root, name) / "sweep.json"
    record = read_json(path)
    if record is None:
        raise ConfigError(f"sweep {name}: no such sweep under {output_root / 'sweeps'} (no {path.name}; "
                          f"launch it with `memsweep sweep {name}` or give --output-root)")
    runs = []
    for entry in record.get("runs", []):
        store = RunStore(run_path(output_root, entry["run_id"]))
        status = store.status()
        try:
            params = _config_params(store.read_config_data())
        except Exception:   # not started yet: what the sweep file says
            params = {}
        for key, value in (entry.get("axes") or {}).items():
            col = axis_column(key)
            if params.get(col) is None:
                params[col] = value
        if params.get("total_steps") is None:
            params["total_steps"] = status.get("total_steps")
        params["params"] = status.get("parameters")
        try:
            state = live_state(status)
        except Exception:
            state = status.get("state", State.PENDING)
        runs.append(RunData(entry["run_id"], state, dict(entry.get("axes") or {}), params,
                            metrics_frame(store.read_metrics()), status, store.dir, tuple(entry.get("arms") or ())))
    return record, runs


# -- the report -------------------------------------------------------------------------------------------------
def _draw_jobs(jobs: list[tuple], cache: FigureCache) -> tuple[list, list]:
    """Each figure (title, func, args, kwargs) kept from the last report if drawn from the same inputs
    (report.figure_cache), the others drawn side by side (report.drawing): [(title, file)] in the report's
    order, and the notes of the figures that failed (one failing must not lose the rest of the report)."""
    keys = [figure_cache.key(func, args, kwargs) for _, func, args, kwargs in jobs]
    kept = [cache.kept(title, k) for (title, *_), k in zip(jobs, keys)]
    todo = [i for i, (hit, _) in enumerate(kept) if not hit]
    drawn = dict(zip(todo, drawing.draw([jobs[i][1:] for i in todo])))
    figures, notes = [], []
    for i, (title, *_) in enumerate(jobs):
        name = kept[i][1]
        if i in drawn:
            path, error = drawn[i]
            if error is not None:
                log.warning("figure %r failed: %s", title, error)
                notes.append(f"figure '{title}' could not be drawn ({error})")
                continue
            cache.drawn(title, keys[i], path)
            name = None if path is None else Path(path).name
        if name is not None:
            figures.append((title, name))
    return figures, notes


def make_report(output_root: Path, name: str, threshold: float = DEFAULT_GAP_THRESHOLD, device="cpu",
                max_samples: int | None = None, probes: bool = True) -> Path:
    """Write summary.csv, fits.csv, the figures and report.md into <output_root>/sweeps/<name>/ and return
    the path of report.md. `device`, `max_samples`: of the analyses of saved samples (report.sample_analyses); `probes`:
    compute the probes missing from metrics.jsonl (report.probe_report)."""
    output_root = Path(output_root)
    record, runs = load_sweep(output_root, name)
    out = sweep_dir(output_root, name)
    out.mkdir(parents=True, exist_ok=True)
    keys = list(record.get("axes") or [])

    summary = summary_table(runs, threshold) if runs else pd.DataFrame(columns=SUMMARY_COLUMNS)
    beyond = beyond_paper.compute(runs, summary, keys, out, device, max_samples) if runs else None
    summary.to_csv(out / "summary.csv", index=False)
    parts = sweep_parts(record, runs, summary, keys)
    fits = findings.compute(parts, summary)
    fits.to_csv(out / "fits.csv", index=False)
    sensitivity = findings.sensitivity(parts, threshold)
    claim_table = claims.compute([(name, ks, s) for name, ks, _, s in parts], fits, summary, runs)
    claim_table.to_csv(out / "claims.csv", index=False)

    # the probes are read against n (report.probe_report): a study computes them on its arm that varies n
    probe_runs = next((rs for _, ks, rs, _ in parts if "data.n" in ks), runs) if record.get("arms") else runs
    probe_ctx = probe_report.compute(probe_runs, probes) if probe_runs else None
    if probe_ctx is not None:
        probe_report.write(probe_ctx, out)
    arch = architectures.compute(runs, summary, probe_ctx, out) if runs else None   # model=tiny,local_cnn
    figures, notes = _draw_figures(parts, runs, out, threshold, beyond, probe_ctx, arch)
    more = beyond_paper.lines(beyond, runs, summary, keys) if beyond is not None else []
    more += probe_report.lines(probe_ctx) if probe_ctx is not None else []
    more += architectures.lines(arch)
    text = document.render(record, runs, summary, fits, sensitivity, figures, notes, threshold, parts, claim_table, more)
    path = out / "report.md"
    atomic_write_text(path, text)
    return path


def sweep_parts(record: dict, runs: list[RunData], summary: pd.DataFrame, keys: list[str]) -> list[tuple]:
    """[(name, keys, runs, summary)]: the whole sweep, or each arm of a study with its own runs and keys (its
    arm's and the axes crossed with every arm), so that each axis is analysed on the runs that vary it."""
    arms = record.get("arms") or {}
    if not arms:
        return [("", keys, runs, summary)]
    common = [k for k in keys if not any(k in arm_keys for arm_keys in arms.values())]
    parts = []
    for arm, arm_keys in arms.items():
        members = [r for r in runs if arm in r.arms]
        ids = {r.run_id for r in members}
        parts.append((arm, list(arm_keys) + common, members, summary[summary["run_id"].isin(ids)]))
    return parts


def _features(runs) -> dict:
    """The feature spaces of SW and FID the runs used (for the figures' labels)."""
    features = {}
    for r in runs:
        features.setdefault("sw", r.params.get("sw_features"))
        features.setdefault("fid", r.params.get("fid_features"))
    return {k: v for k, v in features.items() if v}


def _draw_figures(parts, all_runs, out: Path, threshold, beyond, probe_ctx=None, arch=None) -> tuple[list, list]:
    """Every figure of the report: [(title, file)] and the notes of figures that failed."""
    jobs: list[tuple] = []   # drawn (or kept) together once all are known

    def add(title, func, *args, **kwargs):
        jobs.append((title, func, args, kwargs))
    features = _features(all_runs)
    for _, keys, runs, summary in parts:
        _axis_figures(add, runs, summary, keys, out, threshold, features)
        if beyond is not None and runs:
            beyond_paper.figures(beyond, runs, summary, keys, out, add)
    if probe_ctx is not None:
        probe_report.figures(add, probe_ctx, out)
    architectures.figures(add, arch, out)
    cache = FigureCache(out)
    figures, notes = _draw_jobs(jobs, cache)
    shown = {name for _, name in figures}
    for pattern in FIGURE_PATTERNS:   # figures of an earlier report that this one did not draw or keep
        for old in out.glob(pattern):
            if old.name not in shown:
                old.unlink(missing_ok=True)
    cache.save()
    return figures, notes


def _axis_figures(add, runs, summary, keys, out: Path, threshold, features) -> None:
    """The figures of each swept axis: curves (raw and normalized, and side by side), onsets, rate and fidelity."""
    plot_keys = [k for k in keys if k not in ("seed", "data.offset")] or keys   # offset: the disjoint test's pairs
    for key in plot_keys if runs else []:
        col = axis_column(key)
        s, lab = slug(col), LABELS.get(col, col)
        add(f"Training curves by {lab}, against the training step", curves.curves_figure,
            runs, summary, key, keys, out / f"curves_{s}_step.png", x="step", threshold=threshold, features=features)
        add(f"Training curves by {lab}, against the normalized step (the collapse figure)", curves.curves_figure,
            runs, summary, key, keys, out / f"curves_{s}_normalized.png", x="norm", threshold=threshold,
            features=features)
        add(f"Collapse across {lab}: the same curves against the step and the normalized step, side by side",
            collapse.collapse_figure, runs, summary, key, keys, out / f"collapse_{s}.png")
        add(f"Onset of memorization against {lab}, with power-law fits", scaling.scaling_figure, summary, key, keys,
            out / f"scaling_{s}.png")
        add(f"The generalization window: tau_gen and tau_mem against {lab}", scaling.scaling_figure, summary, key,
            keys, out / f"window_{s}.png", metrics=("tau_gen", "tau_mem"),
            heading="the generalization window, from tau_gen (samples near their best) to tau_mem (test loss turns up),")
        add(f"Memorization rate and best fidelity against {lab}", scaling.rate_fidelity_figure, summary, key, keys,
            out / f"rate_fidelity_{s}.png")
        add(f"Samples and their nearest training images, early and late (by {lab})", sample_grids.samples_figure,
            runs, summary, key, keys, out / f"samples_{s}.png")
        add(f"Loss gap by noise level (log-SNR) against step (by {lab})", gap_by_noise.gap_heatmap, runs, summary, key,
            keys, out / f"gap_by_t_{s}.png")
        add(f"Loss gap by noise level (log-SNR) against normalized step (by {lab})", gap_by_noise.gap_heatmap, runs,
            summary, key, keys, out / f"gap_by_t_{s}_normalized.png", x="norm")
