"""FLOP counts of a run's parts, by torch.utils.flop_counter on the meta device (no weights, no data): matrix
products and convolutions, 2 per multiply-add. sweeps.cost keeps each count (in the user's cache folder) and turns
them into a run's cost (this module is loaded only for a count not yet kept); scripts/gpu_check.py counts a
training step with it.
"""
from __future__ import annotations

import json
from functools import lru_cache

import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from memsweep import lazy
from memsweep.eval import features
from memsweep.science import networks, objective

INCEPTION_SIZE = 299  # clean-fid resizes every image to 299 x 299 for InceptionV3


def count(module: torch.nn.Module, *inputs) -> int:
    """FLOPs of module(*inputs), counted on the meta device."""
    with FlopCounterMode(display=False) as counter:
        module(*inputs)
    return int(counter.get_total_flops())


_uncounted: dict[str, str] = {}   # model config (JSON) -> why its network's FLOPs cannot be counted here


@lru_cache(maxsize=None)
def _forward_flops(model_json: str, image_size: int, channels: int, num_classes: int) -> int | None:
    try:
        with torch.device("meta"):
            model = networks.build(OmegaConf.create(json.loads(model_json)), image_size, channels, num_classes)
            x = torch.empty(1, channels, image_size, image_size)
            t, y = torch.empty(1), torch.zeros(1, dtype=torch.long)
            return count(model, x, t, y)
    except Exception as e:   # a network of the user's (model._target_) that cannot run on the meta device
        _uncounted[model_json] = f"{type(e).__name__}: {' '.join(str(e).split())}"
        return None


def forward_flops(model_cfg, image_size: int, channels: int, num_classes: int) -> int | None:
    """FLOPs of one forward pass of the run's network for one sample (cached by model config and image shape:
    a sweep of 1,000 runs counts each architecture once); None when its network cannot be run on the meta
    device (`uncounted` says why)."""
    model = json.dumps(OmegaConf.to_container(OmegaConf.create(model_cfg), resolve=True), sort_keys=True)
    return _forward_flops(model, int(image_size), int(channels), int(num_classes))


def uncounted(model_cfg) -> str | None:
    """Why the FLOPs of this model config could not be counted (forward_flops returned None), else None."""
    return _uncounted.get(json.dumps(OmegaConf.to_container(OmegaConf.create(model_cfg), resolve=True),
                                     sort_keys=True))


@lru_cache(maxsize=None)
def feature_flops(spec: str) -> int | None:
    """FLOPs per image of a feature space's network: 0 for pixels, None when unknown here (a TorchScript file)."""
    if spec == "pixels":
        return 0
    with torch.device("meta"):
        if spec == "inception":  # clean-fid's network is InceptionV3 up to the pool3 features
            # torchvision pulls in torch._dynamo (~3 s): loaded for this count only
            torchvision = lazy.load("torchvision")
            net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
            net.fc = torch.nn.Identity()
            x = torch.empty(1, 3, INCEPTION_SIZE, INCEPTION_SIZE)
        elif spec == "digitnet":
            net, x = features._DigitCNN(), torch.empty(1, 1, 8, 8)  # its architecture; no weights needed
            return count(net.embed, x)
        else:
            return None
    return count(net, x)


def step_flops(model_cfg, image_size: int, channels: int, num_classes: int) -> tuple[int, int]:
    """(forward, forward + backward) FLOPs of one image through the network in a training step: the weights'
    gradients, not the input's (the data needs none), counted on a batch of 2 on the meta device."""
    batch = 2
    with torch.device("meta"):
        model = networks.build(model_cfg, image_size, channels, num_classes)
        x = torch.empty(batch, channels, image_size, image_size)
        t, y = torch.empty(batch), torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        out = model(x, t, y)
        forward = counter.get_total_flops()
        out.float().pow(2).mean().backward()
        both = counter.get_total_flops()
    return forward // batch, both // batch


def sampler_evaluations(objective_block: dict, method: str, steps: int) -> int:
    """How many times the sampler of the formulation `objective_block` (a run's objective block) calls the
    network per sample: counted by running it on a stand-in field."""
    calls = []

    def field_(x, t, labels):
        calls.append(1)
        return torch.zeros_like(x)
    formulation = objective.of_config({"objective": objective_block})
    formulation.sample_field(field_, torch.zeros(1, 1, 2, 2), torch.zeros(1, dtype=torch.long), steps, method)
    return len(calls)
