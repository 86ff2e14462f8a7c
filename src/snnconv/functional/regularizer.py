"""QCFS regularizer (seed 000 §4.2-4.3; SPEC §2): pulls pre-activations toward the quantization levels.

    L_QCFS = 1/N · Σ_i (x_i - q_i)²   (q computed without gradient)

The seed's text is ambiguous, so three readings are offered (``form``; SPEC §2), with z̄ = clip(z, 0, θ):

* ``"seed"`` -- the seed's own formula (§4.2-4.3: clip, floor with +0.5, scale by 1/L, offset by -0.5) on
  clipped z: ``x = z̄``, ``q = θ·(⌊z̄·L/θ + 0.5⌋ - 0.5)/L``. **This is the paper's regularizer as written.**
* ``"clipped"`` -- the nearest level of clipped z, on clipped z: ``x = z̄``, ``q = QCFS_L(z̄)``.
* ``"raw"`` (default, snnconv's original reading) -- ``x = z`` (raw), ``q = QCFS_L(z̄)``: then most of the loss
  is the pull of z < 0 to 0 and z > θ to θ, not the pull toward levels.

With φ = 1/2, QCFS_L(z̄) is the level nearest to z̄, so for "raw" ∂L/∂z_i = 2(z_i - q_i)/N moves z_i toward
that level; it is exactly zero at a level. The clipped forms pass a gradient only where 0 < z < θ. Because q
(and the θ of the clip) is detached, a layer's threshold θ gets **no** gradient from its own term (in a network,
λ^l still gets one through the deeper layers' pre-activations z^{l+1}, ..., which depend on a^l).

``QCFSRegularizer(model)`` hooks every ``QCFS`` module and collects these terms during the forward pass;
``loss()`` is the mean over **all elements of all QCFS layers together** (Σ of squared errors / Σ of element
counts: one concatenated mean, not a mean of per-layer means). Use it with ``snnconv.train.fit``::

    reg = QCFSRegularizer(model, form="seed")
    fit(..., extra_loss=lambda m, logits, y: 0.1 * reg.loss())
    reg.remove()
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from snnconv.errors import SnnconvError
from snnconv.functional.qcfs import qcfs_forward
from snnconv.layers.channels import channel_view
from snnconv.layers.qcfs import QCFS

__all__ = ["FORMS", "Form", "QCFSRegularizer", "check_form", "qcfs_regularizer", "qcfs_regularizer_sum"]

Form = Literal["seed", "clipped", "raw"]
#: readings of the seed 000 regularizer (SPEC §2); "seed" is the paper's formula, "raw" snnconv's original default
FORMS: tuple[str, ...] = ("seed", "clipped", "raw")


def check_form(form: str, where: str = "qcfs_regularizer") -> str:
    """``form`` if it is one of ``FORMS``, else a ``SnnconvError`` naming the argument and the allowed values."""
    if form not in FORMS:
        raise SnnconvError(f"{where}: form must be one of {', '.join(FORMS)}, got {form!r}")
    return form


def _target(z: Tensor, threshold: Tensor | float, levels: int, shift: float) -> Tensor:
    """q = QCFS_L(clip(z, 0, θ)), detached (no gradient to z or θ)."""
    with torch.no_grad():
        th = torch.as_tensor(threshold, dtype=z.dtype, device=z.device).detach()
        zc = torch.minimum(torch.clamp(z.detach(), min=0), th)
        return qcfs_forward(zc, th, levels, shift)


def _seed_target(zc: Tensor, th: Tensor, levels: int) -> Tensor:
    """The seed's q = θ·(⌊z̄·L/θ + 0.5⌋ - 0.5)/L of clipped z̄ (seed 000 §4.2), detached."""
    with torch.no_grad():
        return th * (torch.floor(zc * levels / th + 0.5) - 0.5) / levels


def qcfs_regularizer_sum(
    z: Tensor, threshold: Tensor | float, levels: int, shift: float = 0.5, form: Form = "raw"
) -> Tensor:
    """Σ_i (x_i - q_i)² (the numerator of ``qcfs_regularizer``); ``threshold`` broadcastable to ``z``."""
    if not isinstance(levels, int) or levels < 1:
        raise SnnconvError(f"qcfs_regularizer: levels must be a positive integer, got {levels!r}")
    check_form(form)
    if form == "raw":  # snnconv's original reading: loss on raw z (numerics unchanged)
        q = _target(z, threshold, levels, shift)
        return (z - q).pow(2).sum()
    th = torch.as_tensor(threshold, dtype=z.dtype, device=z.device).detach()
    zc = torch.minimum(torch.clamp(z, min=0), th)  # gradient only where 0 < z < θ
    q = _target(z, th, levels, shift) if form == "clipped" else _seed_target(zc.detach(), th, levels)
    return (zc - q).pow(2).sum()


def qcfs_regularizer(
    z: Tensor, threshold: Tensor | float, levels: int, shift: float = 0.5, form: Form = "raw"
) -> Tensor:
    """L_QCFS = mean_i (x_i - q_i)², q detached, in the reading ``form`` (seed 000 §4.2; SPEC §2; module doc)."""
    if z.numel() == 0:
        raise SnnconvError("qcfs_regularizer: z is empty")
    return qcfs_regularizer_sum(z, threshold, levels, shift, form) / z.numel()


class QCFSRegularizer:
    """Collects L_QCFS over every QCFS module of ``model`` with forward hooks, in the reading ``form``.

    Each forward call of ``model`` itself starts a fresh record (a forward pre-hook on ``model`` clears it),
    so ``loss()`` always refers to the latest forward pass. Calling sub-modules directly accumulates until
    ``reset()``. Usable as a context manager (hooks removed on exit) or with ``remove()``.
    """

    def __init__(self, model: nn.Module, form: Form = "raw") -> None:
        self.form = check_form(form, "QCFSRegularizer")
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
            s = qcfs_regularizer_sum(z, theta, module.levels, module.shift, self.form)
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
