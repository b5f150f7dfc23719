"""What a model config says of its network without building it (no torch): whether it names one by Hydra's
`_target_` (else memsweep's U-Net), and its label for tables. science.networks builds and checks networks.
"""
from __future__ import annotations

TARGET = "_target_"
LABEL = "name"                                           # memsweep's label for a network; not passed to it
SHAPE_ARGS = ("image_size", "in_channels", "num_classes")  # what memsweep passes from the data


def is_target(model_cfg) -> bool:
    """Whether the model config names its network by `_target_` (else: memsweep's U-Net)."""
    return model_cfg is not None and TARGET in model_cfg


def label(model_cfg) -> str | None:
    """The network's name for tables: model.name, else the last part of its `_target_`."""
    if model_cfg is None:
        return None
    name = model_cfg.get(LABEL)
    if name is None and is_target(model_cfg):
        return str(model_cfg[TARGET]).rsplit(".", 1)[-1]
    return None if name is None else str(name)
