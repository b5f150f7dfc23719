"""The --device option of `memsweep report` and `memsweep eval`, checked before any work."""
from __future__ import annotations

import torch

from memsweep.errors import ConfigError


def checked_device(name: str) -> str:
    """A torch device name that exists here, or a ConfigError naming the option."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name}: not a device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return name
