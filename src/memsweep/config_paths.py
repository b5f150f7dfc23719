"""Where memsweep's configs are and where its outputs go, read without composing a run (no Hydra, no schema):
memsweep's own config folder, the environment variable naming a cluster's config folders, and the output root
paths.output_root's default gives. memsweep.config composes runs from them.
"""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from memsweep.errors import ConfigError

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
