"""The `memsweep` command: train | sweep | status | report | eval."""
from __future__ import annotations

import argparse
import logging
import sys

from .errors import ConfigError

USAGE_EXAMPLES = """examples:
  memsweep train data.n=64 optim.lr=3e-4
  memsweep train model=c128 data=cifar10 data.root=/data runtime.device=cuda
"""


def cmd_train(args) -> int:
    from . import config
    from .train import train

    cfg = config.compose_run(args.overrides)
    status = train(cfg)
    print(f"run {config.run_id(cfg)}: {status['state']} at step {status.get('step')} "
          f"-> {config.run_dir(cfg)}")
    return 0 if status["state"] in ("finished", "diverged") else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memsweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=USAGE_EXAMPLES)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one run (resumes it if unfinished, skips it if finished)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.n=64 model=tiny optim.lr=3e-4")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"memsweep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memsweep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
