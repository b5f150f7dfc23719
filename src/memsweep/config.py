"""Composing a run's config with Hydra, checking it, and naming it.

We use Hydra's compose API rather than @hydra.main: memsweep has several subcommands (train, sweep, status,
report, eval), composes many runs in one process for a sweep, and must validate them all before launching.
"""
from __future__ import annotations

import math
import os
import pickle
import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from memsweep.data import datasets as data_mod
from memsweep import schema
from memsweep.errors import ConfigError
from memsweep.eval.features import check_spec
from memsweep.science import formulations
from memsweep.store.identity import output_root

# ${min:512,${data.n}}: Bonnaire et al. 2025's batch size B = min(512, n) (configs/experiment/bonnaire_celeba.yaml)
if not OmegaConf.has_resolver("min"):
    OmegaConf.register_new_resolver("min", lambda *values: min(values))


def config_dir() -> Path:
    """configs/ at the top of the checkout (editable install), or MEMSWEEP_CONFIG_DIR."""
    env = os.environ.get("MEMSWEEP_CONFIG_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "configs"
    if not (path / "train.yaml").is_file():
        raise ConfigError(f"MEMSWEEP_CONFIG_DIR={path}: no train.yaml there (install memsweep with "
                          "`pip install -e .` from its checkout, or point MEMSWEEP_CONFIG_DIR at configs/)")
    return path


def default_output_root() -> Path:
    """paths.output_root as configs/paths/default.yaml sets it (MEMSWEEP_OUTPUT_ROOT, else outputs/ in the
    working directory), read without composing a run: for commands that only read the store."""
    paths = OmegaConf.load(config_dir() / "paths" / "default.yaml")
    return Path(str(paths.output_root)).expanduser().resolve()


def compose_run(overrides=(), data_here: bool = True) -> DictConfig:
    """The resolved config of one run, from configs/train.yaml and command-line style overrides.
    `data_here=False` (planning: a dry run, a Slurm submission): data not readable on this machine is a warning
    (Composer.unread), checked where the run reads it."""
    overrides = list(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="memsweep"):
            cfg = compose(config_name="train", overrides=overrides)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_one_line(e)) from None
    finally:
        GlobalHydra.instance().clear()
    return _checked(cfg, None if data_here else {})


def _checked(cfg, unread: dict | None = None) -> DictConfig:
    """What every composed run gets after Hydra: its step budget, an absolute output root, validation.
    `unread` None: the data must be readable here; a dict: what is not is added to it (message -> runs)."""
    schema.check(OmegaConf.to_container(cfg, resolve=True))  # types and ranges, before anything reads a value
    with open_dict(cfg.data):  # data=folder / data=npz: image size, channels, classes, fingerprint from the files
        try:
            cfg.data.update(data_mod.derive(cfg.data))
        except ConfigError as e:
            if unread is None or not data_mod.is_unreadable(cfg.data):
                raise
            unread[str(e)] = unread.get(str(e), 0) + 1
            cfg.data.update(data_mod.known_shape(cfg.data))
    with open_dict(cfg.train):
        cfg.train.total_steps = total_steps(cfg)
    # absolute, so a Slurm job or worker started elsewhere writes to the same place
    cfg.paths.output_root = str(Path(str(cfg.paths.output_root)).expanduser().resolve())
    validate(cfg, unread)
    return cfg


class Composer:
    """compose_run for many runs (a sweep): Hydra initialized once, and a config composed once per distinct
    choice of config groups (model=c64, +experiment=...). Each run is a copy of that unresolved base with its
    key overrides (data.n=16, ~key, +key=, ++key=) applied by Hydra's own code, as compose does after
    composing the defaults, then resolved and checked like compose_run: the same config, the same errors.
    Overrides that are not plain assignments (sweeps, hydra.* keys, hydra: resolvers) are composed in full.

        with Composer() as compose:
            cfgs = [compose(overrides) for overrides in runs]
    """

    def __init__(self, data_here: bool = True):
        self.unread = None if data_here else {}  # data not readable here: message -> runs (see compose_run)
        self._parser = OverridesParser.create()
        self._bases: dict[tuple, bytes] = {}  # pickled: unpickling copies a config 5x faster than deepcopy
        self._parsed: dict = {}
        self._is_group: dict[str, bool] = {}
        self._context = None
        self.composed = 0  # how many times Hydra composed a config

    def __enter__(self) -> "Composer":
        self._initialize()
        return self

    def __exit__(self, *exc):
        try:
            self._context.__exit__(*exc)
        finally:
            GlobalHydra.instance().clear()
            self._bases.clear()

    def _initialize(self) -> None:
        GlobalHydra.instance().clear()
        self._context = initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="memsweep")
        self._context.__enter__()
        self._repo = GlobalHydra.instance().config_loader().repository

    def __call__(self, overrides=()) -> DictConfig:
        overrides = [str(o) for o in overrides]
        if not GlobalHydra.instance().is_initialized():  # cleared meanwhile (compose_run in between)
            self._initialize()
        try:
            split = self._split(overrides)
            if split is None:
                cfg = self._compose(overrides)
            else:
                groups, keys = split
                if groups not in self._bases:
                    self._bases[groups] = pickle.dumps(self._compose(list(groups)))
                cfg = pickle.loads(self._bases[groups])
                # the function compose itself applies key overrides with (Hydra 1.3): its types, +, ++, ~ and errors
                ConfigLoaderImpl._apply_overrides_to_config(keys, cfg)
            OmegaConf.resolve(cfg)
        except (HydraException, OmegaConfBaseException) as e:
            raise ConfigError(_one_line(e)) from None
        return _checked(cfg, self.unread)

    def _compose(self, overrides: list[str]) -> DictConfig:
        self.composed += 1
        return compose(config_name="train", overrides=overrides)

    def _split(self, overrides: list[str]):
        """(the group overrides, the parsed key overrides) as Hydra's defaults list tells them apart (a key that
        names no config group, or a dict value); None: compose this run in full."""
        groups, keys = [], []
        for line in overrides:
            if line not in self._parsed:  # a sweep repeats its fixed overrides in every run: parse each once
                self._parsed[line] = self._parser.parse_overrides(overrides=[line])[0]
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
    """Hydra's messages, cut to the line a user needs: which setting, and what the choices are."""
    text = " ".join(str(e).split())
    text = re.sub(r"^In '\w+': ", "", text).split(" Config search path")[0].split(". Did you mean")[0]
    match = re.match(r"Could not find '(\w+)/(\S+)' Available options in '\w+': (.*)", text)
    if match:
        group, option, choices = match.groups()
        return f"{group}={option}: unknown {group} (choose from: {', '.join(choices.split())})"
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
    available = data_mod.pool_size(cfg.data) if data_mod.is_read(cfg.data) else None
    if available is not None and cfg.data.name != "cifar10" and cfg.data.n + cfg.data.offset > available:
        raise ConfigError(f"data.n={cfg.data.n} (data.offset={cfg.data.offset}) exceeds the {available} "
                          f"training images of {cfg.data.name}")
    if cfg.data.name == "cifar10":
        if cfg.data.n + cfg.data.offset > 50000:
            raise ConfigError(f"data.n={cfg.data.n}: CIFAR-10 has 50000 training images")
        problem = data_mod.missing(cfg.data)
        if problem and unread is None:
            raise ConfigError(problem)
        if problem:
            unread[problem] = unread.get(problem, 0) + 1
    formulation = formulations.of_config(cfg)
    if cfg.eval.sampler not in formulation.samplers:
        raise ConfigError(f"eval.sampler={cfg.eval.sampler!r}: use {' or '.join(formulation.samplers)}")
    if cfg.eval.cfg_weight and not cfg.train.label_dropout:
        raise ConfigError(f"eval.cfg_weight={cfg.eval.cfg_weight}: guidance needs train.label_dropout > 0")
    for key in ("sw_features", "fid_features", "copy_features", "kid_features", "mifid_features"):
        problem = check_spec(str(cfg.eval.get(key, "none")), cfg.data.name)
        if problem:
            raise ConfigError(f"eval.{key}={cfg.eval.get(key)!r}: {problem}")


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
