"""Conversion methods as pipelines of passes, in a small registry (``snnconv.convert(ann, method=...)``)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch.fx as fx
from torch import nn

from snnconv.convert.check import check_convertible
from snnconv.convert.fold_bn import fold_bn
from snnconv.convert.network import SpikingNetwork
from snnconv.convert.trace import set_module, trace
from snnconv.errors import ConversionError, RegistryError
from snnconv.layers.calibrated import Calibration
from snnconv.layers.neuron import IFNeuron
from snnconv.layers.qcfs import QCFS

Converter = Callable[..., SpikingNetwork]
_METHODS: dict[str, Converter] = {}


def register_method(name: str) -> Callable[[Converter], Converter]:
    def deco(fn: Converter) -> Converter:
        if name in _METHODS:
            raise RegistryError(f"conversion method {name!r} is already registered")
        _METHODS[name] = fn
        return fn

    return deco


def list_methods() -> list[str]:
    return sorted(_METHODS)


def replace_activations(gm: fx.GraphModule, kind: type[nn.Module], make: Callable[[nn.Module], nn.Module]) -> int:
    """Pass: swap every ``kind`` module of the graph for ``make(old)``; returns how many were swapped."""
    count = 0
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), kind):
            set_module(gm, node.target, make(gm.get_submodule(node.target)))
            count += 1
    gm.recompile()
    return count


def qcfs_layers(gm: fx.GraphModule) -> list[QCFS]:
    return [gm.get_submodule(n.target) for n in gm.graph.nodes
            if n.op == "call_module" and isinstance(gm.get_submodule(n.target), QCFS)]  # fmt: skip


@register_method("if")
def convert_if(
    ann: nn.Module,
    *,
    calibration: Calibration = "none",
    rho: int | None = None,
    tau: int | None = None,
    fold_batchnorm: bool = True,
    binary_spikes: bool = False,
) -> SpikingNetwork:
    """QCFS → integrate-and-fire (seed 004): θ = λ (softplus(λ) if reparameterized), v(0) = φθ.

    ``calibration``: ``"none"``; ``"cos"`` (offset-spike calibration on ``rho`` pre-simulation steps, default 4)
    or ``"srp"`` (residual-potential masking after ``tau`` pre-run steps, default 4), seed 002 / issue 5; rules in
    ``snnconv.layers.calibrated``, running them in ``snnconv.convert.calibration.calibrated_sweep``.
    ``binary_spikes``: neurons emit 0/1 and θ is folded into the next conv/linear weights (hardware form).
    """
    from snnconv.convert.calibration import calibrate, fold_thresholds

    gm = trace(copy.deepcopy(ann)).eval()
    check_convertible(gm, (QCFS,))
    levels = {q.levels for q in qcfs_layers(gm)}
    if not levels:
        raise ConversionError("the model has no QCFS activation: nothing to convert into spiking neurons")
    if fold_batchnorm:
        gm = fold_bn(gm, inplace=True)
    replace_activations(gm, QCFS, lambda q: IFNeuron(q.theta().detach(), phi=q.shift))
    snn = calibrate(SpikingNetwork(gm, {"method": "if", "levels": sorted(levels)}), calibration, rho=rho, tau=tau)
    return fold_thresholds(snn) if binary_spikes else snn


def convert(ann: nn.Module, method: str = "if", **options) -> SpikingNetwork:
    """Convert a trained ANN into a ``SpikingNetwork`` with ``method``; ``ann`` itself is left untouched."""
    if method not in _METHODS:
        raise RegistryError(f"unknown conversion method {method!r}; valid methods: {', '.join(list_methods())}")
    return _METHODS[method](ann, **options)
