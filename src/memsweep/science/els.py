"""The equivariant local score (ELS) machine (Kamb & Ganguli, ICML 2025, "An analytic theory of creativity in
convolutional diffusion models"): the minimizer of the denoising loss among fields that are local (pixel q sees
only the k x k patch of x_t around q) and translation equivariant. At each pixel it is the formulation's closed
form on patches: a softmax over every patch of the training images at every position of
-||patch_q(x_t) - a(t) patch(y_i, q')||^2 / (2 s(t)^2), giving the posterior mean of the patch's centre pixel,
mapped to the formulation's prediction. Without equivariance (the LS machine) only patches at q' = q count;
with one patch as large as the image that is the plain closed form. Its samples are patch mosaics of the
training set, new images rather than copies: what a CNN does when it generalizes, on Kamb & Ganguli's account.

Two conventions for the bank of training patches (`bank`):
- "padded" (memsweep's): a patch centred on every pixel of every training image, the image padded as the
  query is (`padding`: zeros, as the U-Net's convolutions, or circular: wrap-around patches), H * W per image;
- "interior" (Kamb & Ganguli's `utils/idealscore.py`, LocalEquivScoreModule: F.unfold without padding): only the
  (H - k + 1)^2 patches that lie inside the image; their query is padded circularly (padding="circular").
At high SNR the two differ most (a border pixel of the query finds its match among padded patches only).

The patch size per noise level is a schedule (`patch_size`): one size, sizes per equal bin of t, or sizes per
sampler time {t: k} as `calibrate` finds them (Kamb & Ganguli's scales_calibration.py: along the network's own
sampling path, at each step the k whose ELS score has the highest cosine similarity to the network's score,
the median over samples).

Pure functions: images (B, C, H, W), t (B,), a formulation's closed_form applied to flattened patches.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from memsweep.science.els_settings import BANKS, CALIBRATION_SIZES, DEFAULT_PATCH, PADDINGS, candidate_sizes

CHUNK = 1 << 22                    # queries x references per closed-form call (memory: a few of these floats)


def patch_size(schedule, t: float) -> int:
    """The patch size at time t: `schedule` one size, sizes per equal bin of t over [0, 1] (the bin t falls
    in), or {sampler time: size} (the size at the nearest time: a calibrated schedule)."""
    if isinstance(schedule, dict):
        return int(schedule[min(schedule, key=lambda s: abs(float(s) - float(t)))])
    sizes = [int(s) for s in ([schedule] if isinstance(schedule, int) else schedule)]
    return sizes[min(int(float(t) * len(sizes) + 1e-6), len(sizes) - 1)]   # + 1e-6: a time on a bin's edge


def bank_patches(train_x: torch.Tensor, k: int, bank: str = "padded", padding: str = "zeros") -> torch.Tensor:
    """The training patches the machine averages: (n, P, C * k * k), P = H * W (padded: at every pixel, the
    images padded by `padding`) or (H - k + 1) * (W - k + 1) (interior: inside the images only)."""
    if bank not in BANKS:
        raise ValueError(f"bank={bank!r}: one of {', '.join(BANKS)}")
    if bank == "padded":
        return patches(train_x, k, padding)
    if k % 2 == 0 or k > min(train_x.shape[-2:]):
        raise ValueError(f"patch size {k}: an interior patch must be odd and fit in the "
                         f"{train_x.shape[-2]}x{train_x.shape[-1]} image")
    return F.unfold(train_x, k).transpose(1, 2)


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
                   equivariant: bool = True, padding: str = "zeros", bank: str = "padded") -> torch.Tensor:
    """The (E)LS machine's prediction at (x, t) over the training images `train_x`, with k x k patches of the
    query padded by `padding`, against the training patches of `bank` (bank_patches)."""
    b, c, h, w = x.shape
    if not equivariant and bank != "padded":
        raise ValueError("the LS machine (equivariant=False) compares patches at the same pixel: bank='padded'")
    q = patches(x, k, padding)                                   # (B, Q, D)
    refs = bank_patches(train_x.to(x.dtype), k, bank, padding)   # (n, P, D)
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
              equivariant: bool = True, padding: str = "zeros", bank: str = "padded"):
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
                                           padding, bank).to(x.dtype)
        return out
    return field


def _score_direction(formulation, x: torch.Tensor, t: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """a(t) E[x1 | x] - x: the score s(t)^2 grad log p(x) up to the positive factor 1 / s(t)^2 (one per row),
    so its cosine with another is the scores' cosine (Kamb & Ganguli compare scores)."""
    a, _ = formulation.scales(t)
    return (a.view(-1, *[1] * (x.dim() - 1)) * formulation.denoised(x, t, pred.float()) - x).flatten(1)


def calibrate(formulation, network, x0: torch.Tensor, labels: torch.Tensor, steps: int, method: str,
              train_x: torch.Tensor, train_y: torch.Tensor, sizes=CALIBRATION_SIZES, padding: str = "zeros",
              bank: str = "padded") -> dict:
    """Kamb & Ganguli's calibration of the patch size against a network (scales_calibration.py, eval_mode cos):
    sample with the network's field `network` from x0; at every point where the sampler calls it, compute each
    candidate size's ELS prediction at the network's state, take the cosine similarity of the two scores per
    sample (whole images), and keep the size with the highest. Per sampler time: the median of the samples'
    sizes (theirs: `median`, the lower middle one) and the mean of their best cosines.

    Returns {"t": [...], "patch": [...], "cos": [...]} over the sampler's distinct times, in order, and
    "schedule": {t: size} for els_field. Where every size gives the same score (rectified flow at t = 0,
    a(t) = 0: the score is -x whatever the machine) the smallest size wins, as their argmax picks the first."""
    sizes = candidate_sizes(x0.shape[-1], bank, sizes)
    choices: dict[float, list] = {}
    best_cos: dict[float, list] = {}

    def field(x, t, y):
        pred = network(x, t, y)
        own = _score_direction(formulation, x, t, pred)
        cos = torch.stack([F.cosine_similarity(_score_direction(formulation, x, t, els_field(
            formulation, train_x, train_y, k, True, padding, bank)(x, t, y)), own, dim=1) for k in sizes])
        key = round(float(t[0]), 6)
        top = cos.max(0)
        first = (cos == top.values).float().argmax(0)   # ties: the smallest size, as torch.argmax on theirs
        choices.setdefault(key, []).append(torch.tensor(sizes, device=x.device)[first])
        best_cos.setdefault(key, []).append(top.values)
        return pred

    formulation.sample_field(field, x0, labels, steps, method)
    ts = sorted(choices)
    patch = [int(torch.cat(choices[s]).median()) for s in ts]
    return {"t": ts, "patch": patch, "cos": [float(torch.cat(best_cos[s]).mean()) for s in ts],
            "schedule": dict(zip(ts, patch)), "sizes": list(sizes)}
