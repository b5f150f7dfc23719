"""The GPUs memsweep can plan for: their dense peak throughputs, in one table (read by the dry run's GPU-hours,
sweeps.cost, and by scripts/gpu_check.py's fraction of the peak). No torch here: a dry run imports it."""
from __future__ import annotations

from memsweep.errors import ConfigError

# Dense peak throughputs in TFLOP/s (no sparsity), from NVIDIA's datasheets (SXM parts unless named):
# (bfloat16 tensor cores, TF32 tensor cores, plain FP32). None: the GPU has no such units (the FP32 rate is used).
GPUS: dict[str, tuple[float | None, float | None, float]] = {
    "v100": (None, None, 15.7),
    "a100": (312.0, 156.0, 19.5),
    "a800": (312.0, 156.0, 19.5),
    "a10": (125.0, 62.5, 31.2),
    "a40": (149.7, 74.8, 37.4),
    "l4": (121.0, 60.0, 30.3),
    "l40s": (362.1, 183.0, 91.6),
    "rtx4090": (165.2, 82.6, 82.6),
    "h100pcie": (756.0, 378.0, 51.2),
    "h100nvl": (835.0, 417.5, 60.0),
    "h100": (989.4, 494.7, 66.9),
    "h200nvl": (835.0, 417.5, 60.0),
    "h200": (989.4, 494.7, 66.9),
}

# torch.cuda.get_device_name's words -> the table's key, matched in this order (the first name found in it)
DEVICE_NAMES = (("H200 NVL", "h200nvl"), ("H200", "h200"), ("H100 NVL", "h100nvl"), ("H100 PCIe", "h100pcie"),
                ("H100", "h100"), ("A100", "a100"), ("A800", "a800"), ("L40S", "l40s"), ("L4", "l4"),
                ("A40", "a40"), ("A10", "a10"), ("RTX 4090", "rtx4090"), ("V100", "v100"))


def peaks(gpu: str) -> tuple[float | None, float | None, float]:
    """(bf16, tf32, fp32) dense peaks of a GPU of the table, in TFLOP/s; an unknown one is one line."""
    if gpu not in GPUS:
        raise ConfigError(f"--gpu {gpu}: unknown GPU (known: {', '.join(GPUS)})")
    return GPUS[gpu]


def rates(gpu: str) -> tuple[float, float]:
    """(training FLOP/s at bfloat16, FLOP/s at float32 via TF32) of a GPU's dense peak, in FLOP/s."""
    bf16, tf32, fp32 = peaks(gpu)
    return (bf16 or tf32 or fp32) * 1e12, (tf32 or fp32) * 1e12


def of_device(name: str) -> str | None:
    """The table's key of a CUDA device name (torch.cuda.get_device_name), None if not in it."""
    return next((key for words, key in DEVICE_NAMES if words in name), None)
