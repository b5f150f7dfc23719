"""The network seam: memsweep's U-Net (science.unet), or any torch.nn.Module a model config names by Hydra's
`_target_`, built by hydra.utils.instantiate behind one contract (docs/networks.md):

    net = instantiate(model config, image_size=H, in_channels=C, num_classes=K)   # K = None: unconditional
    out = net(x, noise, labels)

    x       (B, C, H, W) float32 (or bfloat16 under train.dtype=bfloat16): the formulation's network input
            (rectified flow, vp: x_t itself; edm: c_in x)
    noise   (B,) float: the noise-level input, by objective: rectified_flow t in [0, 1] (t = 0 noise, t = 1 data);
            vp t = 1 - k / T (k the DDPM step); edm c_noise = ln(sigma) / 4 (Karras et al. 2022, table 1)
    labels  (B,) int64 in [0, K]: the class, K meaning "no label" (label dropout, classifier-free guidance);
            all 0 when unconditional (K = None): nothing to read
    out     (B, C, H, W): the formulation's raw network output: rectified_flow the velocity, vp the noise
            epsilon, edm F (memsweep preconditions it into the denoiser)

The model config's other keys are the target's keyword arguments; `name` (optional) is memsweep's label for it
(the report's `model` column) and is not passed. A model config without `_target_` is memsweep's U-Net (configs
model=tiny, c32, ...: their keys are science.unet.UNet's). `check` builds a target's network on the meta device
(no weights, no memory) and runs it once on a batch of two, so a network that cannot be imported, built or run,
or returns another shape, is refused when the run is composed.
"""
from __future__ import annotations

import json
import logging
import re
from functools import lru_cache

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from memsweep.science import unet
from memsweep.science.network_spec import LABEL, SHAPE_ARGS, TARGET, is_target


def _plain(model_cfg) -> dict:
    return OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dict(model_cfg)


def build(model_cfg, image_size: int, in_channels: int, num_classes: int | None, copies: int = 1) -> torch.nn.Module:
    """The run's network. `num_classes`: the classes the model is conditioned on (0 or None: unconditional).
    `copies` > 1 (a pack of runs) exists only for memsweep's U-Net."""
    if not is_target(model_cfg):
        return unet.build(model_cfg, image_size, in_channels, int(num_classes or 0), copies=copies)
    if copies != 1:
        raise ValueError(f"{model_cfg[TARGET]}: only memsweep's U-Net trains packed")
    spec = _plain(model_cfg)
    spec.pop(LABEL, None)
    spec.setdefault("_convert_", "all")   # plain lists and dicts for the network's arguments
    return instantiate(spec, image_size=int(image_size), in_channels=int(in_channels),
                       num_classes=int(num_classes) if num_classes else None)


def _cause(e: BaseException) -> str:
    """The error under Hydra's InstantiationException, on one line."""
    root = e.__cause__ if isinstance(e, InstantiationException) and e.__cause__ is not None else e
    text = str(root)
    if isinstance(root, ImportError):   # Hydra's: "Error loading 'a.b':\n<the real error>\nAre you sure that ..."
        attr = re.search(r"that '(\w+)' is importable from module '([\w.]+)'", text)
        if attr:
            return f"module {attr.group(2)} has no {attr.group(1)}"
        real = re.search(r"No module named '([\w.]+)'", text)
        return f"no module named {real.group(1)}" if real else " ".join(text.split())
    return f"{type(root).__name__}: {' '.join(text.split())}"


def check(model_cfg, image_size: int | None, in_channels: int | None, num_classes: int | None) -> str | None:
    """Why the run's network breaks the contract, in one line without the setting's name (None: it keeps it).
    memsweep's U-Net is not checked (its keys are the schema's). Without the image shape (data not read on
    this machine) only the import is checked."""
    if not is_target(model_cfg):
        return None
    spec = _plain(model_cfg)
    target = spec.get(TARGET)
    given = [k for k in SHAPE_ARGS if k in spec]
    if given:
        return (f"sets {', '.join(given)}, which memsweep passes from the data (image_size=data.image_size, "
                "in_channels=data.channels, num_classes); leave them out")
    hydra_log = logging.getLogger("hydra.utils")   # get_object logs the error it raises: say it once, here
    hydra_log.disabled, was = True, hydra_log.disabled
    try:
        get_object(str(target))
    except Exception as e:
        return f"cannot import {target} ({_cause(e)}; is its package installed, or on PYTHONPATH?)"
    finally:
        hydra_log.disabled = was
    if image_size is None or in_channels is None:
        return None
    return _checked(json.dumps(spec, sort_keys=True, default=str), int(image_size), int(in_channels),
                    int(num_classes) if num_classes else None)


@lru_cache(maxsize=None)
def _checked(spec_json: str, image_size: int, in_channels: int, num_classes: int | None) -> str | None:
    """check's build and forward pass, once per network and shape in a process (a sweep composes many runs)."""
    spec = json.loads(spec_json)
    problem = None
    for device in ("meta", "cpu"):   # meta first: no memory; a network that cannot run there is tried for real
        problem = _try(spec, image_size, in_channels, num_classes, torch.device(device))
        if problem is None:
            return None
    return problem


def _try(spec: dict, image_size: int, in_channels: int, num_classes: int | None, device) -> str | None:
    with torch.device(device):
        try:
            net = build(spec, image_size, in_channels, num_classes)
        except Exception as e:
            return (f"cannot build it with image_size={image_size}, in_channels={in_channels}, "
                    f"num_classes={num_classes} and its settings ({_cause(e)})")
        if not isinstance(net, torch.nn.Module):
            return f"builds a {type(net).__name__}, not a torch.nn.Module"
        x = torch.zeros(2, in_channels, image_size, image_size)
        noise, labels = torch.full((2,), 0.5), torch.zeros(2, dtype=torch.long)
        try:
            with torch.no_grad():
                out = net(x, noise, labels)
        except Exception as e:
            return f"its forward(x, noise, labels) fails on x of shape {tuple(x.shape)} ({_cause(e)})"
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(x.shape):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return f"its forward returns {shape} for x of shape {tuple(x.shape)}: it must return x's shape"
    return None

