"""Quantization clip-floor-shift activation (seed 004, Eq. 15 and 17; SPEC §1).

Forward:  a = θ/L · clip(floor(z·L/θ + φ), 0, L)
Backward (straight-through, Eq. 17), inside  -φθ/L < z < θ - φθ/L:
    ∂a/∂z = 1,   ∂a/∂θ = (a - z)/θ
below that range both are 0; above it ∂a/∂z = 0 and ∂a/∂θ = 1.

``threshold`` is any tensor broadcastable to ``z`` (a scalar for layer-wise λ, a (1, C, 1, 1) view for
channel-wise λ_c); its gradient is reduced back to its own shape. Positive reparameterizations
(softplus, seed 002) are applied by the caller before this function, so autograd chains through them.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["qcfs", "qcfs_forward", "qcfs_backward", "qcfs_levels"]


def qcfs_levels(z: Tensor, threshold: Tensor, levels: int, shift: float = 0.5) -> Tensor:
    """Integer level k = clip(floor(z·L/θ + φ), 0, L) (as a float tensor)."""
    return torch.clamp(torch.floor(z * levels / threshold + shift), 0, levels)


def qcfs_forward(z: Tensor, threshold: Tensor, levels: int, shift: float = 0.5) -> Tensor:
    """a = k · (θ/L); written as ``k * (θ/L)`` so that an IF neuron's ``count * (θ/T)`` matches it at T=L."""
    return qcfs_levels(z, threshold, levels, shift) * (threshold / levels)


def qcfs_backward(
    grad: Tensor, z: Tensor, threshold: Tensor, out: Tensor, levels: int, shift: float
) -> tuple[Tensor, Tensor]:
    """Straight-through gradients of Eq. 17 for ``z`` and ``threshold`` (broadcast shape, not reduced)."""
    low = -shift * threshold / levels
    high = threshold - shift * threshold / levels
    inside = (z > low) & (z < high)
    above = z >= high
    grad_z = grad * inside
    grad_theta = grad * torch.where(inside, (out - z) / threshold, above.to(grad.dtype))
    return grad_z, grad_theta


class _QCFSFunction(torch.autograd.Function):
    @staticmethod
    def forward(z: Tensor, threshold: Tensor, levels: int, shift: float) -> Tensor:  # type: ignore[override]
        return qcfs_forward(z, threshold, levels, shift)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        z, threshold, levels, shift = inputs
        ctx.save_for_backward(z, threshold, output)
        ctx.levels = levels
        ctx.shift = shift

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        z, threshold, out = ctx.saved_tensors
        grad_z, grad_theta = qcfs_backward(grad, z, threshold, out, ctx.levels, ctx.shift)
        grad_z = grad_z if ctx.needs_input_grad[0] else None
        grad_theta = grad_theta.sum_to_size(threshold.shape) if ctx.needs_input_grad[1] else None
        return grad_z, grad_theta, None, None


def qcfs(z: Tensor, threshold: Tensor | float, levels: int, shift: float = 0.5) -> Tensor:
    """QCFS activation with straight-through gradients for ``z`` and ``threshold`` (seed 004 Eq. 15/17)."""
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"qcfs: levels must be a positive integer, got {levels!r}")
    if not isinstance(threshold, Tensor):
        threshold = torch.tensor(float(threshold), dtype=z.dtype, device=z.device)
    return _QCFSFunction.apply(z, threshold, levels, float(shift))
