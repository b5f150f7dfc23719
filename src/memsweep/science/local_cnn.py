"""A local convolutional network (configs/model/local_cnn.yaml), after Kamb & Ganguli's minimal networks (ICML
2025, "An analytic theory of creativity in convolutional diffusion models": a CNN of stride-1 convolutions, no
downsampling, no attention). Translation equivariant and local: output pixel q depends only on the
receptive_field x receptive_field patch of the input around q (no pooling, no attention, and no normalization
over pixels, which would mix the whole image), which is what the equivariant local score machine (science.els)
assumes of a network, so its samples are that machine's prediction for this network.

Built through the same `_target_` path as a user's network (science.networks): LocalCNN(image_size, in_channels,
num_classes, ...) with forward(x, noise, labels).

Layout: a 1x1 convolution in, `(receptive_field - 1) / (kernel_size - 1)` residual blocks (a kernel_size x
kernel_size convolution, a scale and shift from the noise and label embedding, a 1x1 convolution), a 1x1
convolution out (zero-initialized, as the U-Net's). Only the k x k convolutions widen the field, by k - 1 each.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from memsweep.science.unet import timestep_embedding

PADDINGS = ("zeros", "circular")


class LocalBlock(nn.Module):
    """h + mix(silu(conv(silu(h)) * (1 + scale) + shift)), conv k x k and mix 1x1: widens the field by k - 1."""

    def __init__(self, channels: int, emb_dim: int, kernel_size: int, padding: str):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, padding_mode=padding)
        self.emb = nn.Linear(emb_dim, 2 * channels)
        self.mix = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.mix.weight)   # each block starts as the identity
        nn.init.zeros_(self.mix.bias)

    def forward(self, h, emb):
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        return h + self.mix(F.silu(self.conv(F.silu(h)) * (1 + scale) + shift))


class LocalCNN(nn.Module):
    def __init__(self, image_size: int, in_channels: int, num_classes: int | None = None, receptive_field: int = 5,
                 kernel_size: int = 3, channels: int = 32, emb_dim: int = 64, padding: str = "zeros"):
        """`receptive_field`: odd, kernel_size + a multiple of kernel_size - 1 (3, 5, 7, ... with 3x3 kernels);
        `padding`: zeros (as memsweep's U-Net) or circular (Kamb & Ganguli's networks: exactly equivariant to
        cyclic shifts). `image_size` is not needed by a local network (accepted, as the contract passes it)."""
        super().__init__()
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size}: must be odd and at least 3")
        if receptive_field < kernel_size or receptive_field % 2 == 0 or (receptive_field - 1) % (kernel_size - 1):
            raise ValueError(f"receptive_field={receptive_field}: must be odd and {kernel_size} + a multiple of "
                             f"{kernel_size - 1} (kernel_size={kernel_size})")
        if padding not in PADDINGS:
            raise ValueError(f"padding={padding!r}: one of {', '.join(PADDINGS)}")
        self.receptive_field, self.emb_dim = receptive_field, emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None   # the last: no label
        self.inp = nn.Conv2d(in_channels, channels, 1)
        blocks = (receptive_field - 1) // (kernel_size - 1)
        self.blocks = nn.ModuleList(LocalBlock(channels, emb_dim, kernel_size, padding) for _ in range(blocks))
        self.out = nn.Conv2d(channels, in_channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(noise, self.emb_dim))
        if self.label_emb is not None:
            emb = emb + self.label_emb(labels)
        emb = F.silu(emb)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(h))
