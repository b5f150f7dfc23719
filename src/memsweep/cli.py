"""The `memsweep` command: train | sweep | status | report | eval."""
from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import torch
from omegaconf import OmegaConf
from rich.console import Console

from memsweep import config
from memsweep.errors import ConfigError, RankLost, StorageError, storage_error
from memsweep.eval import posthoc
from memsweep.metrics.probes import CALIBRATED, parse_patch
from memsweep.science.els import BANKS, PADDINGS
from memsweep.report import wandb_report
from memsweep.report.build import make_report
from memsweep.store import identity
from memsweep.store.run import ELSEWHERE, RunLocked
from memsweep.data.datasets import is_read
from memsweep.sweeps import cost as cost_mod
from memsweep.sweeps import spec as sweep_mod
from memsweep.sweeps.gpus import GPUS
from memsweep.sweeps.groups import check_devices, describe_devices
from memsweep.sweeps.local import run_local
from memsweep.sweeps.slurm import check_slurm, slurm_jobs, submit_slurm, task_layout
from memsweep.sweeps.status import print_status, print_table, sizes, write_table
from memsweep.train import distributed
from memsweep.train.loop import prepare_data, train
from memsweep.train.packed import make_packs
from memsweep.train.signals import STOP_SIGNALS, Interrupted, SignalGuard, interruptible
from memsweep.states import DONE

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


def cmd_train(args) -> int:
    cfg = config.compose_run(args.overrides)
    if args.cfg:
        return _print_config(cfg)
    rank, size, _ = distributed.world()
    if max(cfg.runtime.processes, size) > 1:  # before anything is written
        distributed.check(cfg, max(cfg.runtime.processes, size))
    config.check_writable(cfg)
    if cfg.runtime.processes > 1 and size == 1:  # K ranks of this same command (torchrun's environment)
        return distributed.launch(args.argv, cfg.runtime.processes)
    with interruptible(STOP_SIGNALS):  # SIGTERM / Ctrl-C: checkpoint between two steps, exit 143 / 130
        status = train(cfg, guard=SignalGuard(STOP_SIGNALS))
    if rank:
        return 0 if status["state"] in DONE else 1
    print(f"run {identity.run_id(cfg)}: {status['state']} at step {status.get('step')} "
          f"-> {identity.run_dir(cfg)}")
    return 0 if status["state"] in DONE else 1


def _print_config(cfg) -> int:
    """--cfg job: the run's composed config (resolved and checked, as it would train), as YAML."""
    print(f"# run {identity.run_id(cfg)}\n{OmegaConf.to_yaml(cfg)}", end="")
    return 0


def cmd_sweep(args) -> int:
    # `memsweep sweep data.n=16,32 seed=0,1`: no sweep file, the first word is an override
    file, overrides = args.sweep, list(args.overrides)
    if file is not None and ("=" in file or file.startswith("~")):
        file, overrides = None, [file, *overrides]
    # composes and validates every run first; data not on this machine is checked where it is read
    sweep = sweep_mod.expand(file, overrides, args.sweep_name, data_here=False)
    if args.cfg:
        return _print_config(sweep.runs[0].cfg)
    launcher = sweep.runs[0].cfg.launcher.name
    if launcher not in ("local", "slurm"):
        raise ConfigError(f"launcher={launcher}: unknown launcher (choose from: local, slurm)")
    if args.gpu is not None:
        cost_mod.rates(args.gpu)  # an unknown GPU is refused before anything else
    if not 0 < args.utilization <= 1:
        raise ConfigError(f"--utilization {args.utilization}: must be in (0, 1]")
    multi = max(r.cfg.runtime.processes for r in sweep.runs)
    if multi > 1 and not args.dry_run and launcher == "local":  # more than the devices here: refused before any write
        check_devices(sweep.runs, sweep.runs[0].cfg.launcher.workers)
    unread_files = next((m for m in sweep.unread if any(not is_read(r.cfg.data) for r in sweep.runs)), None)
    if unread_files and not args.dry_run:  # the run ids hold the files' fingerprint
        raise ConfigError(f"{unread_files}; launching needs the files on this machine (the run ids hold their "
                          "fingerprint); --dry-run plans without them")
    root = identity.output_root(sweep.runs[0].cfg)
    if not args.dry_run:
        config.check_writable(sweep.runs[0].cfg)
    todo, counts = sweep_mod.plan(sweep, retry=args.retry)
    if not args.dry_run:  # data=folder / npz: decoded once, bad files refused before launching; CIFAR-10 locally
        prepare_data([r.cfg for r in todo], here=launcher == "local")
    console = Console(width=160)
    for message, runs in sweep.unread.items():
        where = "the Slurm jobs read it where they run" if launcher == "slurm" else "checked where the runs read it"
        ids = "; the run ids hold the files' fingerprint, so those shown are provisional" if unread_files else ""
        console.print(f"warning: {message} [{runs} runs]; planned without it, {where}{ids}", markup=False)
    costs = [cost_mod.run_cost(r.cfg) for r in todo] if args.dry_run else None
    _print_plan(console, sweep, launcher, todo, counts, args, costs)
    if args.dry_run:
        _print_would_launch(console, sweep, todo, launcher)
        _print_cost(console, costs, args.gpu, args.utilization, todo)
        return 0
    if launcher == "slurm":
        check_slurm()
    sweep_dir = sweep.dir(root)
    sweep_mod.record(sweep, root)
    if not todo:
        console.print("nothing to launch")
        return 0
    if launcher == "slurm":
        submitted = submit_slurm(todo, sweep_dir)
        job_ids = list(dict.fromkeys(j for _, j in submitted))
        shown = " ".join(job_ids) if len(job_ids) <= 20 else f"{' '.join(job_ids[:3])} ... {job_ids[-1]}"
        console.print(f"submitted {len(job_ids)} jobs ({len(submitted)} runs): {shown}")
        console.print(f"follow them with: memsweep status {sweep.name}")
        return 0
    lcfg = sweep.runs[0].cfg.launcher
    with interruptible(STOP_SIGNALS):  # the launcher passes SIGTERM on to its workers, which checkpoint
        results = run_local(todo, workers=lcfg.workers, show_progress=not args.quiet, pack=lcfg.get("pack", 1))
    print_status(sweep_mod.load_record(root, sweep.name), root / "runs", console, show_all=args.all)
    tally = Counter(str(state) for state in results.values())  # the reason of each failure is logged above
    console.print(f"sweep {sweep.name}: " + ", ".join(f"{n} {state}" for state, n in tally.items()))
    return 0 if all(v in (*DONE, ELSEWHERE) for v in results.values()) else 1


def _print_plan(console, sweep, launcher: str, todo, counts: dict, args, costs=None) -> None:
    """The table of runs with what plan() decided for each (every row with --all, as CSV with --table), and
    the count of each decision; `costs` (of the runs in `todo`): their FLOPs, and GPU-hours with --gpu."""
    columns = ["run_id", *sweep.axes, "steps", "state", "action"]
    rows = [[r.run_id, *[str(r.axes.get(a)) for a in sweep.axes], str(r.cfg.train.total_steps), r.state, r.action]
            for r in sweep.runs]
    if costs is not None:
        of = {id(r): c for r, c in zip(todo, costs)}
        multi = any(c is not None and c.processes > 1 for c in costs)  # runs on K GPUs: GPUs and wall time shown
        columns += ["train FLOPs", "eval FLOPs"] + ([f"{args.gpu} GPU-h"] if args.gpu else [])
        columns += ["GPUs", "wall h"] if multi and args.gpu else []
        for r, row in zip(sweep.runs, rows):
            c = of.get(id(r))
            row += ["-", "-"] if c is None else [f"{c.train:.3g}", f"{c.eval:.3g}"]
            if args.gpu:
                row.append("-" if c is None else f"{c.gpu_hours(args.gpu, args.utilization):.3g}")
            if args.gpu and multi:
                row += ["-", "-"] if c is None else [str(c.processes), f"{c.wall_hours(args.gpu, args.utilization):.3g}"]
    print_table(console, f"sweep {sweep.name}: {len(sweep.runs)} runs, launcher={launcher}", columns, rows, args.all)
    console.print(", ".join(f"{v} {k}" for k, v in counts.items() if v) + f"; {len(todo)} to launch")
    if args.table:
        console.print(f"table of {len(rows)} runs: {write_table(args.table, columns, rows)}")


def _job_sizes(packs) -> str:
    """' of 4, 4, 3 runs' for a few jobs, ': 96 x 4 runs' for many."""
    return " of " + ", ".join(str(len(p)) for p in packs) + " runs" if len(packs) <= 8 else ": " + sizes(packs)


def _print_would_launch(console, sweep, todo, launcher: str) -> None:
    if launcher == "slurm":
        for res, packs in slurm_jobs(todo):
            k = int(res.get("processes") or 1)   # a run on K processes: one job of K tasks
            shape = task_layout(k, int(res.get("gpus_per_node") or 0))
            each = (f", each {k} tasks: {shape['tasks_per_node']} per node on {shape['nodes']} node(s) of "
                    f"{res.get('gpus_per_node') or 0} GPUs") if k > 1 else ""
            console.print(f"would submit {len(packs)} Slurm jobs{_job_sizes(packs)} "
                          f"(launcher.pack={res.get('pack', 1)}) as arrays of at most "
                          f"{res.get('max_array_size', 1000)} (partition={res.get('partition')}, "
                          f"timeout_min={res.get('timeout_min')}{each})")
    elif todo and max(r.cfg.runtime.processes for r in todo) > 1:
        console.print(describe_devices(todo, sweep.runs[0].cfg.launcher.workers))
    elif todo:
        lcfg = sweep.runs[0].cfg.launcher
        packs = make_packs([r.cfg for r in todo], lcfg.pack, lcfg.workers or os.cpu_count() or 1)
        console.print(f"would train them in {len(packs)} worker jobs{_job_sizes(packs)} (launcher.pack={lcfg.pack})")


def _print_cost(console, costs, gpu: str | None, utilization: float, todo) -> None:
    """The FLOPs of the runs to launch (`todo`), training and evaluation by part, and their GPU-hours on `gpu`."""
    known = [c for c in costs if c is not None]
    unknown = Counter(cost_mod.why_unknown(r.cfg) for r, c in zip(todo, costs) if c is None)
    for why, count in unknown.items():
        console.print(f"cost: unknown for {count} runs ({why})", markup=False)
    if not known:
        return
    train, parts = cost_mod.total(known)
    evaluation = sum(parts.values())
    by_part = ", ".join(f"{k} {v:.3g}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v)
    console.print(f"cost of {len(known)} runs ({sum(c.evaluations for c in known)} evaluations): training "
                  f"{sum(train.values()):.3g} FLOPs, evaluation {evaluation:.3g} FLOPs ({by_part}); "
                  "FLOPs of matrix products and convolutions (docs/guides/sweeps.md: what a sweep costs)", markup=False)
    for note in dict.fromkeys(n for c in known for n in c.notes):
        console.print(f"cost: {note}", markup=False)
    if gpu is None:
        console.print(f"GPU-hours: add --gpu ({', '.join(GPUS)})")
        return
    train_h = sum(cost_mod.hours(v, 0.0, dtype, gpu, utilization) for dtype, v in train.items())
    eval_h = cost_mod.hours(0.0, evaluation, "float32", gpu, utilization)
    # a run on K GPUs computes its metrics on rank 0 while the other K - 1 wait: they count too (Cost.gpu_hours)
    eval_h += sum((c.processes - 1) * cost_mod.hours(0.0, c.eval_alone, "float32", gpu, utilization) for c in known)
    console.print(f"estimate: {train_h + eval_h:.4g} GPU-hours on {gpu} (training {train_h:.4g}, evaluation "
                  f"{eval_h:.4g}); {cost_mod.describe_gpu(gpu, utilization)}", markup=False)


def cmd_status(args) -> int:
    root = _root(args)
    print_status(sweep_mod.load_record(root, args.name), root / "runs", show_all=args.all, table_path=args.table)
    return 0


def _device(name: str) -> str:
    """A torch device name, checked before any work."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name}: not a device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return name


def cmd_report(args) -> int:
    if args.max_samples is not None and args.max_samples < 4:
        raise ConfigError(f"--max-samples {args.max_samples}: must be at least 4 (precision/recall's k = 3)")
    path = make_report(_root(args), args.name, device=_device(args.device), max_samples=args.max_samples,
                       probes=not args.no_probes)
    print(f"report: {path}")
    try:
        where = wandb_report.log_report(_root(args), args.name, args.wandb_mode)
    except Exception as e:  # e.g. online without WANDB_API_KEY: the report itself is written, say what failed
        first = (str(e).splitlines() or [""])[0]
        print(f"memsweep: error: the report was not logged to wandb ({type(e).__name__}: {first}); "
              "--wandb-mode disabled skips it", file=sys.stderr)
        return 1
    if where:
        print(f"wandb ({args.wandb_mode or wandb_report.default_mode()}): {where}")
    return 0


def _root(args):
    """--output-root, else paths.output_root's default (its config file, without composing a run)."""
    return Path(args.output_root).expanduser().resolve() if args.output_root else config.default_output_root()


def cmd_eval(args) -> int:
    _device(args.device)
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise ConfigError(f"--threshold {args.threshold}: must be in (0, 1]")
    probes = {"els_bank": args.els_bank, "els_padding": args.els_padding,
              "els_patch": _els_patch(args.els_patch) if args.els_patch is not None else None}
    results = posthoc.evaluate_after(args.target, args.metrics, _root(args), features=args.features,
                             num_samples=args.num_samples, threshold=args.threshold, force=args.force,
                             device=args.device, steps=args.steps, data_root=args.data_root,
                             inception_path=args.inception_path, probes=probes)
    for r in results:
        keys = ", ".join(r["keys"]) if r["keys"] else "no new keys"
        notes = ("; " + "; ".join(dict.fromkeys(r["notes"]))) if r["notes"] else ""
        print(f"run {r['run_id']}: {r['status']}, {r['steps']} step(s) computed: {keys}{notes}")
    if any(r["status"] == "failed" for r in results):
        return 1
    return 3 if any(r["status"] == "locked" for r in results) else 0




def _els_patch(text: str):
    """--els-patch: an odd size, odd sizes separated by commas, or calibrated."""
    try:
        value = parse_patch(text)
    except ValueError:
        value = None
    sizes = () if value == CALIBRATED or value is None else value if isinstance(value, tuple) else (value,)
    if value is None or any(k < 1 or k % 2 == 0 for k in sizes):
        raise ConfigError(f"--els-patch {text}: give an odd patch size, odd sizes per equal bin of t (7,5,3) "
                          "or calibrated")
    return value


def _eval_arguments(p) -> None:
    """The arguments of `memsweep eval`."""
    p.add_argument("target", help="a run directory, a run id, or a sweep's name")
    p.add_argument("metrics", nargs="*", help=f"metrics to compute ({', '.join(posthoc.METRICS)}); "
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


def _config_arguments(p) -> None:
    """The Hydra-like options of train and sweep."""
    p.add_argument("-h", "--help", action="store_true", help="show this help, with the config groups and their options")
    p.add_argument("--cfg", "-c", choices=["job"], default=None,
                   help="job: print the composed config (of the sweep's first run) and exit, writing nothing")
    p.add_argument("--config-dir", action="append", default=[], metavar="DIR",
                   help=f"also look for configs (data/, model/, experiment/, sweep/, ...) in DIR, after memsweep's "
                        f"own (repeatable; {config.CONFIG_PATH_ENV}=DIR{os.pathsep}DIR does the same)")


def _print_help(args) -> int:
    """--help: argparse's, then the config groups and options found on the config search path (as Hydra's)."""
    print(args.parser.format_help())
    dirs = config.search_dirs()
    print(f"config groups (group=option; +group=option for one train.yaml leaves out), from {', '.join(map(str, dirs))}:")
    for group, (options, default) in config.config_groups().items():
        shown = ", ".join(f"{o} (default)" if o == default else o for o in options)
        print(f"  {'' if default else '+'}{group}: {shown}")
    if args.func is cmd_sweep:
        print(f"sweeps (memsweep sweep NAME): {', '.join(sweep_mod.known_sweeps())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memsweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=USAGE_EXAMPLES)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one run (resumes it if unfinished, skips it if finished)", add_help=False,
                       epilog=NETWORKS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.n=64 model=tiny optim.lr=3e-4")
    _config_arguments(p)
    p.set_defaults(func=cmd_train, parser=p)
    p = sub.add_parser("sweep", help="launch a sweep from configs/sweep/NAME.yaml and/or the command line's "
                       "sweeps (locally or on Slurm)", add_help=False)
    p.add_argument("sweep", nargs="?", metavar="NAME", help="a sweep in configs/sweep/ or a --config-dir's sweep/ "
                   "(demo, dataset_size, ...), or a path to a sweep file; leave out to sweep the command line only")
    p.add_argument("overrides", nargs="*", help="overrides applied to every run (launcher=slurm), and sweeps in "
                   "Hydra's syntax, each an axis: seed=0,1  data.n=range(16,65,16)  model=choice(tiny,c32)  model=glob(c*)")
    p.add_argument("--name", dest="sweep_name", metavar="NAME", default=None,
                   help="the sweep's name, for status, report and relaunching (default: the file's, then the swept "
                        "keys: demo_seed)")
    _config_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="print the runs and what would be launched, launch nothing")
    p.add_argument("--retry", action="store_true", help="also relaunch failed runs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--gpu", default=None, help=f"with --dry-run: GPU-hours on this GPU ({', '.join(GPUS)})")
    p.add_argument("--utilization", type=float, default=cost_mod.UTILIZATION,
                   help=f"with --gpu: the assumed fraction of the GPU's dense peak (default {cost_mod.UTILIZATION})")
    _table_arguments(p)
    p.set_defaults(func=cmd_sweep, parser=p)
    for name, func, helptext in (("status", cmd_status, "a table of a sweep's runs"),
                                 ("report", cmd_report, "analysis, figures and report.md of a sweep")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("name", help="the sweep's name")
        p.add_argument("--output-root", default=None, help="the output root (default: paths.output_root)")
        if name == "status":
            _table_arguments(p)
        if name == "report":
            p.add_argument("--wandb-mode", choices=wandb_report.MODES, default=None,
                           help="also log the report to wandb as a run of the sweep's group: offline (the default "
                                "unless WANDB_MODE says otherwise; `wandb sync` later), online, or disabled")
        if name == "report":
            p.add_argument("--no-probes", action="store_true", help="compute no probe missing from metrics.jsonl "
                           "(hybrid, els, traj: about 7 samplings per run and evaluation)")
        p.set_defaults(func=func)
        if name == "report":
            p.add_argument("--device", default="cpu", help="of the analyses of saved samples: cpu (default), "
                           "cuda, cuda:1, ... (computed once per evaluation, stored in each run's analysis/)")
            p.add_argument("--max-samples", type=int, default=None,
                           help="use at most the first N saved samples of each evaluation (stated in report.md)")
    p = sub.add_parser("eval", help="compute metrics after the fact from saved samples, added to metrics.jsonl")
    _eval_arguments(p)
    p.set_defaults(func=cmd_eval)
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
        config.use_config_dirs(getattr(args, "config_dir", ()))
        return _print_help(args) if getattr(args, "help", False) else args.func(args)
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
