"""Rate-norm conversion of plain ReLU networks (Diehl et al. 2015; Rueckauer et al. 2017), issue 9.

``convert(relu_model, method="ratenorm", mode="max"|"percentile", percentile=99.99, calibration=data,
batches=4)``: every ReLU's activation scale λ is measured on a few calibration batches - the maximum
(``mode="max"``, data-based weight normalisation) or the ``percentile``-th percentile of its positive
activations (``mode="percentile"``, robust normalisation) - and the ReLU becomes an IF neuron with threshold
θ = λ. A neuron's output is s·θ (spike × threshold, SPEC §1), so this is exactly weight normalisation
(W_l ← W_l·λ_{l-1}/λ_l, b_l ← b_l/λ_l, threshold 1) written without rescaling the weights. The neurons are
the QCFS IF neurons: reset by subtraction and v(0) = θ/2 (``phi=0.5``; seed 004's optimal initial potential,
which turns the rate into a rounded rather than floored value of a/θ).

Functional ReLUs and ReLU modules used at several sites are first split into one ``nn.ReLU`` per call site
(``snnconv.prepare.replace_relus``). Other activations (ReLU6, GELU, ...) and max pooling are rejected with a
``ConversionError``; ``snnconv.prepare`` + QCFS fine-tuning is the route for those models.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable
from typing import Literal

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from snnconv.convert.check import ACTIVATION_MODULES, check_convertible
from snnconv.convert.fold_bn import fold_bn
from snnconv.convert.methods import register_method, replace_activations
from snnconv.convert.network import SpikingNetwork
from snnconv.convert.trace import trace
from snnconv.errors import ConversionError
from snnconv.layers.neuron import IFNeuron
from snnconv.layers.qcfs import QCFS

_FIX = "rate-norm conversion maps ReLU rates only - use snnconv.prepare(model), fine-tune with QCFS, method='if'"
#: cap on the activations kept per layer for the percentile (a random subsample beyond it)
MAX_SAMPLES = 1 << 22


def _batches(calibration: Tensor | Iterable, batches: int) -> list[Tensor]:
    if isinstance(calibration, Tensor):
        return [calibration]
    out = []
    for item in calibration:
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, Tensor):
            raise ConversionError(f"ratenorm: calibration batches must be tensors or (x, y) pairs, got {type(x)}")
        out.append(x)
        if len(out) >= batches:
            break
    if not out:
        raise ConversionError("ratenorm: the calibration data is empty")
    return out


def _check_relu_only(gm: fx.GraphModule) -> None:
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is F.relu6:
            raise ConversionError(f"ratenorm: operation '{node.name}' (relu6) is not a ReLU; {_FIX}")
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        if isinstance(mod, QCFS):
            raise ConversionError(
                f"ratenorm: layer '{node.target}' is a QCFS activation; convert QCFS models with method='if'"
            )
        if isinstance(mod, ACTIVATION_MODULES) and type(mod) is not nn.ReLU:
            raise ConversionError(f"ratenorm: layer '{node.target}' ({type(mod).__name__}) is not a ReLU; {_FIX}")


@torch.no_grad()
def activation_scales(
    gm: fx.GraphModule,
    data: list[Tensor],
    mode: Literal["max", "percentile"] = "max",
    percentile: float = 99.99,
    seed: int = 0,
) -> dict[str, float]:
    """λ of every ReLU of ``gm`` over the batches ``data``: max, or a percentile of the positive activations."""
    sites = [
        n.target for n in gm.graph.nodes if n.op == "call_module" and isinstance(gm.get_submodule(n.target), nn.ReLU)
    ]
    stats: dict[str, list[Tensor]] = {s: [] for s in sites}
    g = torch.Generator().manual_seed(seed)

    def hook(name: str):
        def fn(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            out = output.detach()
            if mode == "max":
                stats[name].append(out.max().reshape(1).float().cpu())
            else:
                pos = out[out > 0].float().cpu()
                if pos.numel() > MAX_SAMPLES // len(data):
                    pos = pos[torch.randperm(pos.numel(), generator=g)[: MAX_SAMPLES // len(data)]]
                stats[name].append(pos)

        return fn

    handles = [gm.get_submodule(s).register_forward_hook(hook(s)) for s in sites]
    try:
        for x in data:
            gm(x)
    finally:
        for h in handles:
            h.remove()
    scales = {}
    for name, values in stats.items():
        v = torch.cat(values) if values else torch.zeros(0)
        if mode == "max":
            scale = float(v.max()) if v.numel() else 0.0
        elif v.numel() == 0:
            scale = 0.0
        else:
            k = min(v.numel(), max(1, math.ceil(percentile / 100 * v.numel())))
            scale = float(v.kthvalue(k).values)
        if not scale > 0:
            warnings.warn(
                f"ratenorm: ReLU '{name}' was never active on the calibration data; threshold set to 1",
                RuntimeWarning,
                stacklevel=3,
            )
            scale = 1.0
        scales[name] = scale
    return scales


@register_method("ratenorm")
def convert_ratenorm(
    ann: nn.Module,
    *,
    calibration: Tensor | Iterable,
    mode: Literal["max", "percentile"] = "max",
    percentile: float = 99.99,
    batches: int = 4,
    fold_batchnorm: bool = True,
    phi: float = 0.5,
) -> SpikingNetwork:
    """ReLU network → IF network with thresholds from activation statistics (module docstring).

    ``calibration``: a batch tensor or an iterable of batches / ``(x, y)`` pairs (a DataLoader), of which the
    first ``batches`` are used. ``phi``: initial membrane potential as a fraction of θ.
    """
    from snnconv.prepare import replace_relus

    if mode not in ("max", "percentile"):
        raise ConversionError(f"ratenorm: mode must be 'max' or 'percentile', got {mode!r}")
    if not 0 < percentile <= 100:
        raise ConversionError(f"ratenorm: percentile must be in (0, 100], got {percentile}")
    gm = trace(copy.deepcopy(ann)).eval()
    _check_relu_only(gm)
    if replace_relus(gm, lambda channels: nn.ReLU(), needs_channels=False) == 0:
        raise ConversionError("ratenorm: the model has no ReLU activation: nothing to convert into spiking neurons")
    gm.delete_all_unused_submodules()
    check_convertible(gm, (nn.ReLU,))
    if fold_batchnorm:
        gm = fold_bn(gm, inplace=True)
    p = next(iter(gm.parameters()), None)
    data = [x.to(p.device, p.dtype) if p is not None else x for x in _batches(calibration, batches)]
    scales = activation_scales(gm, data, mode, percentile)
    for name, scale in scales.items():
        gm.get_submodule(name).snn_scale = scale  # read by the replacement below
    replace_activations(gm, nn.ReLU, lambda r: IFNeuron(torch.tensor(r.snn_scale, dtype=p.dtype), phi=phi))
    meta = {"method": "ratenorm", "mode": mode, "scales": scales}
    if mode == "percentile":
        meta["percentile"] = percentile
    return SpikingNetwork(gm, meta)
