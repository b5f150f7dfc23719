"""memsweep's own config folder and what it ships, read without composing a run (no Hydra, no schema): where the
configs are (and the variable naming a cluster's), the output root paths.output_root's default gives, and the
defaults of settings a stored config may lack. memsweep.config composes runs from them.

A run's config.yaml holds the settings that existed when it was written; a setting added later is absent there
(and from a lab's own eval config). Its default is the one in memsweep's YAML (configs/<group>/default.yaml), the
only place a default is written: `with_defaults` fills the absent keys from it when a config is used, never when
it is composed, so the run id (a hash of the config as composed, store.identity) stays what it was.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from memsweep.errors import ConfigError

# libyaml's loader, where PyYAML has it (10x the pure-Python one), for what needs plain YAML and not OmegaConf's
# reading of values (1e-3 is a string to YAML 1.1): the keys of a shipped file, a stored config's text
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CONFIG_PATH_ENV = "MEMSWEEP_CONFIG_PATH"  # a cluster's config folders, os.pathsep-separated, like --config-dir


def config_dir() -> Path:
    """memsweep's own configs: MEMSWEEP_CONFIG_DIR, else memsweep/configs in an installed package (setup.py
    copies configs/ there), else configs/ at the top of the checkout (an editable install)."""
    env = os.environ.get("MEMSWEEP_CONFIG_DIR")
    packaged = Path(__file__).resolve().parent / "configs"
    path = Path(env) if env else packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "configs"
    if not (path / "train.yaml").is_file():
        raise ConfigError(f"MEMSWEEP_CONFIG_DIR={path}: no train.yaml there (reinstall memsweep, "
                          "or point MEMSWEEP_CONFIG_DIR at its configs/)")
    return path


def default_output_root() -> Path:
    """paths.output_root as configs/paths/default.yaml sets it (MEMSWEEP_OUTPUT_ROOT, else outputs/ in the
    working directory), read without composing a run: for commands that only read the store."""
    paths = OmegaConf.load(config_dir() / "paths" / "default.yaml")
    return Path(str(paths.output_root)).expanduser().resolve()


def given_output_root(given: str | None) -> Path:
    """A command's --output-root, else paths.output_root's default (default_output_root)."""
    return Path(given).expanduser().resolve() if given else default_output_root()


@functools.cache
def _load(path: Path) -> DictConfig:
    return OmegaConf.load(path)


# The groups whose settings grew after run configs were first stored; their default.yaml is complete. (Not
# train: its budget is exactly one of steps, epochs, images, so a default can't be merged under a stored one.)
FILLED = ("eval", "runtime")


def with_defaults(group: str, block) -> DictConfig:
    """A config group's block with the keys it lacks taken from configs/<group>/default.yaml (a copy)."""
    return OmegaConf.merge(_load(config_dir() / group / "default.yaml"), block)


def complete(cfg) -> DictConfig:
    """A run's config whose FILLED groups have every key their default.yaml has: the config itself when it lacks
    none (a composed one: merging costs ~9 ms a run, most of a 1,000-run dry run's cost), else a filled copy."""
    lacking = [g for g in FILLED if g in cfg and not _keys(config_dir() / g / "default.yaml") <= set(cfg[g].keys())]
    if not lacking:
        return cfg
    out = cfg.copy()
    for group in lacking:
        out[group] = with_defaults(group, out[group])
    return out


@functools.cache
def _keys(path: Path) -> frozenset:
    return frozenset(yaml.load(path.read_text(), Loader=YAML_LOADER) or {})
