"""Where sampling trajectories go (the train/test loss gap at intermediate noise levels: the network is trained
only near noised training images, x_t = a(t) y_i + s(t) z). For a state x at time t, its distance to the nearest
noised training image's mean a(t) y_i in units of the noise scale, per pixel:

    d(x, t) = min_i ||x - a(t) y_i|| / (s(t) sqrt(D))

about 1 for points of the training domain (noised training images), larger off it. The sampler's states,
noised training images and noised test images give three curves against the noise level."""
from __future__ import annotations

import torch


def domain_distance(formulation, x: torch.Tensor, t: torch.Tensor, train_x: torch.Tensor,
                    block: int = 1024) -> torch.Tensor:
    """d(x, t) for each row of x (t one time for the batch, shape (B,)): (B,)."""
    a, s = formulation.scales(t[:1].float())
    means = (a.view(()) * train_x.float()).flatten(1)
    flat = x.float().flatten(1)
    best = torch.cat([torch.cdist(flat[i:i + block], means).min(1).values for i in range(0, len(flat), block)])
    return best / (s.view(()) * flat.shape[1] ** 0.5)


def noised(formulation, images: torch.Tensor, t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """images noised to time t with fresh noise from `generator`."""
    z = torch.randn(images.shape, generator=generator).to(images.device, images.dtype)
    return formulation.noise(images, z, t)
