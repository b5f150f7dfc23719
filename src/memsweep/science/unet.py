"""A class-conditional U-Net for velocity prediction (DDPM++-style, scaled from CPU-tiny to the paper's).

The paper's network: 128 base channels, channel multipliers (1, 2, 4), 3 residual blocks per level,
self-attention with head dimension 64, noise and label embeddings of dimension 512. Presets in
configs/model/ set these numbers; the code is the same at every size.

`copies=K` builds K independent U-Nets of one architecture as one network (for training K runs packed,
memsweep.train.packed): every layer is grouped -- convolutions with K groups, K groups of GroupNorm groups, a
batched matmul for the linear layers -- so each kernel does K models' work. Parameter k of copy j is row block
j of the packed parameter (`param.view(K, *shape)[j]`), and copies=1 is the plain U-Net.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _norm(channels: int, copies: int = 1) -> nn.GroupNorm:
    groups = min(32, max(1, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(copies * groups, copies * channels)  # each copy's groups are its own channels


def _conv(cin: int, cout: int, kernel: int, copies: int = 1, **kw) -> nn.Conv2d:
    return nn.Conv2d(copies * cin, copies * cout, kernel, groups=copies, **kw)


class PackedLinear(nn.Module):
    """K linear layers (in -> out) on (B, K*in) inputs: weight (K*out, in), bias (K*out), like nn.Linear's per copy."""

    def __init__(self, cin: int, cout: int, copies: int):
        super().__init__()
        self.copies = copies
        self.weight = nn.Parameter(torch.empty(copies * cout, cin))
        self.bias = nn.Parameter(torch.zeros(copies * cout))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x):
        K, (B, _) = self.copies, x.shape
        w = self.weight.view(K, -1, self.weight.shape[1])
        y = torch.baddbmm(self.bias.view(K, 1, -1), x.view(B, K, -1).transpose(0, 1), w.transpose(1, 2))
        return y.transpose(0, 1).reshape(B, -1)


def _linear(cin: int, cout: int, copies: int = 1) -> nn.Module:
    return nn.Linear(cin, cout) if copies == 1 else PackedLinear(cin, cout, copies)


def _cat(a, b, copies: int):
    """torch.cat([a, b], dim=1) of each copy: channels stay grouped by copy. Channels-last inputs give a
    channels-last output (concatenated as NHWC), so the next convolution does not copy it back."""
    if a.dim() == 4 and a.is_contiguous(memory_format=torch.channels_last) and not a.is_contiguous():
        nhwc = [x.permute(0, 2, 3, 1).unflatten(3, (copies, -1)) for x in (a, b)]
        return torch.cat(nhwc, dim=4).flatten(3, 4).permute(0, 3, 1, 2)
    return torch.cat([a.unflatten(1, (copies, -1)), b.unflatten(1, (copies, -1))], dim=2).flatten(1, 2)


def _down(x):
    return F.avg_pool2d(x, 2)


def _up(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")


class ResBlock(nn.Module):
    """Two 3x3 convs with a scale-and-shift from the (noise + label) embedding in between. `resample` "down" or
    "up": the block also halves or doubles the resolution, of both paths, before its first conv (BigGAN's
    residual up/down-sampling, as Dhariwal & Nichol 2021's `resblock_updown`)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float, copies: int = 1,
                 resample: str | None = None):
        super().__init__()
        self.copies = copies
        self.resample = {None: None, "down": _down, "up": _up}[resample]
        self.norm1, self.conv1 = _norm(cin, copies), _conv(cin, cout, 3, copies, padding=1)
        self.emb = _linear(emb_dim, 2 * cout, copies)
        self.norm2, self.conv2 = _norm(cout, copies), _conv(cout, cout, 3, copies, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = _conv(cin, cout, 1, copies) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable early training
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, emb):
        h = F.silu(self.norm1(x))
        if self.resample is not None:
            h, x = self.resample(h), self.resample(x)
        h = self.conv1(h)
        scale, shift = self.emb(emb).unflatten(1, (self.copies, 2, -1)).unbind(2)  # (B, K, cout) each
        h = F.silu(self.norm2(h) * (1 + scale.flatten(1)[:, :, None, None]) + shift.flatten(1)[:, :, None, None])
        return self.skip(x) + self.conv2(self.dropout(h))


class Attention(nn.Module):
    def __init__(self, channels: int, head_dim: int, copies: int = 1):
        super().__init__()
        self.heads, self.copies = max(1, channels // head_dim), copies
        self.norm, self.qkv = _norm(channels, copies), _conv(channels, 3 * channels, 1, copies)
        self.out = _conv(channels, channels, 1, copies)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, self.copies, 3, self.heads, c // self.copies // self.heads, h * w)
        q, k, v = qkv.unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class Block(nn.Module):
    """A residual block, optionally followed by attention (one unit of a U-Net level)."""

    def __init__(self, cin, cout, emb_dim, dropout, attn: bool, head_dim: int, copies: int = 1):
        super().__init__()
        self.res = ResBlock(cin, cout, emb_dim, dropout, copies)
        self.attn = Attention(cout, head_dim, copies) if attn else None

    def forward(self, x, emb):
        x = self.res(x, emb)
        return self.attn(x) if self.attn is not None else x


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1] (scaled by 1000, as for discrete diffusion steps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


RESAMPLE = ("conv", "resblock")


class UNet(nn.Module):
    def __init__(self, image_size: int, in_channels: int, num_classes: int, channels: int = 128,
                 channel_mult=(1, 2, 4), num_res_blocks: int = 3, attn_resolutions=(16,),
                 head_dim: int = 64, emb_dim: int = 512, dropout: float = 0.0, copies: int = 1,
                 resample: str = "conv"):
        """`resample`, between two levels: "conv" (a strided 3x3 conv down, nearest-neighbour up with no conv;
        memsweep's first U-Net) or "resblock" (a residual block that resamples, both ways: Dhariwal & Nichol
        2021's `resblock_updown`)."""
        super().__init__()
        if resample not in RESAMPLE:
            raise ValueError(f"resample={resample!r}: one of {', '.join(RESAMPLE)}")
        self.num_classes, self.channels, self.copies = num_classes, channels, copies
        K = copies
        self.time_mlp = nn.Sequential(_linear(channels, emb_dim, K), nn.SiLU(), _linear(emb_dim, emb_dim, K))
        self.label_emb = nn.Embedding(K * (num_classes + 1), emb_dim)  # the last index is "no label" (CFG)
        self.inp = _conv(in_channels, channels, 3, K, padding=1)

        widths = [channels * m for m in channel_mult]
        self.down, skips, res, c = nn.ModuleList(), [channels], image_size, channels
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                self.down.append(Block(c, width, emb_dim, dropout, res in attn_resolutions, head_dim, K))
                c = width
                skips.append(c)
            if level < len(widths) - 1:
                self.down.append(_conv(c, c, 3, K, stride=2, padding=1) if resample == "conv"
                                 else ResBlock(c, c, emb_dim, dropout, K, resample="down"))
                skips.append(c)
                res //= 2
        self.mid = nn.ModuleList([Block(c, c, emb_dim, dropout, True, head_dim, K),
                                  Block(c, c, emb_dim, dropout, False, head_dim, K)])
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(num_res_blocks + 1):
                self.up.append(Block(c + skips.pop(), width, emb_dim, dropout, res in attn_resolutions, head_dim, K))
                c = width
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest") if resample == "conv"
                               else ResBlock(c, c, emb_dim, dropout, K, resample="up"))
                res *= 2
        self.out = nn.Sequential(_norm(c, K), nn.SiLU(), _conv(c, in_channels, 3, K, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Velocity u(x, t, y). `labels == num_classes` means unconditional.
        Packed (any number of copies K): x (B, K, C, H, W), t and labels (B, K); copy k sees x[:, k], t[:, k],
        labels[:, k] and returns out[:, k]."""
        K, packed = self.copies, t.dim() == 2
        if packed:
            x = x.flatten(1, 2)
            labels = labels + (self.num_classes + 1) * torch.arange(K, device=labels.device)  # copy k's table rows
        emb = self.time_mlp(timestep_embedding(t, self.channels).flatten(1))
        emb = F.silu(emb + self.label_emb(labels).flatten(1))
        h = self.inp(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, (Block, ResBlock)) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            if isinstance(layer, Block):
                h = layer(_cat(h, hs.pop(), K), emb)
            else:   # the resampling between two levels: no skip
                h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        out = self.out(h)
        return out.unflatten(1, (K, -1)) if packed else out


def build(model_cfg, image_size: int, in_channels: int, num_classes: int, copies: int = 1) -> UNet:
    """The U-Net of a model config; model.resample, absent from the shipped configs, takes UNet's default."""
    given = {"resample": model_cfg.resample} if "resample" in model_cfg else {}
    return UNet(image_size, in_channels, num_classes, channels=model_cfg.channels,
                channel_mult=tuple(model_cfg.channel_mult), num_res_blocks=model_cfg.num_res_blocks,
                attn_resolutions=tuple(model_cfg.attn_resolutions), head_dim=model_cfg.head_dim,
                emb_dim=model_cfg.emb_dim, dropout=model_cfg.dropout, copies=copies, **given)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
