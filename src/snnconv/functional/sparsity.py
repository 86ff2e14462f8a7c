"""Bit-level ℓ1 sparsity regularizer (seed 001 Eq. 10-11; SPEC §3).

    L_SP = Σ_{l<L} Σ_t Σ_i bit_t(k_i^l)        (a sum over batch and neurons, not a mean)
    ∂L_SP/∂a_i = T   for 0 < a_i < λ^l, else 0  (straight-through surrogate, Eq. 11 summed over the T bits)

k = a·L/λ is the integer code of a QCFS output a; its 1-bits are the spikes of the bit-serial SNN, so the
regularizer lowers spiking activity. ``BitSparsity(model)`` hooks every QCFS layer (all are hidden layers: the
output layer has no activation) and sums the terms of the latest forward pass::

    with BitSparsity(model) as sp:
        loss = F.cross_entropy(model(x), y) + coef * sp.loss()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from snnconv.errors import SnnconvError
from snnconv.functional.bitserial import min_bits
from snnconv.layers.channels import channel_view
from snnconv.layers.qcfs import QCFS

__all__ = ["BitSparsity", "bit_count", "bit_l1"]


def bit_count(codes: Tensor, bits: int) -> Tensor:
    """Number of 1-bits of each non-negative integer code (< 2^bits), as a float tensor like ``codes``."""
    k = torch.round(codes).to(torch.int64)
    total = torch.zeros_like(k)
    for b in range(bits):
        total += (k >> b) & 1
    return total.to(codes.dtype)


class _BitL1(torch.autograd.Function):
    @staticmethod
    def forward(a: Tensor, threshold: Tensor, levels: int, T: int) -> Tensor:  # type: ignore[override]
        codes = torch.clamp(torch.round(a * levels / threshold), 0, levels)
        return bit_count(codes, levels.bit_length()).sum()

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        a, threshold, _, T = inputs
        ctx.save_for_backward(a, threshold)
        ctx.T = T

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        a, threshold = ctx.saved_tensors
        inside = (a > 0) & (a < threshold)
        return grad * ctx.T * inside.to(a.dtype), None, None, None


def bit_l1(a: Tensor, threshold: Tensor | float, levels: int, T: int | None = None) -> Tensor:
    """Σ_i popcount(k_i), k = a·L/λ, with the surrogate gradient T·1[0 < a < λ] (seed 001 Eq. 10-11).

    ``threshold`` λ broadcastable to ``a`` (detached: λ gets no gradient from this term); T defaults to the
    smallest exact bit count for L (``min_bits``).
    """
    if not isinstance(levels, int) or levels < 1:
        raise SnnconvError(f"bit_l1: levels must be a positive integer, got {levels!r}")
    T = min_bits(levels) if T is None else int(T)
    th = torch.as_tensor(threshold, dtype=a.dtype, device=a.device).detach()
    return _BitL1.apply(a, th, levels, T)


class BitSparsity:
    """Collects L_SP over every QCFS module of ``model`` with forward hooks (cf. ``QCFSRegularizer``).

    A forward call of ``model`` starts a fresh record; ``loss()`` is the sum over layers of the latest pass.
    ``T``: bits per layer for the gradient scale (default: ``min_bits(L)`` of each layer).
    """

    def __init__(self, model: nn.Module, T: int | None = None) -> None:
        self.layers = {name: m for name, m in model.named_modules() if isinstance(m, QCFS)}
        if not self.layers:
            raise SnnconvError(f"BitSparsity: {type(model).__name__} has no QCFS module to regularize")
        self.T = T
        self._terms: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = [model.register_forward_pre_hook(lambda *_: self.reset())]
        for name, m in self.layers.items():
            self._handles.append(m.register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(module: QCFS, args: tuple[Any, ...], output: Tensor) -> None:
            theta = channel_view(module.theta().detach().to(output.dtype), output.dim())
            term = bit_l1(output, theta, module.levels, self.T)
            self._terms[name] = self._terms[name] + term if name in self._terms else term

        return hook

    def reset(self) -> None:
        self._terms.clear()

    def loss(self) -> Tensor:
        """Σ over layers of the bit counts of the latest forward pass (0 if nothing was recorded)."""
        if not self._terms:
            return torch.zeros((), device=next(iter(self.layers.values())).threshold.device)
        return torch.stack(list(self._terms.values())).sum()

    def per_layer(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self._terms.items()}

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.reset()

    def __enter__(self) -> BitSparsity:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
