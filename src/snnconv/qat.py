"""Quantization-aware training with PyTorch's own FX tooling (seed 003 / SPEC §5).

``prepare_qat`` fuses conv-BN-ReLU into ``torch.ao.nn.intrinsic.qat`` modules (BN folded into the quantized
weights) and inserts fake quantizers with zero point 0:

* activations (``signed=True``, default, the paper's "signed 8-bit"): ``FakeQuantize`` + moving-average
  min/max, qint8, ``per_tensor_symmetric``, range [−(2^(b−1)−1), 2^(b−1)−1] → zero point 0, ReLU codes
  0..127 for 8 bits (so T = 128 ≥ the largest code). ``signed=False``: quint8 ``per_tensor_affine`` on
  [0, 2^b−1], whose zero point is 0 exactly when the observed minimum is >= 0 (ReLU outputs, [0, 1] images);
  the export refuses any other zero point, so the output layer is left unquantized by default then.
* activation scales are rounded up to powers of two by default (``pow2``; see the observer's docstring).
* weights: qint8 symmetric [−(2^(b−1)−1), 2^(b−1)−1], per tensor or per output channel.

The result is a ``torch.fx.GraphModule`` (an ``nn.Module``): train it with ``snnconv.train.fit`` or
``train_qat``; ``QATSchedule`` freezes BN statistics / observers after given epochs (a ``fit`` callback);
``freeze`` does both at once before evaluation and export.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.ao.nn.intrinsic import qat as nniqat
from torch.ao.quantization import (
    FakeQuantize,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    QConfig,
    QConfigMapping,
    disable_observer,
)
from torch.ao.quantization.backend_config import get_qnnpack_backend_config
from torch.ao.quantization.quantize_fx import prepare_qat_fx

from snnconv.errors import SnnconvError

__all__ = [
    "Pow2MovingAverageMinMaxObserver",
    "QATSchedule",
    "fake_quantizers",
    "freeze",
    "prepare_qat",
    "qat_qconfig",
    "record_codes",
    "train_qat",
]

EPS = 2.0**-12  # the qnnpack backend's smallest scale


class Pow2MovingAverageMinMaxObserver(MovingAverageMinMaxObserver):
    """Moving-average min/max observer whose scale is rounded up to a power of two.

    With power-of-two activation scales the QANN's requantizations (average pooling, flatten) are computed
    exactly in floating point, so its half-way cases are true ties (rounded half to even like the Ca-LIF
    neuron's rounding phase) instead of float noise.
    """

    @torch.jit.export
    def calculate_qparams(self) -> tuple[Tensor, Tensor]:
        scale, zero_point = super().calculate_qparams()
        return torch.exp2(torch.ceil(torch.log2(scale))), zero_point


def qat_qconfig(bits: int = 8, signed: bool = True, per_channel: bool = False, pow2: bool = True) -> QConfig:
    """QConfig with zero-point-0 activation fake quantizers and symmetric integer weights (see module doc)."""
    if not 2 <= bits <= 8:
        raise SnnconvError(f"bits must be in 2..8, got {bits}")
    top = 2 ** (bits - 1) - 1
    observer = Pow2MovingAverageMinMaxObserver if pow2 else MovingAverageMinMaxObserver
    if signed:
        act = FakeQuantize.with_args(observer=observer, quant_min=-top, quant_max=top,
                                     dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, eps=EPS)  # fmt: skip
    else:
        act = FakeQuantize.with_args(observer=observer, quant_min=0, quant_max=2**bits - 1,
                                     dtype=torch.quint8, qscheme=torch.per_tensor_affine, eps=EPS)  # fmt: skip
    if per_channel:
        weight = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-top,
                                        quant_max=top, dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                        ch_axis=0, eps=EPS)  # fmt: skip
    else:
        weight = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=-top, quant_max=top,
                                        dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, eps=EPS)  # fmt: skip
    return QConfig(activation=act, weight=weight)


def _output_layer(model: nn.Module, example_input: Tensor) -> str | None:
    """Name of the last conv/linear module called (the logits layer)."""
    last: list[str] = []
    hooks = [m.register_forward_hook(lambda *_, n=n: last.append(n)) for n, m in model.named_modules()
             if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]  # fmt: skip
    with torch.no_grad():
        model.eval()(example_input)
    for h in hooks:
        h.remove()
    return last[-1] if last else None


def prepare_qat(
    model: nn.Module,
    example_input: Tensor,
    bits: int = 8,
    *,
    signed: bool = True,
    per_channel: bool = False,
    pow2: bool = True,
    quantize_output: bool | None = None,
) -> fx.GraphModule:
    """``prepare_qat_fx`` on a copy of ``model`` (ReLU activations, average pooling) → a trainable QAT model.

    pow2: power-of-two activation scales (``Pow2MovingAverageMinMaxObserver``; exact requantization ties).
    quantize_output: fake-quantize the logits layer (default: ``signed``; its output is signed).
    """
    model = copy.deepcopy(model)
    mapping = QConfigMapping().set_global(qat_qconfig(bits, signed, per_channel, pow2))
    if not (signed if quantize_output is None else quantize_output):
        name = _output_layer(model, example_input)
        if name is not None:
            mapping = mapping.set_module_name(name, None)
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notices
        return prepare_qat_fx(model, mapping, (example_input,), backend_config=get_qnnpack_backend_config())


def fake_quantizers(model: nn.Module) -> dict[str, FakeQuantize]:
    """Activation fake quantizers by name (weight quantizers excluded)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, FakeQuantize) and "weight_fake_quant" not in n}


def freeze(model: nn.Module, observers: bool = True, bn: bool = True) -> nn.Module:
    """Stop updating the quantization scales (observers) and/or BN statistics; returns ``model`` (eval mode)."""
    if observers:
        model.apply(disable_observer)
    if bn:
        model.apply(nniqat.freeze_bn_stats)
    return model.eval()


class QATSchedule:
    """``fit`` callback: freeze BN statistics after ``freeze_bn`` epochs, observers after ``freeze_observer``."""

    def __init__(self, freeze_bn: int | None = None, freeze_observer: int | None = None) -> None:
        self.freeze_bn, self.freeze_observer = freeze_bn, freeze_observer

    def __call__(self, info: dict) -> bool:
        epoch, model = info["epoch"], info["model"]
        if self.freeze_bn is not None and epoch >= self.freeze_bn:
            model.apply(nniqat.freeze_bn_stats)
        if self.freeze_observer is not None and epoch >= self.freeze_observer:
            model.apply(disable_observer)
        return False


def train_qat(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]] | None = None,
    *,
    x: Tensor | None = None,
    y: Tensor | None = None,
    epochs: int = 1,
    lr: float = 0.05,
    batch_size: int = 64,
    seed: int = 0,
    freeze_observer: int | None = None,
) -> nn.Module:
    """Minimal SGD (momentum 0.9) loop over ``batches`` or shuffled (x, y) tensors; freezes at the end."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        if freeze_observer is not None and epoch >= freeze_observer:
            model.apply(disable_observer)
        model.train()
        if batches is None:
            perm = torch.randperm(len(x), generator=g)
            data = [(x[perm[i : i + batch_size]], y[perm[i : i + batch_size]]) for i in range(0, len(x), batch_size)]
        else:
            data = batches
        for xb, yb in data:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return freeze(model)


@torch.no_grad()
def record_codes(model: nn.Module, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """(output, {quantizer name: integer codes round(q/S)}) of a QAT model on ``x`` (one entry per call)."""
    codes: dict[str, Tensor] = {}
    hooks = []
    for name, fq in fake_quantizers(model).items():

        def hook(mod: nn.Module, args: tuple, out: Tensor, name: str = name) -> None:
            key = name
            i = 1
            while key in codes:
                key, i = f"{name}#{i}", i + 1
            codes[key] = torch.round(out / mod.scale) if mod.fake_quant_enabled[0] else out

        hooks.append(fq.register_forward_hook(hook))
    try:
        out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return out, codes
