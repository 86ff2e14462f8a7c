"""QCFS activation module with a trainable threshold λ (seed 004; channel-wise/softplus form: seed 002).

θ = λ (``positive="none"``) or θ = softplus(λ) (``positive="softplus"``, always > 0); λ is one scalar per layer
or one value per channel (``per_channel=True``, channel axis 1). The activation is
``snnconv.functional.qcfs(z, θ, L, φ)``.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snnconv.errors import SnnconvError
from snnconv.functional.qcfs import qcfs_unchecked
from snnconv.layers.channels import channel_view
from snnconv.limits import MAX_LEVELS

Positive = Literal["none", "softplus"]


def inverse_softplus(y: float | Tensor) -> Tensor:
    """λ with softplus(λ) = y (y > 0), computed stably."""
    device = y.device if isinstance(y, Tensor) else "cpu"  # a number: on the CPU even under torch.device("meta")
    y = torch.as_tensor(y, dtype=torch.get_default_dtype(), device=device)
    return y + torch.log(-torch.expm1(-y))


class QCFS(nn.Module):
    """a = θ/L · clip(floor(z·L/θ + φ), 0, L) with straight-through gradients (seed 004 Eq. 15/17)."""

    def __init__(
        self,
        levels: int,
        threshold: float = 8.0,
        shift: float = 0.5,
        *,
        per_channel: bool = False,
        channels: int | None = None,
        positive: Positive = "none",
    ) -> None:
        super().__init__()
        if not isinstance(levels, int) or levels < 1:
            raise SnnconvError(f"QCFS: levels must be a positive integer, got {levels!r}")
        if levels > MAX_LEVELS:
            raise SnnconvError(f"QCFS: levels must be at most {MAX_LEVELS}, got {levels}")
        if positive not in ("none", "softplus"):
            raise SnnconvError(f"QCFS: positive must be 'none' or 'softplus', got {positive!r}")
        if not (math.isfinite(float(threshold)) and threshold > 0):
            raise SnnconvError(f"QCFS: the initial threshold must be finite and > 0, got {threshold}")
        if per_channel and (channels is None or channels < 1):
            raise SnnconvError("QCFS: per_channel=True needs channels=<number of channels>")
        self.levels = levels
        self.shift = float(shift)
        self.positive: Positive = positive
        init = float(inverse_softplus(threshold)) if positive == "softplus" else float(threshold)
        shape = (channels,) if per_channel else ()
        self.threshold = nn.Parameter(torch.full(shape, init))

    @property
    def per_channel(self) -> bool:
        return self.threshold.dim() == 1

    def theta(self) -> Tensor:
        """The effective threshold θ (shape () or (C,)), differentiable w.r.t. λ."""
        if self.positive == "softplus":  # > 0 even where softplus underflows (λ < -103 in float32)
            return F.softplus(self.threshold).clamp_min(torch.finfo(self.threshold.dtype).tiny)
        return self.threshold

    def forward(self, z: Tensor) -> Tensor:
        theta = self.theta()
        if self.training and self.positive == "none" and _any_not_positive(theta):
            warnings.warn(
                "QCFS: a threshold became non-positive; use positive='softplus', a learning-rate warm-up or a "
                "smaller learning rate for the thresholds (snnconv's training loop records which layer and when)",
                RuntimeWarning,
                stacklevel=2,
            )
        return qcfs_unchecked(z, channel_view(theta, z.dim()), self.levels, self.shift)

    def extra_repr(self) -> str:
        kind = f"channels={self.threshold.numel()}" if self.per_channel else "layer-wise"
        return f"levels={self.levels}, shift={self.shift}, {kind}, positive={self.positive}"


def _any_not_positive(theta: Tensor) -> bool:
    """θ <= 0 anywhere (NaN is caught where the activation is converted); one ``item()`` for a layer-wise θ, which
    costs a tenth of a comparison, a reduction and a ``bool`` (the check runs on every training step, issue 8)."""
    return theta.item() <= 0 if theta.dim() == 0 else bool((theta <= 0).any())
