"""The metrics `memsweep eval` computes after the fact, by name, and the config key of each one's feature space
(no torch: the command's --help lists them before anything is loaded)."""
from __future__ import annotations

from memsweep.metrics.probe_settings import PROBES

METRICS = ("mem", "copy", "fd", "fid", "sw", "kid", "mifid", *PROBES)
# the config key of each metric's feature space (mem: always pixels unless --features)
SPACE_KEYS = {"sw": "sw_features", "fd": "fid_features", "copy": "copy_features", "kid": "kid_features",
              "mifid": "mifid_features"}
