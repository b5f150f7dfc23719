"""`memsweep train|sweep --help`: argparse's help, then what Hydra's would add (the config groups and their
options on the config search path, the sweeps), then every setting of the run with its value and what the
schema accepts (memsweep.schema, the one place keys and ranges live): generated, never written by hand."""
from __future__ import annotations

from omegaconf import OmegaConf

from memsweep import config, schema
from memsweep.setting_types import value_text
from memsweep.errors import ConfigError
from memsweep.sweeps import spec


def run(args) -> int:
    config.use_config_dirs(args.config_dir)
    print(args.parser.format_help())
    dirs = config.search_dirs()
    print(f"config groups (group=option; +group=option for one train.yaml leaves out), from {', '.join(map(str, dirs))}:")
    for group, (options, default) in config.config_groups().items():
        shown = ", ".join(f"{o} (default)" if o == default else o for o in options)
        print(f"  {'' if default else '+'}{group}: {shown}")
    if args.command == "sweep":
        print(f"sweeps (memsweep sweep NAME): {', '.join(spec.known_sweeps())}")
    print_settings(args.overrides if args.command == "train" else [])
    return 0


def print_settings(overrides) -> None:
    """Every setting of the run composed from `overrides` (none: the default run), with what the schema accepts."""
    try:
        cfg = config.compose_run(overrides, data_here=False)
    except ConfigError as e:
        print(f"settings: not shown ({e})")
        return
    rows = settings(OmegaConf.to_container(cfg, resolve=True))
    print(f"settings (key=VALUE; the values of {'this' if overrides else 'the default'} run; from memsweep.schema):")
    width = max(len(key) for key, _, _ in rows)
    for key, value, accepts in rows:
        print(f"  {key:<{width}}  {value:<14}  {accepts}")


def settings(cfg: dict) -> list[tuple[str, str, str]]:
    """(key, value as written on the command line, what it accepts) of every setting the schema knows in a
    composed config (a plain dict), group by group as schema.check reads them."""
    out = []
    for group, model in [*schema.GROUPS.items(), ("", schema.Top)]:
        values = cfg.get(group) if group else cfg
        if not isinstance(values, dict):
            continue
        options = schema.GROUPS.get(group)
        if group == "model" and "_target_" in values:
            model = schema.TargetModel
        elif isinstance(model, dict):
            model = model.get(values.get("name"))
            if model is None:
                continue
        for setting in model.settings.values():
            key = setting.key
            given = value_text(values[key]) if key in values else "unset"
            option = setting.name == "name" and isinstance(options, dict)   # the group's option, chosen by group=OPTION
            accepts = f"the option: {', '.join(options)} ({group}=OPTION)" if option else schema.accepts(setting)
            out.append((f"{group}.{key}" if group else key, given, accepts))
    return out

