"""`memsweep train|sweep --cfg job`: the composed config of the run (of a sweep: its first run), resolved and
checked as it would train, printed as YAML; nothing trained or written."""
from __future__ import annotations

from omegaconf import OmegaConf

from memsweep import config
from memsweep.store import identity
from memsweep.sweeps import spec


def run(args) -> int:
    config.use_config_dirs(args.config_dir)
    if args.command == "train":
        cfg = config.compose_run(args.overrides)
    else:
        file, overrides = spec.file_and_overrides(args.sweep, args.overrides)
        cfg = spec.expand(file, overrides, args.sweep_name, data_here=False).runs[0].cfg
    print(f"# run {identity.run_id(cfg)}\n{OmegaConf.to_yaml(cfg)}", end="")
    return 0
