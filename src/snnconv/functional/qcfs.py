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

import math
import struct

import torch
from torch import Tensor

from snnconv import native
from snnconv.errors import SnnconvError, all_positive, count_not_positive
from snnconv.functional.if_neuron import step_format
from snnconv.limits import MAX_LEVELS

__all__ = ["qcfs", "qcfs_forward", "qcfs_backward", "qcfs_levels"]


def qcfs_levels(z: Tensor, threshold: Tensor, levels: int, shift: float = 0.5) -> Tensor:
    """Integer level k = clip(floor(z·L/θ + φ), 0, L) (as a float tensor)."""
    return torch.clamp(torch.floor(z * levels / threshold + shift), 0, levels)


def qcfs_forward(z: Tensor, threshold: Tensor, levels: int, shift: float = 0.5) -> Tensor:
    """a = k · (θ/L); written as ``k * (θ/L)`` so that an IF neuron's ``count * (θ/T)`` matches it at T=L.

    Without autograd (as inside the fused ``qcfs``), the same operations run in place on one buffer: the values
    are bit-identical, without five temporary tensors (2.7x faster on CPU, issue 8).
    """
    tracked = torch.is_grad_enabled() and (z.requires_grad or threshold.requires_grad)
    if tracked or torch.result_type(z, threshold) != z.dtype or threshold.dim() > z.dim():
        return qcfs_levels(z, threshold, levels, shift) * (threshold / levels)
    out = torch.mul(z, levels).div_(threshold).add_(shift).floor_().clamp_(0, levels)
    return out.mul_(threshold / levels)


def qcfs_backward(
    grad: Tensor, z: Tensor, threshold: Tensor, out: Tensor, levels: int, shift: float
) -> tuple[Tensor, Tensor]:
    """Straight-through gradients of Eq. 17 for ``z`` and ``threshold`` (broadcast shape, not reduced)."""
    low = -shift * threshold / levels
    high = threshold - shift * threshold / levels
    # float 0/1 masks: products with them are several times faster on CPU than torch.where, masked_fill or a
    # product with a bool tensor; inside and above are disjoint, so r·inside + above is where(inside, r, above)
    inside = ((z > low) & (z < high)).to(grad.dtype)
    above = (z >= high).to(grad.dtype)
    grad_z = grad * inside
    grad_theta = ((out - z) / threshold).mul_(inside).add_(above).mul_(grad)
    return grad_z, grad_theta


def _flat(t: Tensor) -> Tensor | None:
    """A 1-D view of a dense tensor (row-major or channels-last), or None (then products are summed instead)."""
    if t.is_contiguous():
        return t.view(-1)
    if step_format(t) == torch.channels_last:
        return t.permute(0, 2, 3, 1).reshape(-1)  # a view: NHWC order is the storage order
    return None


def _sum_products(a: Tensor, b: Tensor, shape: torch.Size) -> Tensor:
    """Σ a·b reduced to ``shape`` (a dot product, without a temporary, where both are laid out alike)."""
    if len(shape) == 0 and a.stride() == b.stride():
        fa, fb = _flat(a), _flat(b)
        if fa is not None and fb is not None:
            return torch.dot(fa, fb)
    return torch.mul(a, b).sum_to_size(shape)


def _fast_backward(ctx, grad: Tensor, z: Tensor, threshold: Tensor, out: Tensor) -> tuple:
    """Eq. 17 with the θ gradient summed as Σ grad_z·(a - z)/θ + Σ grad·above (per channel for a channel-wise θ;
    equal to ``qcfs_backward(...)`` reduced, up to summation order), in five passes over memory.

    For a layer-wise θ on the CPU, grad_z is one fused pass (hardtanh's backward passes grad where
    low < z < high, strictly; ``_ramp_bounds`` gives the bounds as Python floats); elsewhere 0/1 masks are
    written straight into float buffers (a bool→float cast, a product with a bool tensor or ``logical_and`` of
    bool masks costs several passes on CPU). One buffer serves both θ sums, which are dot products where the
    tensors share a layout: fresh temporaries page-fault on CPU (the plain version was 15x slower than ReLU's
    backward, issue 8). The above-the-ramp sum is taken on z, as Eq. 17 defines it: where z sits on the ramp's top
    end to within rounding, the forward's level can still be L - 1, so a shortcut through a = θ would be off there.
    Non-finite values: on the fused path grad_z outside the ramp is 0 even for a NaN/Inf upstream gradient (the
    mask path gives NaN there); the θ gradient still turns NaN, so a diverged step stays visible to the trainer.
    """
    if ctx.bounds is not None:
        high: Tensor | float = ctx.bounds[1]
        grad_z = torch.ops.aten.hardtanh_backward(grad, z, *ctx.bounds)
    else:
        low = -ctx.shift * threshold / ctx.levels
        high = threshold - ctx.shift * threshold / ctx.levels
        grad_z = torch.gt(z, low, out=torch.empty_like(grad))  # 4-5x faster than bool masks + logical_and
        grad_z.mul_(torch.lt(z, high, out=torch.empty_like(grad))).mul_(grad)
    grad_theta = None
    if ctx.needs_input_grad[1]:
        shape = threshold.shape
        buf = torch.ge(z, high, out=torch.empty_like(grad))  # 0/1 above the ramp
        above = _sum_products(grad, buf, shape)
        ramp = _sum_products(grad_z, torch.sub(out, z, out=buf), shape)
        grad_theta = ramp / threshold + above
    return (grad_z if ctx.needs_input_grad[0] else None), grad_theta, None, None


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _ramp_bounds(threshold: Tensor, levels: int, shift: float) -> tuple[float, float] | None:
    """The ramp's ends -φθ/L and θ - φθ/L as Python floats rounded exactly as θ's own float32/float64 tensor
    arithmetic rounds them (each +, ×, ÷ of two float32 values done in float64 and rounded once to float32 is the
    correctly rounded float32 result); None where the fused CPU path does not apply (channel θ, GPU, half types).
    Computed once per forward, so the backward runs no small tensor operations for them."""
    if threshold.dim() != 0 or threshold.device.type != "cpu" or threshold.dtype not in (torch.float32, torch.float64):
        return None
    r = _f32 if threshold.dtype == torch.float32 else float
    th, shift_r, lv = r(float(threshold)), r(shift), r(float(levels))
    low = r(r(-shift_r * th) / lv)
    return low, r(th - r(r(shift_r * th) / lv))


class _QCFSFunction(torch.autograd.Function):
    # forward(ctx, ...) rather than a separate setup_context: with setup_context, every apply() binds its
    # arguments through inspect.signature (~40 µs a call, 19 calls per ResNet-20 step; issue 8)
    @staticmethod
    def forward(ctx, z: Tensor, threshold: Tensor, levels: int, shift: float) -> Tensor:  # type: ignore[override]
        out = qcfs_forward(z, threshold, levels, shift)
        ctx.save_for_backward(z, threshold, out)
        ctx.levels = levels
        ctx.shift = shift
        ctx.bounds = _ramp_bounds(threshold, levels, shift) if ctx.needs_input_grad[0] else None
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        z, threshold, out = ctx.saved_tensors
        if threshold.dtype == grad.dtype == z.dtype and threshold.dim() <= z.dim():
            return _fast_backward(ctx, grad, z, threshold, out)
        grad_z, grad_theta = qcfs_backward(grad, z, threshold, out, ctx.levels, ctx.shift)
        grad_z = grad_z if ctx.needs_input_grad[0] else None
        grad_theta = grad_theta.sum_to_size(threshold.shape) if ctx.needs_input_grad[1] else None
        return grad_z, grad_theta, None, None


def qcfs(z: Tensor, threshold: Tensor | float, levels: int, shift: float = 0.5) -> Tensor:
    """QCFS activation with straight-through gradients for ``z`` and ``threshold`` (seed 004 Eq. 15/17).

    On the CPU it runs the fused C++ kernel of ``snnconv.native`` where that is built (same forward bits, one
    pass each way), else the PyTorch autograd function below. A threshold that is not finite and > 0 (which would
    silently give zeros) or levels outside 1..``MAX_LEVELS`` raise ``SnnconvError``, as ``QCFS`` does."""
    if not isinstance(levels, int) or isinstance(levels, bool) or not 1 <= levels <= MAX_LEVELS:
        raise SnnconvError(f"qcfs: levels must be a positive integer (at most {MAX_LEVELS}), got {levels!r}")
    if not isinstance(threshold, Tensor):
        try:
            value = float(threshold)
        except (TypeError, ValueError):
            raise SnnconvError(f"qcfs: threshold must be a number or a tensor, got {threshold!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise SnnconvError(f"qcfs: threshold must be finite and > 0, got {threshold!r}")
        threshold = torch.tensor(value, dtype=z.dtype, device=z.device)
    elif not all_positive(threshold.detach()):
        raise SnnconvError(
            f"qcfs: thresholds must be finite and > 0 ({count_not_positive(threshold.detach())} are not, min "
            f"{float(threshold.detach().min()):.4g}); parameterize them with softplus to keep them > 0"
        )
    return qcfs_unchecked(z, threshold, levels, shift)


def qcfs_unchecked(z: Tensor, threshold: Tensor, levels: int, shift: float = 0.5) -> Tensor:
    """``qcfs`` without the argument checks, for the ``QCFS`` module (which checks its threshold on its own terms:
    at construction, and with a warning during training)."""
    if native.fits(z, threshold) and native.available():
        return torch.ops.snnconv.qcfs.default(z, threshold, levels, float(shift))
    return _QCFSFunction.apply(z, threshold, levels, float(shift))
