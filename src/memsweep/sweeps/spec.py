r"""Sweeps: a file in configs/sweep/ expanded into runs, and the sweep's record in the store.

A sweep file:

    description: what the sweep shows
    axes:                  # the cartesian product of these
      data.n: [16, 32, 64]
      seed: [0, 1]
    zip:                   # optional: keys varied together (equal-length lists), crossed with the axes
      train.batch_size: [32, 64]
      optim.lr: [1.0e-3, 2.0e-3]
    overrides: [model=tiny, train.steps=null, train.epochs=2000]   # fixed for every run
    by_objective:          # optional: more fixed settings for the runs of one objective (objective.name), e.g.
      vp: [train.epochs=4000]   # `memsweep sweep demo objective=vp`; after `overrides`, before the command line's
    # a value may refer to another setting of the run, escaped so the file itself does not resolve it:
    #   data.offset: [0, '\${data.n}']    (a second subset right after the first, whatever n)
    launcher:              # optional launcher settings for every run (e.g. timeout_min: 120)
      timeout_min: 60
    resources:             # optional launcher settings that depend on an axis value
      - when: {model: c192}
        set: {timeout_min: 720, mem_gb: 32}

A study (configs/sweep/paper_digits.yaml) is several one-axis sweeps around one centre, its `arms`:

    overrides: [data.n=64, train.batch_size=8, ...]   # the centre
    axes: {seed: [0, 1]}                               # crossed with every arm
    arms:                                              # each arm varies its own key(s) (a product), the others
      n: {data.n: [16, 32, 64, 128]}                   # stay at the centre, whose value each arm must hold:
      batch_size: {train.batch_size: [4, 8, 16, 32]}   # the centre run is one run, shared by every arm
      lr: {zip: {optim.lr: [1.0e-4, 1.0e-3], train.epochs: [5000, 500]}}   # or a sweep's axes/zip

The report fits each arm on its own runs (report.build), so a claim about one axis is measured on that axis only.

Sweeps on the command line, in Hydra's sweep syntax (`memsweep sweep data.n=16,32 seed=range(2) --name NAME`),
are more axes: alone, or on top of a file's (replacing an axis of the same key); the sweep is recorded like a
file's.

The sweep's record lives in outputs/sweeps/<name>/sweep.json: its axes and its runs (ids and axis values).
Runs live in outputs/runs/<run_id>/ like any run, so two sweeps containing the same run share it.
"""
from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml
from omegaconf import OmegaConf, open_dict

from memsweep import config
from memsweep.errors import ConfigError, path_problem, yaml_problem
from memsweep.science.normalized_time import reference_values
from memsweep.store.files import atomic_write_text, read_json
from memsweep.store.run_dir import RunDir
from memsweep.store import identity
from memsweep.store.live import is_active, needs_slurm, slurm_active_jobs
from memsweep.states import State, DONE

SWEEP_KEYS = {"description", "axes", "zip", "arms", "overrides", "by_objective", "launcher", "resources"}


@dataclass
class PlannedRun:
    axes: dict                      # axis key -> value for this run
    overrides: list[str]
    cfg: object = None              # the composed, validated config
    resources: dict = field(default_factory=dict)
    state: str = "pending"          # as plan() found it in status.json
    action: str = "-"               # what plan() decided: start, resume or - (nothing)
    arms: list[str] = field(default_factory=list)   # a study's arms holding this run (the centre: all of them)

    # computed once: what defines the run does not change after expand (only logging and runtime keys do)
    @cached_property
    def run_id(self) -> str:
        return identity.run_id(self.cfg)

    @cached_property
    def store(self) -> RunDir:
        return RunDir(identity.output_root(self.cfg) / "runs" / self.run_id)


@dataclass
class Sweep:
    name: str
    spec: dict
    runs: list[PlannedRun]
    unread: dict = field(default_factory=dict)  # data not readable on this machine: message -> runs (planning)

    @property
    def axes(self) -> list[str]:
        return (list(self.spec.get("axes", {})) + list(self.spec.get("zip", {}))
                + [k for keys in arm_keys(self.spec).values() for k in keys])

    def dir(self, output_root: Path) -> Path:
        return Path(output_root) / "sweeps" / self.name


def sweep_file(name: str) -> Path:
    """A path to a sweep file, or sweep/NAME.yaml on the config search path (--config-dir folders included)."""
    path = Path(name).expanduser()
    if path.suffix in (".yaml", ".yml"):  # a file the user named: it must be there and readable
        problem = path_problem(path)
        if problem:
            raise ConfigError(f"sweep {name}: {problem}")
        return path
    found = config.find_config(f"sweep/{name}.yaml")
    if found is None:
        raise ConfigError(f"sweep {name!r}: no such sweep file (known: {', '.join(known_sweeps())})")
    return found


def group_options(group: str) -> list[str]:
    """The options of a config group (or sweep/) on the config search path, by file name."""
    return sorted({p.stem for d in config.search_dirs() for p in (d / group).glob("*.yaml")})


def known_sweeps() -> list[str]:
    return group_options("sweep")


def load_spec(name: str) -> dict:
    path = sweep_file(name)
    try:
        spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"sweep {name}: {yaml_problem(e)}") from None
    except Exception as e:
        raise ConfigError(f"sweep {name}: cannot read {path}: {' '.join(str(e).split())}") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"sweep {name}: {path} holds a {type(spec).__name__}, not a mapping of axes, overrides, ...")
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise ConfigError(f"sweep {name}: unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(SWEEP_KEYS))})")
    for section in ("axes", "zip"):
        for key, values in (spec.get(section) or {}).items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"sweep {name}: {section}.{key} must be a non-empty list of values")
    zipped = spec.get("zip") or {}
    if len({len(v) for v in zipped.values()}) > 1:
        raise ConfigError(f"sweep {name}: the lists under zip must have equal lengths "
                          f"({', '.join(f'{k}: {len(v)}' for k, v in zipped.items())})")
    _check_arms(name, spec)
    if not isinstance(spec.get("overrides") or [], list):
        raise ConfigError(f"sweep {name}: overrides must be a list like [model=tiny, data.n=64]")
    by_objective = spec.get("by_objective") or {}
    if not isinstance(by_objective, dict) or not all(isinstance(v, list) for v in by_objective.values()):
        raise ConfigError(f"sweep {name}: by_objective must map an objective to a list like [optim.lr=2e-3]")
    known = group_options("objective")
    for objective in by_objective:
        if objective not in known:
            raise ConfigError(f"sweep {name}: by_objective.{objective}: no such objective (known: {', '.join(known)})")
    return spec


def arm_grid(arm: dict) -> tuple[dict, dict]:
    """An arm's (axes, zip): written {key: [values]} (a product), or {axes: {...}, zip: {...}} like a sweep's."""
    if set(arm) & {"axes", "zip"}:
        return dict(arm.get("axes") or {}), dict(arm.get("zip") or {})
    return dict(arm), {}


def arm_keys(spec: dict) -> dict[str, list[str]]:
    """A study's arms and the keys each varies ({} for a plain sweep)."""
    return {arm: [k for part in arm_grid(axes) for k in part] for arm, axes in (spec.get("arms") or {}).items()}


def _check_arms(name: str, spec: dict) -> None:
    arms = spec.get("arms")
    if arms is None:
        return
    if not isinstance(arms, dict) or not arms:
        raise ConfigError(f"sweep {name}: arms must map an arm's name to its axes, like {{n: {{data.n: [16, 32]}}}}")
    seen = set(spec.get("axes") or {}) | set(spec.get("zip") or {})
    for arm, grid in arms.items():
        if not isinstance(grid, dict) or not grid:
            raise ConfigError(f"sweep {name}: arms.{arm} must map keys to lists of values, like {{data.n: [16, 32]}}")
        axes, zipped = arm_grid(grid)
        if len({len(v) for v in zipped.values() if isinstance(v, list)}) > 1:
            raise ConfigError(f"sweep {name}: arms.{arm}: the lists under zip must have equal lengths")
        for key, values in {**axes, **zipped}.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"sweep {name}: arms.{arm}.{key} must be a non-empty list of values")
            if key in seen:
                raise ConfigError(f"sweep {name}: arms.{arm}.{key}: {key} is varied twice (by another arm, or "
                                  "under axes or zip); each key belongs to one arm")
            seen.add(key)


def _points(spec: dict) -> list[dict]:
    """Every point of the sweep; a study's points carry the arm they belong to under the key None."""
    axes = spec.get("axes") or {}
    zipped = spec.get("zip") or {}
    zip_rows = [dict(zip(zipped, vals)) for vals in zip(*zipped.values())] if zipped else [{}]
    arms = spec.get("arms") or {None: {}}
    points = []
    for arm, arm_spec in arms.items():
        arm_axes, arm_zip = arm_grid(arm_spec)
        grid = {**arm_axes, **axes}
        arm_rows = [dict(zip(arm_zip, vals)) for vals in zip(*arm_zip.values())] if arm_zip else [{}]
        for combo in itertools.product(*grid.values()):
            for row in zip_rows:
                for arm_row in arm_rows:
                    points.append({**dict(zip(grid, combo)), **arm_row, **row,
                                   **({None: arm} if arm is not None else {})})
    return points


def _format(value) -> str:
    return "null" if value is None else str(value)


def file_and_overrides(first: str | None, overrides) -> tuple[str | None, list[str]]:
    """The sweep file's name (None: none) and the overrides, from `memsweep sweep`'s words: in
    `memsweep sweep data.n=16,32 seed=0,1` there is no sweep file, the first word is an override."""
    overrides = list(overrides)
    if first is not None and ("=" in first or first.startswith("~")):
        return None, [first, *overrides]
    return first, overrides


def expand(name: str | None, cli_overrides=(), sweep_name: str | None = None, data_here: bool = True) -> Sweep:
    """Compose and validate every run of the sweep: a sweep file's (name; None: none) with the command line's
    sweeps as more axes, named sweep_name (default: the file's, then the command line's axis keys); nothing is
    launched or written. `data_here=False`: data not readable on this machine is recorded in Sweep.unread
    instead of refused (config.compose_run)."""
    spec = load_spec(name) if name else {}
    runs = []
    with config.Composer(data_here) as compose:  # Hydra once, one compose per choice of config groups
        cli_axes, cli_overrides = compose.sweep_axes(cli_overrides)
        named = sweep_name is not None or bool(cli_axes)  # not simply a file's sweep
        sweep_name = _name(name, cli_axes, sweep_name)
        spec = _with_axes(spec, cli_axes, sweep_name)
        base = [str(o) for o in spec.get("overrides") or []]
        for point in _points(spec):
            arm = point.pop(None, None)
            overrides = base + [f"{k}={_format(v)}" for k, v in point.items()] + list(cli_overrides)
            try:
                cfg = compose(overrides)
                extra = [str(o) for o in (spec.get("by_objective") or {}).get(cfg.objective.name, [])]
                if extra:   # the objective is known once composed: its settings go in after the file's
                    overrides = base + extra + overrides[len(base):]
                    cfg = compose(overrides)
            except ConfigError as e:
                where = ", ".join(f"{k}={v}" for k, v in point.items())
                raise ConfigError(f"sweep {sweep_name} ({where}): {e}") from None
            runs.append(_planned(spec, point, overrides, cfg, arm))
    runs = _merge_arms(sweep_name, spec, runs)
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"sweep {sweep_name}: some runs are identical (an axis does not change the run)")
    if named:
        _check_name_is_free(sweep_name, spec, identity.output_root(runs[0].cfg))
    _attach_context(sweep_name, runs)
    return Sweep(sweep_name, spec, runs, dict(compose.unread or {}))


def _name(file: str | None, cli_axes: dict, given: str | None) -> str:
    """--name, else the file's name, then the keys the command line sweeps (demo_seed, data.n_seed)."""
    if given is not None:
        if not re.fullmatch(r"[\w.+-]+", given) or given.startswith("."):
            raise ConfigError(f"--name {given!r}: use letters, digits and . _ + - (it names a folder)")
        taken = config.find_config(f"sweep/{given}.yaml")
        if taken is not None and (cli_axes or not file or sweep_file(file).resolve() != taken.resolve()):
            raise ConfigError(f"--name {given}: the name of the sweep file {taken}; choose another name")
        return given
    parts = ([Path(file).stem] if file else []) + [re.sub(r"[^\w.-]", "", key) for key in cli_axes]
    if not parts:
        raise ConfigError("sweep: give a sweep's name (memsweep sweep demo) or axes (memsweep sweep seed=0,1 --name NAME)")
    return "_".join(parts)


def _with_axes(spec: dict, cli_axes: dict, name: str) -> dict:
    """The file's spec with the command line's axes (which replace an axis of the same key)."""
    spec = dict(spec)
    for key in cli_axes:
        if any(key in keys for keys in arm_keys(spec).values()):
            raise ConfigError(f"sweep {name}: {key} is an arm of the study; change its values in the sweep file")
        if key in (spec.get("zip") or {}):
            raise ConfigError(f"sweep {name}: {key} is under zip in the sweep file; sweep it there")
    if cli_axes:
        spec["axes"] = {**(spec.get("axes") or {}), **cli_axes}
        spec["command_line"] = [f"{k}={','.join(map(_format, v))}" for k, v in cli_axes.items()]
        spec.setdefault("description", "swept on the command line: " + " ".join(spec["command_line"]))
    if not (spec.get("axes") or spec.get("zip") or spec.get("arms")):
        raise ConfigError(f"sweep {name}: no axes (give at least one under axes, zip or arms, or on the command line: seed=0,1)")
    return spec


def _check_name_is_free(name: str, spec: dict, output_root: Path) -> None:
    """A sweep named on the command line may grow (more values), but not become another sweep under the same
    name (other axes), which would hide the first one's record from status and report."""
    path = Path(output_root) / "sweeps" / name / "sweep.json"
    recorded = read_json(path, default=None)
    axes = [*(spec.get("axes") or {}), *(spec.get("zip") or {})]
    if recorded is not None and sorted(recorded.get("axes") or []) != sorted(axes):
        raise ConfigError(f"--name {name}: already a sweep over {', '.join(recorded.get('axes') or [])} ({path}); "
                          "choose another name")


def _planned(spec: dict, point: dict, overrides: list[str], cfg, arm: str | None = None) -> PlannedRun:
    """A run of the sweep: its axis values as resolved, and its launcher settings. A study's run records the
    value of every arm's keys (the centre's for the other arms)."""
    # a value may refer to another setting ('\${data.n}' in the file): the run records what it resolved to
    point = {k: OmegaConf.select(cfg, k) if isinstance(v, str) and "${" in v else v for k, v in point.items()}
    for key in (k for keys in arm_keys(spec).values() for k in keys):
        point.setdefault(key, _selected(cfg, key))
    resources = dict(spec.get("launcher") or {})
    for rule in spec.get("resources") or []:
        if all(str(OmegaConf.select(cfg, k)) == str(v) or str(point.get(k)) == str(v)
               for k, v in (rule.get("when") or {}).items()):
            resources.update(rule.get("set") or {})
    return PlannedRun(point, overrides, cfg, resources, arms=[arm] if arm is not None else [])


def _selected(cfg, key: str):
    """A key's value in a composed run (a config group's chosen option for a group key such as `model`)."""
    value = OmegaConf.select(cfg, key)
    return value.get("name") if OmegaConf.is_config(value) else value


def _merge_arms(name: str, spec: dict, runs: list[PlannedRun]) -> list[PlannedRun]:
    """A study's runs, each once (the centre is in every arm); every arm must hold the centre run, or its
    runs would not share the other arms' settings."""
    if not spec.get("arms"):
        return runs
    merged: dict[str, PlannedRun] = {}
    for r in runs:
        if r.run_id in merged:
            merged[r.run_id].arms += [a for a in r.arms if a not in merged[r.run_id].arms]
        else:
            merged[r.run_id] = r
    arms = list(spec["arms"])
    if len(arms) > 1 and not any(len(r.arms) == len(arms) for r in merged.values()):
        for arm, grid in spec["arms"].items():
            other = next(r for r in runs if r.arms[0] != arm)   # its run holds this arm's keys at the centre
            for key, values in {k: v for part in arm_grid(grid) for k, v in part.items()}.items():
                centre = _selected(other.cfg, key)
                if str(centre) not in map(str, values):
                    raise ConfigError(f"sweep {name}: arms.{arm}.{key}: {values} does not hold the centre's value "
                                      f"{centre} (set by the overrides); a study's arms share their centre run")
        raise ConfigError(f"sweep {name}: the arms share no run (a study's arms share their centre run)")
    return list(merged.values())


def _attach_context(name: str, runs: list[PlannedRun]) -> None:
    """wandb group and the sweep's reference values for the normalized step (logging only, not identity)."""
    smallest = reference_values([r.cfg.data.n for r in runs], [r.cfg.train.batch_size for r in runs],
                                [r.cfg.optim.lr for r in runs])
    ref = {"n": smallest["n0"], "batch_size": smallest["b0"], "lr": smallest["lr0"]}
    for r in runs:
        with open_dict(r.cfg):
            if r.cfg.logger.name == "wandb":
                r.cfg.logger.group = r.cfg.logger.group or name
            r.cfg.logger.sweep = name
            r.cfg.logger.reference = ref
            r.cfg.logger.axes = {k: v for k, v in r.axes.items()}


def record(sweep: Sweep, output_root: Path) -> Path:
    """Write (or refresh) outputs/sweeps/<name>/sweep.json atomically."""
    d = sweep.dir(output_root)
    d.mkdir(parents=True, exist_ok=True)
    path = d / "sweep.json"
    previous = read_json(path, default={})
    body = {"name": sweep.name, "axes": sweep.axes, "spec": sweep.spec,
            "created": previous.get("created", time.time()), "updated": time.time(),
            "runs": [{"run_id": r.run_id, "axes": r.axes, "overrides": r.overrides, **({"arms": r.arms} if r.arms else {})}
                     for r in sweep.runs]}
    if sweep.spec.get("arms"):
        body["arms"] = arm_keys(sweep.spec)
    atomic_write_text(path, json.dumps(body, indent=1, default=str))
    return path


def plan(sweep: Sweep, retry: bool = False) -> tuple[list[PlannedRun], dict]:
    """Which runs to launch: unfinished ones (resumed), never finished or diverged ones, failed ones only
    with `retry`. Returns the runs to launch and the count of each decision; each run's state and action are
    set on it. Reads each run's status.json once, its checkpoints only if it is to be launched, and asks
    Slurm once for the whole sweep."""
    todo, counts = [], {"finished": 0, "diverged": 0, "failed (use --retry)": 0, "active": 0, "new": 0, "resume": 0}
    statuses = [run.store.status() for run in sweep.runs]
    active_jobs = slurm_active_jobs() if any(needs_slurm(s) for s in statuses) else set()
    for run, status in zip(sweep.runs, statuses):
        run.state, run.action = status["state"], "-"
        if is_active(status, active_jobs):  # already being trained, or queued on Slurm: never twice
            counts["active"] += 1
        elif run.state in DONE:
            counts[run.state] += 1
        elif run.state == State.FAILED and not retry:
            counts["failed (use --retry)"] += 1
        else:
            resume = bool(run.store.checkpoint_steps())
            counts["resume" if resume else "new"] += 1
            run.action = "resume" if resume else "start"
            todo.append(run)
    return todo, counts
