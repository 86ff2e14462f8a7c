"""Random crop, horizontal flip and Cutout for a whole batch in a few tensor ops (issue 21).

The same distributions as torchvision's per-sample ``RandomCrop(size, padding=p)`` (zero fill),
``RandomHorizontalFlip()`` and ``RandomErasing(p=0.5, value=0)``, drawn for all N images at once from torch's
global generator (which ``fit`` saves and restores, so a resumed run continues the same stream). Per-sample
transforms cost tens of µs an image in Python; these cost a few tensor ops per batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["random_crop_flip", "random_erasing"]


def random_crop_flip(x: Tensor, padding: int, flip: bool) -> Tensor:
    """``x`` [N, C, H, W] zero-padded by ``padding``, cropped back to H×W at a uniform random offset per image,
    then mirrored left-right with probability ½ per image (``flip``)."""
    n, _, h, w = x.shape
    if padding > 0:
        offsets = torch.randint(0, 2 * padding + 1, (2, n))
        padded = F.pad(x, (padding, padding, padding, padding))
        rows = (offsets[0, :, None] + torch.arange(h)).view(n, 1, h, 1)
        cols = (offsets[1, :, None] + torch.arange(w)).view(n, 1, 1, w)
        x = padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(x.shape[1]).view(1, -1, 1, 1), rows, cols]
    if flip:
        mirror = torch.rand(n) < 0.5
        x = torch.where(mirror.view(n, 1, 1, 1), x.flip(-1), x)
    return x


def random_erasing(
    x: Tensor,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: float = 0.0,
    attempts: int = 10,
) -> Tensor:
    """torchvision's ``RandomErasing`` for every image of ``x`` [N, C, H, W]: with probability ``p`` a rectangle of
    area ``scale`` × H·W and aspect ``ratio`` (log-uniform) is set to ``value``; the first of ``attempts`` draws
    that fits is used, none if none fits (as torchvision)."""
    n, _, h, w = x.shape
    area = h * w
    target = area * torch.empty(n, attempts).uniform_(*scale)
    aspect = torch.exp(torch.empty(n, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    eh = torch.sqrt(target * aspect).round().long()
    ew = torch.sqrt(target / aspect).round().long()
    fits = (eh < h) & (ew < w)
    first = torch.where(fits.any(1), fits.float().argmax(1), -1)
    chosen = (torch.rand(n) < p) & (first >= 0)
    k = first.clamp_min(0).view(n, 1)
    eh, ew = eh.gather(1, k).view(n), ew.gather(1, k).view(n)
    top = (torch.rand(n) * (h - eh + 1).clamp_min(1)).long()
    left = (torch.rand(n) * (w - ew + 1).clamp_min(1)).long()
    r, c = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    inside = ((r >= top.view(n, 1, 1)) & (r < (top + eh).view(n, 1, 1)) & (c >= left.view(n, 1, 1))
              & (c < (left + ew).view(n, 1, 1)) & chosen.view(n, 1, 1))  # fmt: skip
    return x.masked_fill(inside.unsqueeze(1), value)
