"""QCFS regularizer (seed 000 §4.2-4.3; SPEC §2): pulls pre-activations toward the quantization levels.

    L_QCFS = 1/N · Σ_i (z_i - q_i)²,   q_i = QCFS_L(clip(z_i, 0, θ))   (q computed without gradient)

With φ = 1/2, q_i is the level nearest to clip(z_i, 0, θ), so ∂L/∂z_i = 2(z_i - q_i)/N moves z_i toward
that level; it is exactly zero at a level. Because q is detached, a layer's threshold θ gets **no** gradient
from its own term (in a network, λ^l still gets one through the deeper layers' pre-activations z^{l+1}, ...,
which depend on a^l). Values z < 0 are pulled to 0 and z > θ to θ.

``QCFSRegularizer(model)`` hooks every ``QCFS`` module and collects these terms during the forward pass;
``loss()`` is the mean over **all elements of all QCFS layers together** (Σ of squared errors / Σ of element
counts: one concatenated mean, not a mean of per-layer means). Use it with ``snnconv.train.fit``::

    reg = QCFSRegularizer(model)
    fit(..., extra_loss=lambda m, logits, y: 0.1 * reg.loss())
    reg.remove()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from snnconv.errors import SnnconvError
from snnconv.functional.qcfs import qcfs_forward
from snnconv.layers.channels import channel_view
from snnconv.layers.qcfs import QCFS

__all__ = ["QCFSRegularizer", "qcfs_regularizer", "qcfs_regularizer_sum"]


def _target(z: Tensor, threshold: Tensor | float, levels: int, shift: float) -> Tensor:
    """q = QCFS_L(clip(z, 0, θ)), detached (no gradient to z or θ)."""
    with torch.no_grad():
        th = torch.as_tensor(threshold, dtype=z.dtype, device=z.device).detach()
        zc = torch.minimum(torch.clamp(z.detach(), min=0), th)
        return qcfs_forward(zc, th, levels, shift)


def qcfs_regularizer_sum(z: Tensor, threshold: Tensor | float, levels: int, shift: float = 0.5) -> Tensor:
    """Σ_i (z_i - q_i)² (the numerator of ``qcfs_regularizer``); ``threshold`` broadcastable to ``z``."""
    if not isinstance(levels, int) or levels < 1:
        raise SnnconvError(f"qcfs_regularizer: levels must be a positive integer, got {levels!r}")
    q = _target(z, threshold, levels, shift)
    return (z - q).pow(2).sum()


def qcfs_regularizer(z: Tensor, threshold: Tensor | float, levels: int, shift: float = 0.5) -> Tensor:
    """L_QCFS = mean_i (z_i - q_i)², q_i = QCFS_L(clip(z_i, 0, θ)) detached (seed 000 §4.2; SPEC §2)."""
    if z.numel() == 0:
        raise SnnconvError("qcfs_regularizer: z is empty")
    return qcfs_regularizer_sum(z, threshold, levels, shift) / z.numel()


class QCFSRegularizer:
    """Collects L_QCFS over every QCFS module of ``model`` with forward hooks.

    Each forward call of ``model`` itself starts a fresh record (a forward pre-hook on ``model`` clears it),
    so ``loss()`` always refers to the latest forward pass. Calling sub-modules directly accumulates until
    ``reset()``. Usable as a context manager (hooks removed on exit) or with ``remove()``.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers: dict[str, QCFS] = {name: m for name, m in model.named_modules() if isinstance(m, QCFS)}
        if not self.layers:
            raise SnnconvError(f"QCFSRegularizer: {type(model).__name__} has no QCFS module to regularize")
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}
        self._handles: list[RemovableHandle] = [model.register_forward_pre_hook(lambda *_: self.reset())]
        for name, m in self.layers.items():
            self._handles.append(m.register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(module: QCFS, args: tuple[Any, ...], output: Tensor) -> None:
            z = args[0]
            if z.dtype in (torch.float16, torch.bfloat16):  # autocast: accumulate in float32
                z = z.float()
            theta = channel_view(module.theta().detach().to(z.dtype), z.dim())
            s = qcfs_regularizer_sum(z, theta, module.levels, module.shift)
            self._sums[name] = self._sums[name] + s if name in self._sums else s
            self._counts[name] = self._counts.get(name, 0) + z.numel()

        return hook

    def reset(self) -> None:
        """Forget the recorded terms."""
        self._sums.clear()
        self._counts.clear()

    def loss(self) -> Tensor:
        """Σ_layers Σ_i (z_i - q_i)² / Σ_layers N_l (a 0 tensor if nothing was recorded)."""
        if not self._sums:
            p = next(iter(self.layers.values())).threshold
            return torch.zeros((), device=p.device)
        return torch.stack(list(self._sums.values())).sum() / sum(self._counts.values())

    def per_layer(self) -> dict[str, float]:
        """Per-layer mean (z - q)² of the latest record, for logging."""
        return {k: float(s.detach()) / self._counts[k] for k, s in self._sums.items()}

    def remove(self) -> None:
        """Remove every hook and forget the record."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.reset()

    def __enter__(self) -> QCFSRegularizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
