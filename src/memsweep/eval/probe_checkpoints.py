"""Issue 16's probes of an evaluation's saved weights (metrics.probes: hybrid, els, traj), for `memsweep eval
RUN hybrid|els|traj`: the network rebuilt from checkpoints/eval_<N>.pt, sampled from the Evaluator's fixed noise
and labels with the run's sampler."""
from __future__ import annotations

import logging
import time

from memsweep.metrics.probe_settings import ProbeSettings
from memsweep.metrics.probes import ProbeInputs, run_probes
from memsweep.science import networks
from memsweep.store.run import RunStore

log = logging.getLogger("memsweep")


def inputs(cfg, ev, model) -> ProbeInputs:
    """The probes' inputs for an Evaluator `ev` of the run whose config is `cfg`."""
    e = cfg.eval
    return ProbeInputs(ev.formulation, model, ev.sample_noise, ev.sample_labels, int(e.sampler_steps),
                       str(e.sampler), ev.data.train_x, ev.data.train_y, ev.data.test_x, ev.null_label,
                       float(e.cfg_weight), float(e.mem_threshold), int(e.noise_seed))


def load_model(store: RunStore, cfg, num_classes: int, step: int, device):
    model = networks.build(cfg.model, cfg.data.image_size, cfg.data.channels, num_classes)
    model.load_state_dict(store.load_eval_weights(step, map_location="cpu"))
    return model.to(device).eval()


def probe_step(store: RunStore, cfg, ev, step: int, names, device, settings: ProbeSettings | None = None
               ) -> tuple[dict | None, str]:
    """The probes' keys at one evaluation step (with `settings`, else the run config's), or None and why not."""
    if not store.path("eval_weights", step).is_file():
        return None, f"step {step}: no evaluation weights for {', '.join(names)}"
    t0 = time.time()
    row, _ = run_probes(inputs(cfg, ev, load_model(store, cfg, ev.data.num_classes, step, device)), names,
                        settings or ProbeSettings.of_config(cfg))
    return row, f"{', '.join(names)} in {time.time() - t0:.1f}s"
