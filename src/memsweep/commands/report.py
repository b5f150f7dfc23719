"""`memsweep report`: the analysis, figures and report.md of a sweep, then logged to wandb as a run of the
sweep's group (unless --wandb-mode disabled)."""
from __future__ import annotations

import sys

from memsweep.shipped_configs import given_output_root
from memsweep.commands.device import checked_device
from memsweep.errors import ConfigError
from memsweep.report import wandb_report
from memsweep.report.build import make_report


def run(args) -> int:
    if args.max_samples is not None and args.max_samples < 4:
        raise ConfigError(f"--max-samples {args.max_samples}: must be at least 4 (precision/recall's k = 3)")
    if args.wandb_mode is not None and args.wandb_mode not in wandb_report.MODES:
        raise ConfigError(f"--wandb-mode {args.wandb_mode}: choose from {', '.join(wandb_report.MODES)}")
    root = given_output_root(args.output_root)
    path = make_report(root, args.name, device=checked_device(args.device), max_samples=args.max_samples,
                       probes=not args.no_probes)
    print(f"report: {path}")
    try:
        where = wandb_report.log_report(root, args.name, args.wandb_mode)
    except Exception as e:  # e.g. online without WANDB_API_KEY: the report itself is written, say what failed
        first = (str(e).splitlines() or [""])[0]
        print(f"memsweep: error: the report was not logged to wandb ({type(e).__name__}: {first}); "
              "--wandb-mode disabled skips it", file=sys.stderr)
        return 1
    if where:
        print(f"wandb ({args.wandb_mode or wandb_report.default_mode()}): {where}")
    return 0
