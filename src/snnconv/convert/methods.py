"""Conversion methods as pipelines of passes, in a small registry (``snnconv.convert(ann, method=...)``)."""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Callable

import torch.fx as fx
from torch import nn

from snnconv.convert.check import check_convertible
from snnconv.convert.fold_bn import fold_bn
from snnconv.convert.network import SpikingNetwork
from snnconv.convert.trace import set_module, trace
from snnconv.errors import ConversionError, RegistryError, count_not_positive, describe_nonfinite, nonfinite_tensors
from snnconv.layers.analog import Analog, RateAnalog
from snnconv.layers.calibrated import Calibration
from snnconv.layers.neuron import IFNeuron
from snnconv.layers.qcfs import QCFS

Converter = Callable[..., SpikingNetwork]
_MODE_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)
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
    cos_shift: str | None = None,
) -> SpikingNetwork:
    """QCFS → integrate-and-fire (seed 004): θ = λ (softplus(λ) if reparameterized), v(0) = φθ.

    ``calibration``: ``"none"``; ``"cos"`` (offset-spike calibration on ``rho`` pre-simulation steps, default 4;
    ``cos_shift`` "reference" (default, the authors' code) or "theta" for a neuron that fired at every step)
    or ``"srp"`` (residual-potential masking after ``tau`` pre-run steps, default 4), seed 002 / issue 5; rules in
    ``snnconv.layers.calibrated``, running them in ``snnconv.convert.calibration.calibrated_sweep``.
    ``binary_spikes``: neurons emit 0/1 and θ is folded into the next conv/linear weights (hardware form).
    ``Analog`` sub-networks (transformer attention and LayerNorm, seed 001 A.6) become ``RateAnalog`` stages: each
    reads the running mean of its input and sends t·f(ā(t)) - (t-1)·f(ā(t-1)) (``snnconv.layers.analog``).
    """
    from snnconv.convert.calibration import calibrate, fold_thresholds

    gm = trace(copy.deepcopy(ann)).eval()
    check_convertible(gm, (QCFS,), analog=True)
    levels = {q.levels for q in qcfs_layers(gm)}
    if not levels:
        raise ConversionError("the model has no QCFS activation: nothing to convert into spiking neurons")
    if fold_batchnorm:
        gm = fold_bn(gm, inplace=True)
    replace_activations(gm, QCFS, lambda q: IFNeuron(q.theta().detach(), phi=q.shift))
    if replace_activations(gm, Analog, RateAnalog) and (calibration != "none" or binary_spikes):
        raise ConversionError(
            "calibration and binary_spikes are not supported for networks with Analog stages (transformers); "
            "convert with calibration='none', binary_spikes=False"
        )
    snn = calibrate(SpikingNetwork(gm, {"method": "if", "levels": sorted(levels)}), calibration, rho=rho, tau=tau,
                    cos_shift=cos_shift)  # fmt: skip
    return fold_thresholds(snn) if binary_spikes else snn


def _check_options(method: str, fn: Converter, options: dict) -> None:
    """Unknown or missing keyword options of a method: a ``ConversionError`` listing the valid ones."""
    params = list(inspect.signature(fn).parameters.values())[1:]  # the first one is the model
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    names = [
        p.name for p in params if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ConversionError(
            f"convert(method={method!r}): unknown option {', '.join(unknown)}; "
            f"valid options of this method: {', '.join(names) or 'none'}"
        )
    missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in options]
    if missing:
        raise ConversionError(f"convert(method={method!r}) needs {', '.join(m + '=...' for m in missing)}")


def check_thresholds(ann: nn.Module) -> None:
    """Every QCFS threshold θ must be finite and > 0: an IF neuron with θ <= 0 would fire on every step."""
    for name, m in ann.named_modules():
        if not isinstance(m, QCFS):
            continue
        theta = m.theta().detach()
        bad = count_not_positive(theta)
        if bad:
            raise ConversionError(
                f"layer '{name}' (QCFS) has {bad} of {theta.numel()} thresholds that are not finite "
                f"and > 0 (min {float(theta.min()):.4g}); an IF neuron needs θ > 0: retrain with positive "
                "thresholds (make_act('qcfs-softplus') keeps them > 0) or check the checkpoint's QCFS thresholds"
            )


def convert(ann: nn.Module, method: str = "if", **options) -> SpikingNetwork:
    """Convert a trained ANN into a ``SpikingNetwork`` with ``method``; ``ann`` itself is left untouched.

    Bad input raises ``RegistryError`` (unknown method) or ``ConversionError`` (not an ``nn.Module``, unknown or
    missing options, a layer the method cannot convert, a QCFS threshold that is not finite and > 0).
    """
    if method not in _METHODS:
        raise RegistryError(f"unknown conversion method {method!r}; valid methods: {', '.join(list_methods())}")
    if not isinstance(ann, nn.Module):
        raise ConversionError(f"convert: ann must be a torch.nn.Module (the trained ANN), got {type(ann).__name__}")
    fn = _METHODS[method]
    _check_options(method, fn, options)
    check_thresholds(ann)
    bad = nonfinite_tensors(ann)
    if bad:  # NaN membranes never fire: the SNN would report a plausible accuracy for a broken network
        raise ConversionError(
            f"convert: {describe_nonfinite(bad)}; an SNN of it would give plausible but meaningless accuracies: "
            "retrain (lower the learning rate) or load a checkpoint written before the values broke"
        )
    _warn_training_mode(ann)
    return fn(ann, **options)


def _warn_training_mode(ann: nn.Module) -> None:
    """An ANN in training mode normalises with batch statistics; the SNN uses BN's running statistics (eval mode)."""
    layers = [n for n, m in ann.named_modules() if m.training and isinstance(m, _MODE_DEPENDENT)]
    if layers:
        warnings.warn(
            f"convert: the model is in training mode ({len(layers)} BatchNorm/Dropout layer(s), e.g. '{layers[0]}'), "
            "but the SNN uses BatchNorm's running statistics and no dropout, as in eval mode: call ann.eval() "
            "before converting, and compare the SNN with the ANN in eval mode",
            UserWarning,
            stacklevel=3,
        )
