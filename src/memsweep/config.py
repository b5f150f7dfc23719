"""Composing a run's config with Hydra, checking it, and naming it.

We use Hydra's compose API rather than @hydra.main: memsweep has several subcommands (train, sweep, status,
report, eval), composes many runs in one process for a sweep, and must validate them all before launching.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
import os
import pickle
import re
import sys
from pathlib import Path

import hydra
import omegaconf
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.config_search_path import SearchPathQuery
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import QuotedString
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from memsweep import lazy, schema
from memsweep.shipped_configs import CONFIG_PATH_ENV, config_dir
from memsweep.data import sources
from memsweep.data.splits import subset_problem, tail_problem
from memsweep.errors import ConfigError, path_problem, yaml_problem
from memsweep.eval.feature_specs import check_spec, inception_problem
from memsweep.metrics.probe_settings import ProbeSettings, settings_problem
from memsweep.science import objective_settings
from memsweep.science.network_spec import TARGET, is_target
from memsweep.store import compositions
from memsweep.store.identity import output_root

# ${min:512,${data.n}}: Bonnaire et al. 2025's batch size B = min(512, n) (configs/experiment/bonnaire_celeba.yaml)
if not OmegaConf.has_resolver("min"):
    OmegaConf.register_new_resolver("min", lambda *values: min(values))

log = logging.getLogger(__name__)
_config_dirs: list[Path] = []  # this command's --config-dir folders (use_config_dirs)
_warned: set = set()  # the clashes already named in this process
_scanned: set = set()  # the search paths already scanned for clashes in this process


def use_config_dirs(dirs=()) -> None:
    """--config-dir DIR (repeatable): more folders of configs for this process, after memsweep's own."""
    paths = [Path(d).expanduser().resolve() for d in dirs]
    for given, path in zip(dirs, paths):
        problem = path_problem(path, "folder")
        if problem:
            raise ConfigError(f"--config-dir {given}: {problem}")
    _config_dirs[:] = paths


def search_dirs() -> list[Path]:
    """The config folders in the order Hydra searches them, the first holding a file winning: memsweep's own,
    then the --config-dir folders, then MEMSWEEP_CONFIG_PATH's (Hydra's own --config-dir also comes after the
    app's configs, so memsweep's named configs, and the run ids they make, cannot change under a user)."""
    env = [Path(p).expanduser().resolve() for p in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if p]
    for path in env:
        problem = path_problem(path, "folder")
        if problem:
            raise ConfigError(f"{CONFIG_PATH_ENV}: {path}: {problem}")
    dirs = list(dict.fromkeys([config_dir(), *_config_dirs, *env]))
    if len(dirs) == 1 or tuple(dirs) in _scanned:   # one folder has no clashes; a scan's warnings are said once
        return dirs
    _scanned.add(tuple(dirs))
    seen: dict[str, Path] = {}
    for d in dirs:
        for path in sorted(d.rglob("*.yaml")):
            name = path.relative_to(d).as_posix()
            if name in seen and (name, path) not in _warned:
                _warned.add((name, path))
                log.warning(f"config {name}: {seen[name]} wins over {path} (the first folder on the search path)")
            seen.setdefault(name, path)
    return dirs


def find_config(name: str) -> Path | None:
    """The file a config name (sweep/demo.yaml) stands for: the first on the search path."""
    return next((d / name for d in search_dirs() if (d / name).is_file()), None)


def _hydra():
    """initialize_config_dir on memsweep's configs, with the other search_dirs() on Hydra's search path where
    Hydra's own --config-dir puts its folder (before the structured-config schemas)."""
    dirs = search_dirs()
    context = initialize_config_dir(config_dir=str(dirs[0]), version_base="1.3", job_name="memsweep")
    loader = GlobalHydra.instance().config_loader()
    for d in dirs[1:]:
        loader.get_search_path().prepend("memsweep", f"file://{d}", anchor=SearchPathQuery(provider="schema"))
    if len(dirs) > 1:
        loader.repository.initialize_sources(loader.get_search_path())
    return context


def _fingerprint(loader) -> str:
    """All a composition is made from (store.compositions): the search path, the config files in its folders and
    packages (Hydra reads *.yaml), this module's code, and the versions of Python, Hydra and OmegaConf."""
    elements = loader.get_search_path().get_path()
    files = [("memsweep/config.py", Path(__file__))]
    for element in elements:
        folder = _search_folder(element.path)
        if folder is not None and folder.is_dir():
            files += [(f"{element.path}/{p.relative_to(folder).as_posix()}", p)
                      for p in sorted(folder.rglob("*.yaml")) if p.is_file()]
    return compositions.fingerprint(files, str(elements), sys.version, hydra.__version__, omegaconf.__version__)


def _search_folder(path: str) -> Path | None:
    """The folder of an element of Hydra's search path (None: structured configs, which are code)."""
    if path.startswith("pkg://"):
        spec = importlib.util.find_spec(path[len("pkg://"):])
        return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None
    if path.startswith("structured://"):
        return None
    return Path(path.removeprefix("file://"))


def config_groups() -> dict[str, tuple[list[str], str | None]]:
    """Each config group on the search path: its options and the one train.yaml picks (None: add it with +)."""
    with Composer() as composer:
        choices = composer.choices()
        loader = GlobalHydra.instance().config_loader()
        return {g: (loader.get_group_options(g, results_filter=ObjectType.CONFIG), choices.get(g))
                for g in sorted(loader.list_groups("")) if g not in ("hydra", "sweep")}


def option_defaults() -> dict[str, dict[str, dict]]:
    """Each option of each config group as train.yaml composes it: group -> option -> its settings (the option
    train.yaml picks first), unresolved (`${oc.env:VAR,default}` kept) and unchecked, with the settings outside
    the groups under "", and a group no config file ships (probes) as {"": the values a run without it uses}.
    What the config reference shows as defaults (memsweep.reference)."""
    groups = config_groups()
    GlobalHydra.instance().clear()
    try:
        with _hydra():
            base = OmegaConf.to_container(compose(config_name="train"), resolve=False)
            out = {"": {k: v for k, v in base.items() if k not in groups}}
            for group, (options, default) in groups.items():
                if default is None:   # +group=option: a bundle of settings across groups, not a group's own
                    continue
                out[group] = {o: base[group] if o == default else
                              OmegaConf.to_container(compose(config_name="train", overrides=[f"{group}={o}"]),
                                                     resolve=False)[group]
                              for o in [default, *(o for o in options if o != default)]}
            out["probes"] = {"": {k: list(v) if isinstance(v, tuple) else v
                                  for k, v in dataclasses.asdict(ProbeSettings()).items()}}
            return out
    except (HydraException, OmegaConfBaseException, yaml.YAMLError) as e:
        raise ConfigError(_one_line(e)) from None
    finally:
        GlobalHydra.instance().clear()


def option_notes() -> dict[str, dict[str, dict[str, str]]]:
    """The comment on each setting's line in each option's file, with the comment lines indented under it:
    group -> option -> setting -> text. What the config reference shows as a setting's meaning."""
    out = {}
    for group, (options, default) in config_groups().items():
        if default is not None:
            out[group] = {o: _notes(path.read_text(encoding="utf-8")) if (path := find_config(f"{group}/{o}.yaml"))
                          else {} for o in options}
    return out


_SETTING = re.compile(r"^\s*(\w+):[^#\n]*(?:#\s*(.*))?$")


def _notes(text: str) -> dict[str, str]:
    """A setting's comment: the one on its line, with the comment lines indented under it, else the comment lines
    right above it."""
    notes, key, above = {}, None, []
    for line in text.splitlines():
        if line.startswith("#"):
            above, key = [*above, line.lstrip("#").strip()], None
        elif key and re.match(r"^\s+#", line):   # the comment goes on under its setting
            notes[key] += " " + line.strip().lstrip("#").strip()
        elif match := _SETTING.match(line):
            key = match.group(1)
            if match.group(2) or above:
                notes[key] = (match.group(2) or " ".join(above)).strip()
            key = key if match.group(2) else None
            above = []
        else:
            key, above = None, []
    return notes


def compose_run(overrides=(), data_here: bool = True) -> DictConfig:
    """The resolved config of one run, from configs/train.yaml and command-line style overrides (Composer).
    `data_here=False` (planning: a dry run, a Slurm submission): data not readable on this machine is a warning
    (Composer.unread), checked where the run reads it."""
    with Composer(data_here) as compose:
        return compose(overrides)


def _checked(cfg, unread: dict | None = None) -> DictConfig:
    """What every composed run gets after Hydra: its step budget, an absolute output root, validation.
    `unread` None: the data must be readable here; a dict: what is not is added to it (message -> runs)."""
    schema.check(OmegaConf.to_container(cfg, resolve=True))  # types and ranges, before anything reads a value
    with open_dict(cfg.data):  # data=folder / data=npz: image size, channels, classes, fingerprint from the files
        try:
            cfg.data.update(sources.derive(cfg.data))
        except ConfigError as e:
            if unread is None or not sources.is_unreadable(cfg.data):
                raise
            unread[str(e)] = unread.get(str(e), 0) + 1
            cfg.data.update(sources.known_shape(cfg.data))
    with open_dict(cfg.train):
        cfg.train.total_steps = total_steps(cfg)
    # absolute, so a Slurm job or worker started elsewhere writes to the same place
    cfg.paths.output_root = str(Path(str(cfg.paths.output_root)).expanduser().resolve())
    validate(cfg, unread)
    return cfg


class Composer:
    """Composing runs: Hydra initialized once, and a base composed once per distinct choice of config groups
    (model=c64, +experiment=...), and kept between commands (store.compositions). Each run is a copy of that
    unresolved base with its key overrides (data.n=16, ~key, +key=, ++key=) applied by Hydra's own code, as
    compose does after composing the defaults, then resolved and checked: the config and the errors of Hydra's
    compose with every override (`whole=True`, the reference this is tested against). Overrides that are not
    plain assignments (sweeps, hydra.* keys, hydra: resolvers) are composed in full.

        with Composer() as compose:
            cfgs = [compose(overrides) for overrides in runs]
    """

    def __init__(self, data_here: bool = True, whole: bool = False):
        self.unread = None if data_here else {}  # data not readable here: message -> runs (see compose_run)
        self.whole = whole
        self._parser = OverridesParser.create()
        self._bases: dict[tuple, bytes] = {}  # pickled: unpickling copies a config 5x faster than deepcopy
        self._parsed: dict = {}   # line -> Override, parsed by Hydra (here or by an earlier command: kept)
        self._parsed_now: set[str] = set()   # the lines this Composer parsed itself
        self._is_group: dict[str, bool] = {}
        self._context = None
        self.composed = 0  # how many times Hydra composed a config
        self.parsed = 0    # how many override lines Hydra parsed (not kept from an earlier command)

    def __enter__(self) -> "Composer":
        try:
            self._initialize()
        except (HydraException, OmegaConfBaseException, yaml.YAMLError) as e:
            GlobalHydra.instance().clear()
            raise ConfigError(_one_line(e)) from None
        except BaseException:
            GlobalHydra.instance().clear()
            raise
        return self

    def __exit__(self, *exc):
        try:
            self._context.__exit__(*exc)
            if self._parsed_now:
                self._kept.keep_parsed(self._parsed, self._parsed_now)
        finally:
            GlobalHydra.instance().clear()
            self._bases.clear()

    def _initialize(self) -> None:
        GlobalHydra.instance().clear()
        self._context = _hydra()
        self._context.__enter__()
        loader = GlobalHydra.instance().config_loader()
        self._repo = loader.repository
        self._sweep_parser = OverridesParser.create(config_loader=loader)   # glob(*) lists a group's options
        self._kept = compositions.Kept(_fingerprint(loader))
        self._bases.clear()   # composed on another search path, maybe
        self._parsed = {**self._kept.parsed(), **self._parsed}

    def __call__(self, overrides=()) -> DictConfig:
        overrides = [str(o) for o in overrides]
        if not GlobalHydra.instance().is_initialized():  # cleared meanwhile (another Composer in between)
            self._initialize()
        try:
            split = None if self.whole else self._split(overrides)
            if split is None:
                cfg = self._compose(overrides)
            else:
                groups, keys = split
                cfg, _ = pickle.loads(self._base(groups))
                # the function compose itself applies key overrides with (Hydra 1.3): its types, +, ++, ~ and errors
                ConfigLoaderImpl._apply_overrides_to_config(keys, cfg)
            OmegaConf.resolve(cfg)
        except (HydraException, OmegaConfBaseException, yaml.YAMLError) as e:
            raise ConfigError(_one_line(e)) from None
        return _checked(cfg, self.unread)

    def choices(self) -> dict[str, str | None]:
        """The option train.yaml picks in each config group (Hydra's runtime choices)."""
        try:
            return pickle.loads(self._base(()))[1]
        except (HydraException, OmegaConfBaseException, yaml.YAMLError) as e:
            raise ConfigError(_one_line(e)) from None

    def _base(self, groups: tuple) -> bytes:
        """(the unresolved config, the groups' choices) of a choice of config groups, pickled: composed by Hydra
        once, or kept from an earlier command."""
        if groups not in self._bases:
            data = self._kept.base(groups)
            if data is None:
                cfg = self._compose(list(groups), with_hydra=True)
                choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
                with open_dict(cfg):
                    del cfg["hydra"]   # as compose() does without return_hydra_config
                data = pickle.dumps((cfg, choices))
                self._kept.keep_base(groups, data)
            self._bases[groups] = data
        return self._bases[groups]

    def sweep_axes(self, overrides=()) -> tuple[dict[str, list], list[str]]:
        """Hydra's sweep syntax (seed=0,1  data.n=range(16,65,16)  model=choice(tiny,c32)  model=glob(c*)) parsed
        by Hydra's own parser and enumerated as its basic sweeper does: {axis key: values}, and the other
        overrides unchanged."""
        axes, fixed = {}, []
        for line in map(str, overrides):
            try:
                o = self._sweep_parser.parse_overrides(overrides=[line])[0]
                if not o.is_sweep_override():
                    fixed.append(line)
                elif not o.is_discrete_sweep():
                    raise ConfigError(f"{line}: interval() is not a list of values to sweep "
                                      "(use a,b,c, range(...), choice(...) or glob(...))")
                else:
                    values = [v.text if isinstance(v, QuotedString) else v for v in o.sweep_iterator()]
                    if not values:
                        raise ConfigError(f"{line}: no values to sweep")
                    axes[o.get_key_element()] = values
            except HydraException as e:
                raise ConfigError(f"{line}: {_one_line(e).split(' See https:')[0]}") from None
        return axes, fixed

    def _compose(self, overrides: list[str], with_hydra: bool = False) -> DictConfig:
        self.composed += 1
        return compose(config_name="train", overrides=overrides, return_hydra_config=with_hydra)

    def _split(self, overrides: list[str]):
        """(the group overrides, the parsed key overrides) as Hydra's defaults list tells them apart (a key that
        names no config group, or a dict value); None: compose this run in full."""
        groups, keys = [], []
        for line in overrides:
            if line not in self._parsed:  # a sweep repeats its fixed overrides in every run: parse each once
                self._parsed[line] = self._parser.parse_overrides(overrides=[line])[0]
                self._parsed_now.add(line)
                self.parsed += 1
            o = self._parsed[line]
            if o.is_sweep_override() or o.is_hydra_override() or "hydra:" in (o.input_line or ""):
                return None
            if o.key_or_group not in self._is_group:
                self._is_group[o.key_or_group] = self._repo.group_exists(o.key_or_group)
            if isinstance(o.value(), dict) or not self._is_group[o.key_or_group]:
                keys.append(o)
            else:
                groups.append(o.input_line)
        return tuple(groups), keys


def _one_line(e: Exception) -> str:
    """Hydra's messages, cut to the line a user needs: which setting, and what the choices are. A config file
    that is not valid YAML (Hydra lets PyYAML's error through): the file and the line."""
    if isinstance(e, yaml.YAMLError):
        return yaml_problem(e)
    text = " ".join(str(e).split())
    text = re.sub(r"^In '\w+': ", "", text).split(" Config search path")[0].split(". Did you mean")[0]
    match = re.match(r"Could not find '(\w+)/(\S+)' Available options in '\w+': (.*)", text)
    if match:
        group, option, choices = match.groups()
        return f"{group}={option}: unknown {group} (choose from: {', '.join(choices.split())})"
    match = re.match(r"Ambiguous value for argument '(\S+)'", text)
    if match:  # a sweep given to train (one run): say where sweeps go, and how to mean a list or a string
        return (f"{match.group(1)}: a sweep of values; `memsweep sweep {match.group(1)} --name NAME` trains one "
                "run per value (a list: key=[a,b]; a string: key='a,b')")
    match = re.match(r"Could not override '(\S+)'", text)
    if match:
        return f"{match.group(1)}: unknown setting (see `memsweep train --help` and configs/)"
    return text


def total_steps(cfg) -> int:
    """train.steps, or a budget in epochs (passes over the n images) or in images seen, so steps can scale with n."""
    t = cfg.train
    given = [k for k in ("steps", "epochs", "images") if t.get(k) is not None]
    if len(given) != 1:
        raise ConfigError(f"train: set exactly one of train.steps, train.epochs, train.images (got {given or 'none'})")
    if t.get("steps") is not None:
        return int(t.steps)
    images = t.images if t.get("images") is not None else t.epochs * cfg.data.n
    return max(1, math.ceil(images / t.batch_size))


def validate(cfg, unread: dict | None = None) -> None:
    """The checks across settings that can fail before work starts (each setting's type and range: schema.py);
    the message names the setting. `unread`: see _checked."""
    if cfg.data.name == "digits":
        problem = tail_problem(cfg.data.test_size, sources.DIGITS_COUNT, "digits")
        if problem:
            raise ConfigError(problem)
    available = sources.pool_size(cfg.data) if sources.is_read(cfg.data) else None
    if available is not None and cfg.data.name != "cifar10":
        problem = subset_problem(cfg.data.n, cfg.data.offset, available, cfg.data.name)
        if problem:
            raise ConfigError(problem)
        problem = sources.class_mismatch(cfg.data)
        if problem and problem not in _warned:  # once per process: a sweep composes many runs of one folder
            _warned.add(problem)
            log.warning(problem)
    if cfg.data.name == "cifar10":
        if cfg.data.n + cfg.data.offset > 50000:
            raise ConfigError(f"data.n={cfg.data.n}: CIFAR-10 has 50000 training images")
        problem = sources.missing(cfg.data)
        if problem and unread is None:
            raise ConfigError(problem)
        if problem:
            unread[problem] = unread.get(problem, 0) + 1
    # a network named by _target_ keeps the contract (science.networks): imported, built and run once here; the
    # user's module imports torch itself, so only such a run loads science.networks (memsweep's U-Net: the schema)
    if is_target(cfg.model):
        problem = lazy.load("memsweep.science.networks").check(
            cfg.model, cfg.data.get("image_size"), cfg.data.get("channels"), sources.model_classes(cfg.data))
        if problem:
            raise ConfigError(f"model.{TARGET}={cfg.model[TARGET]}: {problem}")
    problem = settings_problem(ProbeSettings.of_config(cfg), cfg.data.get("image_size")) if cfg.get("probes") else None
    if problem:
        raise ConfigError(problem)
    objective_settings.check(cfg)   # the formulation's own rules: its settings together, its sampler and steps
    if cfg.eval.cfg_weight and not (cfg.train.label_dropout and sources.conditional(cfg.data)):
        raise ConfigError(f"eval.cfg_weight={cfg.eval.cfg_weight}: guidance needs a conditional run "
                          "(data.conditional=true) with train.label_dropout > 0")
    for key in ("sw_features", "fid_features", "copy_features", "kid_features", "mifid_features"):
        problem = check_spec(str(cfg.eval.get(key, "none")), cfg.data.name)
        if problem:
            raise ConfigError(f"eval.{key}={cfg.eval.get(key)!r}: {problem}")
    problem = inception_problem(cfg.eval.get("inception_path"))
    if problem:
        raise ConfigError(f"eval.inception_path={cfg.eval.inception_path}: {problem}")


def check_writable(cfg) -> None:
    """Fail before any work if the output root cannot be written."""
    root = output_root(cfg)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"paths.output_root={root}: cannot write there ({e.strerror or type(e).__name__})") from None
