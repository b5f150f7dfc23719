"""`memsweep eval`: metrics computed after the fact from the saved samples and evaluation weights of a run or a
sweep's runs, added to their metrics.jsonl."""
from __future__ import annotations

from memsweep.shipped_configs import given_output_root
from memsweep.commands.device import checked_device
from memsweep.errors import ConfigError
from memsweep.eval import posthoc
from memsweep.metrics.probe_settings import CALIBRATED, parse_patch


def run(args) -> int:
    checked_device(args.device)
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise ConfigError(f"--threshold {args.threshold}: must be in (0, 1]")
    probes = {"els_bank": args.els_bank, "els_padding": args.els_padding,
              "els_patch": _els_patch(args.els_patch) if args.els_patch is not None else None}
    results = posthoc.evaluate_after(args.target, args.metrics, given_output_root(args.output_root),
                                     features=args.features, num_samples=args.num_samples,
                                     threshold=args.threshold, force=args.force, device=args.device,
                                     steps=args.steps, data_root=args.data_root,
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
