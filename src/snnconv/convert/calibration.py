"""Calibrated conversions (methods ``"cos"`` and ``"srp"``) and folding thresholds into weights (binary spikes).

* ``convert(ann, method="cos", rho=1)``: QCFS → IF (as ``"if"``), each neuron a ``CalibratedIFNeuron`` doing
  offset-spike calibration (Hao, Ding, Bu, Huang & Yu 2023, arXiv:2302.10685): per neuron and per sample, run ρ
  steps, offset ψ = c - clip(c + floor(v(ρ)/θ), 0, ρ), rerun from v(0) = φθ - ψθ.
* ``convert(ann, method="srp", tau=4)``: residual-membrane-potential masking (Hao, Bu, Ding, Huang & Yu, AAAI 2023,
  arXiv:2302.02091): run τ steps, neurons with v(τ) ≤ 0 are silent in the rerun.

The exact rules and why they run inside the ordinary engine are in ``snnconv.layers.calibrated``. The real run
needs at least ρ (τ) input steps: ``simulate_calibrated`` / ``calibrated_sweep`` simulate max(T, ρ) steps and keep
the first T; ``snnconv.evaluate.sweep`` works directly whenever max(T) ≥ ρ.

``fold_thresholds(snn)`` (or ``binary_spikes=True`` on these methods) moves every θ_c into the weights of the
conv/linear that consumes the neuron, so that spikes travel as 0/1.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor, nn

from snnconv.convert.methods import convert_if, register_method, replace_activations
from snnconv.convert.network import SpikingNetwork
from snnconv.convert.trace import set_module
from snnconv.errors import ConversionError
from snnconv.evaluate import SweepResult, sweep
from snnconv.layers.calibrated import BinaryIFNeuron, CalibratedIFNeuron, CalibrationMode
from snnconv.layers.neuron import IFNeuron
from snnconv.simulate import SimResult, simulate

__all__ = [
    "calibrated_sweep", "calibration_steps", "convert_cos", "convert_srp", "fold_thresholds", "simulate_calibrated",
]  # fmt: skip

WEIGHTED: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
#: channel-preserving maps a neuron's output may pass through before a conv/linear when folding θ
PASS_THROUGH: tuple[type[nn.Module], ...] = (
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
)  # fmt: skip


def _calibrated(
    ann: nn.Module,
    mode: CalibrationMode,
    steps: int,
    *,
    max_offset: int | None,
    fold_batchnorm: bool,
    binary_spikes: bool,
) -> SpikingNetwork:
    snn = convert_if(ann, fold_batchnorm=fold_batchnorm)
    replace_activations(
        snn.graph,
        IFNeuron,
        lambda n: CalibratedIFNeuron(n.threshold, n.phi, mode=mode, steps=steps, max_offset=max_offset),
    )
    key = "rho" if mode == "cos" else "tau"
    snn.meta.update({"method": mode, key: steps})
    if max_offset is not None:
        snn.meta["max_offset"] = max_offset
    return fold_thresholds(snn) if binary_spikes else snn


@register_method("cos")
def convert_cos(
    ann: nn.Module,
    *,
    rho: int = 1,
    max_offset: int | None = None,
    fold_batchnorm: bool = True,
    binary_spikes: bool = False,
) -> SpikingNetwork:
    """QCFS → IF with offset-spike calibration on the first ``rho`` steps (Hao et al. 2023, COS).

    Note: with ρ = 1 the offset is always 0 (one step cannot fire more or fewer spikes than its input implies
    once the count is clipped to [0, 1]), so COS needs ρ ≥ 2 to change anything.
    """
    return _calibrated(
        ann, "cos", rho, max_offset=max_offset, fold_batchnorm=fold_batchnorm, binary_spikes=binary_spikes
    )


@register_method("srp")
def convert_srp(
    ann: nn.Module, *, tau: int = 4, fold_batchnorm: bool = True, binary_spikes: bool = False
) -> SpikingNetwork:
    """QCFS → IF where neurons with v(τ) ≤ 0 after a ``tau``-step pre-run stay silent (Hao et al. 2023, SRP)."""
    return _calibrated(ann, "srp", tau, max_offset=None, fold_batchnorm=fold_batchnorm, binary_spikes=binary_spikes)


# --- running calibrated networks -------------------------------------------------------------------------------


def calibration_steps(snn: SpikingNetwork) -> int:
    """The most input steps any neuron of ``snn`` needs before it can emit (ρ or τ; 0 for plain IF networks)."""
    return max((n.steps for n in snn.neurons().values() if isinstance(n, CalibratedIFNeuron)), default=0)


def simulate_calibrated(snn: SpikingNetwork, x: Tensor, T: int, **kwargs: Any) -> SimResult:
    """``simulate`` for T steps of any network, calibrated ones included: runs max(T, ρ) steps, keeps the first T.

    The first T steps of a longer run are exactly a T-step run of a network whose calibration saw ρ steps.
    """
    horizon = max(T, calibration_steps(snn)) if isinstance(T, int) else T
    result = simulate(snn, x, horizon, **kwargs)
    if horizon == T:
        return result
    return SimResult(
        logits=result.logits[:T],
        spike_counts={k: c[:T] for k, c in result.spike_counts.items()},
        neurons=result.neurons,
        batch_size=result.batch_size,
    )


def calibrated_sweep(snn: SpikingNetwork, loader: Iterable, T: Sequence[int], **kwargs: Any) -> SweepResult:
    """``snnconv.evaluate.sweep`` that also works when every requested T is below ρ (τ).

    When max(T) < ρ it sweeps up to ρ and drops that entry; ``spike_rate`` (per layer) then covers ρ steps.
    """
    Ts = sorted({int(t) for t in T})
    need = calibration_steps(snn)
    if not Ts or Ts[-1] >= need:
        return sweep(snn, loader, Ts, **kwargs)
    result = sweep(snn, loader, [*Ts, need], **kwargs)
    result.T = Ts
    result.snn_accuracy = {t: a for t, a in result.snn_accuracy.items() if t in Ts}
    result.spike_rate_per_T = {t: r for t, r in result.spike_rate_per_T.items() if t in Ts}
    return result


# --- folding thresholds into the next layer's weights ----------------------------------------------------------


def _describe(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return f"layer '{node.target}' ({type(gm.get_submodule(node.target)).__name__})"
    if node.op == "output":
        return "the network output"
    return f"operation '{node.name}'"


def _flatten_start(gm: fx.GraphModule, node: fx.Node) -> int | None:
    """start_dim if ``node`` is a flatten of the channel axis onwards (nn.Flatten / torch.flatten / .flatten)."""
    if node.op == "call_module" and isinstance(gm.get_submodule(node.target), nn.Flatten):
        m = gm.get_submodule(node.target)
        return m.start_dim if m.end_dim == -1 else None
    if (node.op == "call_function" and node.target is torch.flatten) or (
        node.op == "call_method" and node.target == "flatten"
    ):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return start if end == -1 else None
    return None


def _consumers(gm: fx.GraphModule, neuron: fx.Node) -> list[tuple[str, bool]]:
    """(conv/linear target, flattened?) for every path from ``neuron``; raises if a path ends elsewhere."""
    found: list[tuple[str, bool]] = []
    stack: list[tuple[fx.Node, bool]] = [(neuron, False)]
    while stack:
        node, flat = stack.pop()
        for user in node.users:
            bad = ConversionError(
                f"fold_thresholds: spiking layer '{neuron.target}' feeds {_describe(gm, user)}, which cannot absorb "
                "its threshold; θ can only be folded when every consumer is a conv/linear (optionally through "
                "average pooling / flatten). Residual additions and outputs cannot be folded: keep "
                "binary_spikes=False (spikes then carry s·θ)"
            )
            mod = gm.get_submodule(user.target) if user.op == "call_module" else None
            if user.args[:1] != (node,):
                raise bad
            if isinstance(mod, WEIGHTED):
                found.append((user.target, flat))
            elif isinstance(mod, PASS_THROUGH) and not flat:
                stack.append((user, flat))
            elif _flatten_start(gm, user) == 1 and not flat:
                stack.append((user, True))
            else:
                raise bad
    if not found:
        raise ConversionError(f"fold_thresholds: spiking layer '{neuron.target}' has no consumer to fold into")
    return found


@torch.no_grad()
def _scale_input_channels(layer: nn.Module, theta: Tensor, flat: bool, neuron: str) -> None:
    w = layer.weight
    if theta.dim() == 0:
        w.mul_(theta.to(w.dtype))
        return
    C = theta.numel()
    if isinstance(layer, nn.Linear):
        n_in = w.shape[1]
        if (flat and n_in % C) or (not flat and n_in != C):
            raise ConversionError(
                f"fold_thresholds: cannot map the {C} channels of '{neuron}' onto the {n_in} inputs of a Linear layer"
            )
        w.mul_(theta.repeat_interleave(n_in // C).to(w.dtype))
        return
    groups = layer.groups
    if layer.in_channels != C or flat:
        raise ConversionError(
            f"fold_thresholds: '{neuron}' has {C} channels but the next convolution expects {layer.in_channels}"
        )
    per_group = theta.view(groups, C // groups).repeat_interleave(w.shape[0] // groups, dim=0)  # [out, in/groups]
    w.mul_(per_group.view(*per_group.shape, *([1] * (w.dim() - 2))).to(w.dtype))


def fold_thresholds(snn: SpikingNetwork) -> SpikingNetwork:
    """A copy of ``snn`` whose neurons output 0/1 and whose next conv/linear weights absorb θ per input channel.

    Valid only when every consumer of every neuron is a conv/linear, directly or through average pooling,
    dropout/identity or one flatten (start_dim=1); anything else (a residual ``Add``, the output) raises
    ``ConversionError`` naming the layer. The logits are unchanged up to floating-point rounding.
    """
    out = copy.deepcopy(snn)
    gm = out.graph
    targets: dict[str, tuple[Tensor, bool, str]] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or node.target not in out.neurons():
            continue
        neuron = gm.get_submodule(node.target)
        if type(neuron) not in (IFNeuron, CalibratedIFNeuron):
            raise ConversionError(
                f"fold_thresholds: spiking layer '{node.target}' is a {type(neuron).__name__}; only IF neurons "
                "(plain or calibrated) with s·θ outputs can be folded"
            )
        if isinstance(neuron, CalibratedIFNeuron) and neuron.binary:
            raise ConversionError(f"fold_thresholds: spiking layer '{node.target}' is already binary")
        for target, flat in _consumers(gm, node):
            calls = sum(1 for n in gm.graph.nodes if n.op == "call_module" and n.target == target)
            if target in targets or calls != 1:
                raise ConversionError(
                    f"fold_thresholds: layer '{target}' is reached more than once (shared or fed by several "
                    f"spiking layers, here '{node.target}'); its weights cannot absorb one threshold"
                )
            targets[target] = (neuron.threshold, flat, node.target)
    for target, (theta, flat, name) in targets.items():
        _scale_input_channels(gm.get_submodule(target), theta, flat, name)
    for name, neuron in out.neurons().items():
        if isinstance(neuron, CalibratedIFNeuron):
            neuron.binary = True
        else:
            set_module(gm, name, BinaryIFNeuron(neuron.threshold, neuron.phi))
    gm.recompile()
    out.meta["binary_spikes"] = True
    return out
