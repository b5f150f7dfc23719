"""The equivariant local score (ELS) machine (Kamb & Ganguli, ICML 2025, "An analytic theory of creativity in
convolutional diffusion models"): the minimizer of the denoising loss among fields that are local (pixel q sees
only the k x k patch of x_t around q) and translation equivariant. At each pixel it is the formulation's closed
form on patches: a softmax over every patch of the training images at every position of
-||patch_q(x_t) - a(t) patch(y_i, q')||^2 / (2 s(t)^2), giving the posterior mean of the patch's centre pixel,
mapped to the formulation's prediction. Without equivariance (the LS machine) only patches at q' = q count;
with one patch as large as the image that is the plain closed form. Its samples are patch mosaics of the
training set, new images rather than copies: what a CNN does when it generalizes, on Kamb & Ganguli's account.

Pure functions: images (B, C, H, W), t (B,), a formulation's closed_form applied to flattened patches.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# patch size per equal bin of t over [0, 1] (t = 0 noise): large at high noise, small near the data, as Kamb &
# Ganguli's calibrated scales shrink along the reverse process; memsweep's default for 8x8 images
DEFAULT_PATCH = (7, 5, 5, 3, 3)
PADDINGS = ("zeros", "circular")   # the U-Net pads with zeros
CHUNK = 1 << 22                    # queries x references per closed-form call (memory: a few of these floats)


def patch_size(schedule, t: float) -> int:
    """The patch size of the bin of `schedule` (equal bins of t over [0, 1]) that t falls in."""
    sizes = [int(s) for s in ([schedule] if isinstance(schedule, int) else schedule)]
    return sizes[min(int(float(t) * len(sizes)), len(sizes) - 1)]


def patches(x: torch.Tensor, k: int, padding: str = "zeros") -> torch.Tensor:
    """Every k x k patch of x (k odd), centred on each pixel: (B, H * W, C * k * k), rows in raster order."""
    if k % 2 == 0 or padding not in PADDINGS:
        raise ValueError(f"patch size {k} must be odd, padding one of {PADDINGS}")
    p = k // 2
    xp = F.pad(x, (p, p, p, p), mode="circular") if padding == "circular" else F.pad(x, (p, p, p, p))
    return F.unfold(xp, k).transpose(1, 2)


def _centre(pred: torch.Tensor, channels: int, k: int) -> torch.Tensor:
    """The centre pixel of each flattened (C, k, k) patch: (M, C)."""
    return pred.view(-1, channels, k * k)[:, :, (k * k) // 2]


def _closed_form_chunked(formulation, q: torch.Tensor, t: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    rows = max(1, CHUNK // max(1, len(refs)))
    return torch.cat([formulation.closed_form(q[i:i + rows], t[i:i + rows], refs)
                      for i in range(0, len(q), rows)])


def els_prediction(formulation, x: torch.Tensor, t: torch.Tensor, train_x: torch.Tensor, k: int,
                   equivariant: bool = True, padding: str = "zeros") -> torch.Tensor:
    """The (E)LS machine's prediction at (x, t) over the training images `train_x`, with k x k patches."""
    b, c, h, w = x.shape
    q = patches(x, k, padding)                                   # (B, Q, D)
    refs = patches(train_x.to(x.dtype), k, padding)              # (n, Q, D)
    tq = t[:, None].expand(b, h * w)
    if equivariant:   # all patches at all positions: one reference set
        pred = _closed_form_chunked(formulation, q.reshape(b * h * w, -1), tq.reshape(-1),
                                    refs.reshape(-1, refs.shape[-1]))
        centre = _centre(pred, c, k).view(b, h * w, c)
    else:             # locality only: at q the training patches at q
        centre = torch.stack([_centre(_closed_form_chunked(formulation, q[:, j], t, refs[:, j]), c, k)
                              for j in range(h * w)], 1)
    return centre.transpose(1, 2).reshape(b, c, h, w)


def els_field(formulation, train_x: torch.Tensor, train_y: torch.Tensor, schedule=DEFAULT_PATCH,
              equivariant: bool = True, padding: str = "zeros"):
    """field(x, t, labels) for formulation.sample_field: the ELS machine given the class (over the training
    images of each row's class, all of them for a class without any), the patch size from `schedule` at t."""
    def field(x, t, labels):
        out = torch.empty_like(x)
        sizes = torch.tensor([patch_size(schedule, v) for v in t.tolist()], device=x.device)
        for k in sizes.unique().tolist():
            for cls in labels.unique().tolist():
                rows = (sizes == k) & (labels == cls)
                if not rows.any():
                    continue
                members = train_y == cls
                ref = train_x[members] if members.any() else train_x
                out[rows] = els_prediction(formulation, x[rows], t[rows], ref, int(k), equivariant,
                                           padding).to(x.dtype)
        return out
    return field
