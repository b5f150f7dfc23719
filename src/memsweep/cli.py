"""The `memsweep` command: train | sweep | status | report | eval."""
from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys

from memsweep import lazy
from memsweep.shipped_configs import CONFIG_PATH_ENV
from memsweep.errors import ConfigError, RankLost, StorageError, storage_error
from memsweep.eval.metric_names import METRICS
from memsweep.science.els_settings import BANKS, PADDINGS
from memsweep.store.run_dir import RunLocked
from memsweep.sweeps import gpus
from memsweep.train.signals import Interrupted

USAGE_EXAMPLES = """examples:
  memsweep train data.n=64 optim.lr=3e-4
  memsweep train model=c128 data=cifar10 data.root=/data runtime.device=cuda
  memsweep train --cfg job data.n=64                 # the composed config, nothing trained
  memsweep train model=local_cnn model.receptive_field=7   # a local CNN instead of the U-Net
  memsweep train model=mynet --config-dir /lab/configs     # your network: /lab/configs/model/mynet.yaml holds
                                                     # _target_: mylab.nets.Net and its arguments (docs/networks.md)
  memsweep sweep model=tiny,local_cnn data.n=16,64 --name arch   # the architecture as an axis
  memsweep sweep demo --dry-run
  memsweep sweep data.n=16,32,64 seed=0,1 --name my_sweep   # a sweep from the command line (Hydra's syntax)
  memsweep sweep demo seed=range(3) --config-dir /lab/configs   # more axes on a file's; a lab's config folder
  memsweep sweep dataset_size launcher=slurm launcher.partition=gpu data.root=/data
  memsweep status demo
  memsweep status 24eae09f8ad2                       # one run (an id, a prefix, a run directory): its files too
  memsweep report demo
  memsweep eval demo copy --features digitnet        # a metric after the fact, from the saved samples
  memsweep eval demo fid --inception-path /models/   # FID, once the Inception weights are at hand
  memsweep eval arch els --steps all --els-bank interior --els-padding circular   # Kamb & Ganguli's ELS bank
"""

NETWORKS = """your own network (docs/networks.md): a model config naming it by Hydra's _target_, e.g.
/lab/configs/model/mynet.yaml:
  _target_: mylab.nets.Net     # importable where the run trains (an installed package, or on PYTHONPATH)
  name: mynet                  # the report's label (not passed to it)
  depth: 4                     # its other keyword arguments
then: memsweep train model=mynet --config-dir /lab/configs   (or a sweep axis: model=tiny,mynet)
memsweep builds Net(image_size=H, in_channels=C, num_classes=K, **arguments), K None when unconditional, and
calls net(x, noise, labels) -> a tensor of x's shape: noise is t in [0, 1] (rectified_flow; vp: 1 - k/T; t = 0
noise) or c_noise = ln(sigma)/4 (edm); labels in [0, K], K = no label; it returns the velocity, epsilon or EDM's
F. A network that cannot be imported, built or run, or returns another shape, is refused when the run is
composed (exit 2). It trains alone (only memsweep's U-Net packs); model=local_cnn is built the same way.
"""


# The module that runs each subcommand (its `run(args)`), loaded only when that command runs: torch, matplotlib,
# pandas and wandb take seconds to import, and --help, status, --cfg job and a dry run whose FLOP counts are kept
# need none of them (memsweep.lazy).
COMMANDS = {"train": "memsweep.commands.train", "sweep": "memsweep.commands.sweep",
            "status": "memsweep.commands.status", "report": "memsweep.commands.report",
            "eval": "memsweep.commands.evaluate"}


def command_module(args) -> str:
    """The module that runs the parsed command: --help, --cfg job and sweep --dry-run have their own (no torch)."""
    if getattr(args, "help", False):
        return "memsweep.commands.show_help"
    if getattr(args, "cfg", None):
        return "memsweep.commands.show_config"
    if args.command == "sweep" and args.dry_run:
        return "memsweep.commands.plan"
    return COMMANDS[args.command]


def _eval_arguments(p) -> None:
    """The arguments of `memsweep eval`."""
    p.add_argument("target", help="a run directory, a run id, or a sweep's name")
    p.add_argument("metrics", nargs="*", help=f"metrics to compute ({', '.join(METRICS)}); "
                   "default: the run's configured ones that are missing")
    p.add_argument("--features", action="append", default=None,
                   help="feature space (pixels, inception, digitnet, torchscript:[<name>=]<path>); repeat for several")
    p.add_argument("--num-samples", default=None,
                   help="generated samples per metric (default: eval.num_samples, the saved ones); a number, or "
                        "`reference` for as many as the reference split has; more than saved are generated "
                        "from the evaluation weights")
    p.add_argument("--threshold", type=float, default=None, help="threshold of mem / copy, epsilon of mifid (default: the run's)")
    p.add_argument("--steps", default="all",
                   help="all (default), or a comma-separated list of steps, first and last (e.g. first,last)")
    p.add_argument("--force", action="store_true", help="recompute and overwrite keys already present")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--inception-path", default=None, help="inception-2015-12-05.pt (or its folder)")
    p.add_argument("--data-root", default=None, help="data.root if the runs' one is wrong on this machine")
    p.add_argument("--output-root", default=None, help="the output root (default: paths.output_root)")
    p.add_argument("--els-bank", choices=BANKS, default=None,
                   help="els: the training patches, padded (memsweep's, at every pixel) or interior (Kamb & "
                        "Ganguli's); default: the run's probes.els_bank")
    p.add_argument("--els-patch", default=None, help="els: the patch size, odd sizes per equal bin of t (7,5,3), "
                   "or calibrated (per sampler step, against the network, as Kamb & Ganguli)")
    p.add_argument("--els-padding", choices=PADDINGS, default=None,
                   help="els: how a patch at the border is padded (zeros, or circular as Kamb & Ganguli)")


def _table_arguments(p) -> None:
    p.add_argument("--all", action="store_true", help="print every row of the table (default: the first and "
                   "last rows when there are more than 20)")
    p.add_argument("--table", default=None, metavar="FILE", help="also write every row of the table to FILE (CSV)")


def _config_arguments(p, composed: str) -> None:
    """The Hydra-like options of train and sweep; `composed`: whose config --cfg job prints."""
    p.add_argument("-h", "--help", action="store_true",
                   help="show this help, with the config groups, their options and the settings")
    p.add_argument("--cfg", "-c", choices=["job"], default=None,
                   help=f"job: print {composed} (resolved and checked, as it would train) and exit, writing nothing")
    p.add_argument("--config-dir", action="append", default=[], metavar="DIR",
                   help=f"also look for configs (data/, model/, experiment/, sweep/, ...) in DIR, after memsweep's "
                        f"own (repeatable; {CONFIG_PATH_ENV}=DIR{os.pathsep}DIR does the same)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memsweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=USAGE_EXAMPLES)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one run (resumes it if unfinished, skips it if finished)", add_help=False,
                       epilog=NETWORKS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.n=64 model=tiny optim.lr=3e-4")
    _config_arguments(p, "the run's composed config")
    p.set_defaults(parser=p)
    p = sub.add_parser("sweep", help="launch a sweep from configs/sweep/NAME.yaml and/or the command line's "
                       "sweeps (locally or on Slurm)", add_help=False)
    p.add_argument("sweep", nargs="?", metavar="NAME", help="a sweep in configs/sweep/ or a --config-dir's sweep/ "
                   "(demo, dataset_size, ...), or a path to a sweep file; leave out to sweep the command line only")
    p.add_argument("overrides", nargs="*", help="overrides applied to every run (launcher=slurm), and sweeps in "
                   "Hydra's syntax, each an axis: seed=0,1  data.n=range(16,65,16)  model=choice(tiny,c32)  model=glob(c*)")
    p.add_argument("--name", dest="sweep_name", metavar="NAME", default=None,
                   help="the sweep's name, for status, report and relaunching (default: the file's, then the swept "
                        "keys: demo_seed)")
    _config_arguments(p, "the composed config of the sweep's first run")
    p.add_argument("--dry-run", action="store_true", help="print the runs and what would be launched, launch nothing")
    p.add_argument("--retry", action="store_true", help="also relaunch failed runs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--gpu", default=None, help=f"with --dry-run: GPU-hours on this GPU ({', '.join(gpus.GPUS)})")
    p.add_argument("--utilization", type=float, default=None,
                   help="with --gpu: the assumed fraction of the GPU's dense peak (default: sweeps.cost.UTILIZATION, "
                        "which the estimate states)")
    _table_arguments(p)
    p.set_defaults(parser=p)
    for name, helptext, target in (
            ("status", "a table of a sweep's runs, or one run: its state, step, last evaluation and files",
             "a sweep's name, or a run: its id (or a unique prefix of it) or its directory"),
            ("report", "analysis, figures and report.md of a sweep", "the sweep's name")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("name", help=target)
        p.add_argument("--output-root", default=None, help="the output root (default: paths.output_root)")
        if name == "status":
            _table_arguments(p)
        if name == "report":
            p.add_argument("--wandb-mode", default=None,
                           help="also log the report to wandb as a run of the sweep's group: offline (the default "
                                "unless WANDB_MODE says otherwise; `wandb sync` later), online, or disabled")
        if name == "report":
            p.add_argument("--no-probes", action="store_true", help="compute no probe missing from metrics.jsonl "
                           "(hybrid, els, traj: about 7 samplings per run and evaluation)")
        if name == "report":
            p.add_argument("--device", default="cpu", help="of the analyses of saved samples: cpu (default), "
                           "cuda, cuda:1, ... (computed once per evaluation, stored in each run's analysis/)")
            p.add_argument("--max-samples", type=int, default=None,
                           help="use at most the first N saved samples of each evaluation (stated in report.md)")
    p = sub.add_parser("eval", help="compute metrics after the fact from saved samples, added to metrics.jsonl")
    _eval_arguments(p)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # overrides may come before or after the flags
    if any(x.startswith("-") for x in extra) or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `memsweep train runtime.processes=K` reruns it K times
    try:
        return lazy.load(command_module(args)).run(args)
    except ConfigError as e:
        print(f"memsweep: error: {e}", file=sys.stderr)
        return 2
    except RunLocked as e:
        print(f"memsweep: {e}; not starting it twice", file=sys.stderr)
        return 3
    except RankLost as e:  # a run on several processes: this rank's line (the launcher names the rank that ended)
        notes = "".join(f"; {n}" for n in getattr(e, "__notes__", ()))
        print(f"memsweep: error: {e}{notes}; run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return 1
    except Interrupted as e:
        print(f"memsweep: {_interrupted(e)}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("memsweep: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a full disk, a quota, a read-only mount: one line; anything else is a bug (traceback)
        error = storage_error(e)
        if not isinstance(error, StorageError):
            raise
        notes = "".join(f"; {n}" for n in getattr(e, "__notes__", ()))
        fix = "make it writable" if error.errno == errno.EROFS else "free space"
        print(f"memsweep: error: {error}{notes}; {fix} and run the same command again to resume", file=sys.stderr)
        return 1


def _interrupted(e: Interrupted) -> str:
    """One line: which signal, and where each run stopped (the notes train.loop._stop added)."""
    name = signal.Signals(e.signum).name
    what = "terminated" if e.signum == signal.SIGTERM else "interrupted"
    done = "; ".join(getattr(e, "__notes__", ())) or "before any training step"
    return f"{what} ({name}): {done}; run the same command again to resume"


if __name__ == "__main__":
    sys.exit(main())
