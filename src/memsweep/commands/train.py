"""`memsweep train`: train one run (resumed if unfinished, skipped if finished), on one process or K
(runtime.processes), and say where it ended."""
from __future__ import annotations

from memsweep import config
from memsweep.states import DONE
from memsweep.store import identity
from memsweep.store.run_dir import RunDir
from memsweep.train import distributed
from memsweep.train.loop import train
from memsweep.train.signals import STOP_SIGNALS, SignalGuard, interruptible


def last_evaluation(row: dict | None) -> str:
    """'; last evaluation (step 200): loss_gap 0.7241, mem_ratio 0.19', from the run's last metrics row."""
    if not row:
        return ""
    values = [f"{key} {row[key]:{fmt}}" for key, fmt in (("loss_gap", ".4f"), ("mem_ratio", ".2f"))
              if isinstance(row.get(key), (int, float))]
    return f"; last evaluation (step {row.get('step')}): {', '.join(values)}" if values else ""


def run(args) -> int:
    config.use_config_dirs(args.config_dir)
    cfg = config.compose_run(args.overrides)
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
          f"-> {identity.run_dir(cfg)}{last_evaluation(RunDir(identity.run_dir(cfg)).last_metrics())}")
    return 0 if status["state"] in DONE else 1
