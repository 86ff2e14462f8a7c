"""Calibrated conversions (COS, SRP: ``convert(ann, method="if", calibration=...)``) and threshold folding.

* ``convert(ann, method="if", calibration="cos", rho=4)``: QCFS → IF, each neuron a ``COSNeuron`` (offset-spike
  calibration, Hao, Ding, Bu, Huang & Yu 2023, arXiv:2302.10685): layer by layer, ρ pre-simulation steps, then the
  initial potential is shifted if the neuron fired too much (v(ρ) < 0) or too little (v(ρ) ≥ θ) and all T steps
  are replayed. Latency ρ + T. ``cos_shift="reference"`` (default) shifts a neuron that fired at every pre-run
  step by 1001.001·θ as the authors' code does, ``"theta"`` by θ (snnconv's earlier rule).
* ``convert(ann, method="if", calibration="srp", tau=4)``: each neuron an ``SRPNeuron`` (residual membrane
  potential, Hao, Bu, Ding, Huang & Yu, AAAI 2023, arXiv:2302.02091): τ steps in sync, mask = v(τ) > 1e-3·θ,
  reset, T masked steps. Latency τ + T.

The exact rules are in ``snnconv.layers.calibrated``. Methods ``"cos"`` and ``"srp"`` are aliases of ``"if"`` with
that calibration (the CLI's ``--method cos/srp``). Read calibrated networks with ``simulate_calibrated`` /
``calibrated_sweep``: they return the T result steps (COS: the replay of a max(T, ρ)-step run; SRP: the τ + 1 ..
τ + T steps of a τ + T-step run) and report ρ/τ, T and the latency. ``snnconv.evaluate.sweep`` gives the right
numbers for COS when max(T) ≥ ρ, but for SRP it reports the raw timeline (pre-run included): use
``calibrated_sweep``, which handles every network.

``fold_thresholds(snn)`` (or ``binary_spikes=True``) moves every θ_c into the weights of the conv/linear that
consumes the neuron, so that spikes travel as 0/1.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor, nn

from snnconv.convert.methods import convert_if, register_method, replace_activations
from snnconv.convert.network import SpikingNetwork
from snnconv.convert.trace import set_module
from snnconv.errors import ConversionError
from snnconv.evaluate import SweepResult, sweep
from snnconv.layers.calibrated import (
    BinaryIFNeuron,
    CalibratedIFNeuron,
    Calibration,
    COSNeuron,
    SRPNeuron,
    check_cos_shift,
)
from snnconv.layers.neuron import IFNeuron
from snnconv.simulate import Schedule, SimResult, simulate

__all__ = [
    "CALIBRATIONS", "CalibratedSweepResult", "Calibration", "DEFAULT_RHO", "DEFAULT_TAU", "calibrate",
    "calibrated_sweep", "calibration_of", "calibration_steps", "convert_cos", "convert_srp", "fold_thresholds",
    "simulate_calibrated",
]  # fmt: skip

CALIBRATIONS: tuple[str, ...] = ("none", "cos", "srp")
DEFAULT_RHO = 4
DEFAULT_TAU = 4

WEIGHTED: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
#: channel-preserving maps a neuron's output may pass through before a conv/linear when folding θ
PASS_THROUGH: tuple[type[nn.Module], ...] = (
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
)  # fmt: skip


def calibrate(
    snn: SpikingNetwork,
    calibration: Calibration,
    *,
    rho: int | None = None,
    tau: int | None = None,
    cos_shift: str | None = None,
) -> SpikingNetwork:
    """Pass (in place; returned): turn every plain ``IFNeuron`` of ``snn`` into a COS or SRP neuron.

    ``rho`` (default 4) and ``cos_shift`` (default "reference") belong to ``"cos"``, ``tau`` to ``"srp"``
    (default 4); giving them to another calibration raises. ``"none"`` leaves the network as it is. ``snn.meta``
    records the calibration, its steps and (COS) its shift rule.
    """
    if calibration not in CALIBRATIONS:
        raise ConversionError(f"unknown calibration {calibration!r}; valid: {', '.join(CALIBRATIONS)}")
    for name, value, owner in (("rho", rho, "cos"), ("tau", tau, "srp"), ("cos_shift", cos_shift, "cos")):
        if value is not None and calibration != owner:
            raise ConversionError(f"{name}={value!r} is an option of calibration={owner!r}, not {calibration!r}")
    for name, value in (("rho", rho), ("tau", tau)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConversionError(f"{name} must be a positive integer, got {value!r}")
    if cos_shift is not None:
        check_cos_shift(cos_shift, "calibrate", ConversionError)
    snn.meta["calibration"] = calibration
    if calibration == "none":
        return snn
    if calibration == "cos":
        steps = DEFAULT_RHO if rho is None else rho
        shift = "reference" if cos_shift is None else cos_shift
        make = lambda n: COSNeuron(n.threshold, n.phi, rho=steps, shift=shift)  # noqa: E731
    else:
        steps = DEFAULT_TAU if tau is None else tau
        make = lambda n: SRPNeuron(n.threshold, n.phi, tau=steps)  # noqa: E731
    if any(type(n) is not IFNeuron for n in snn.neurons().values()):
        raise ConversionError("calibrate: only plain IF networks can be calibrated")
    replace_activations(snn.graph, IFNeuron, make)
    snn.meta["rho" if calibration == "cos" else "tau"] = steps
    if calibration == "cos":
        snn.meta["cos_shift"] = shift
    return snn


@register_method("cos")
def convert_cos(
    ann: nn.Module,
    *,
    rho: int = DEFAULT_RHO,
    fold_batchnorm: bool = True,
    binary_spikes: bool = False,
    cos_shift: str = "reference",
) -> SpikingNetwork:
    """Alias: ``convert(ann, method="if", calibration="cos", rho=rho, cos_shift=...)`` (COS, Hao et al. 2023)."""
    return convert_if(ann, calibration="cos", rho=rho, fold_batchnorm=fold_batchnorm, binary_spikes=binary_spikes,
                      cos_shift=cos_shift)  # fmt: skip


@register_method("srp")
def convert_srp(
    ann: nn.Module, *, tau: int = DEFAULT_TAU, fold_batchnorm: bool = True, binary_spikes: bool = False
) -> SpikingNetwork:
    """Alias: ``convert(ann, method="if", calibration="srp", tau=tau)`` (SRP, Hao et al. 2023)."""
    return convert_if(ann, calibration="srp", tau=tau, fold_batchnorm=fold_batchnorm, binary_spikes=binary_spikes)


# --- running calibrated networks -------------------------------------------------------------------------------


def calibration_of(snn: SpikingNetwork) -> tuple[Calibration, int]:
    """(calibration, pre-run steps ρ or τ) of ``snn``, from its neurons; ("none", 0) for plain networks."""
    kinds = {(n.kind, n.steps) for n in snn.neurons().values() if isinstance(n, CalibratedIFNeuron)}
    if not kinds:
        return "none", 0
    if len({k for k, _ in kinds}) > 1:
        raise ConversionError("the network mixes COS and SRP neurons; calibrate it with one of them")
    kind = next(iter(kinds))[0]
    return kind, max(s for _, s in kinds)


def calibration_steps(snn: SpikingNetwork) -> int:
    """ρ (COS) or τ (SRP) of ``snn``: the steps it runs before the T result steps (0 for plain networks)."""
    return calibration_of(snn)[1]


def simulate_calibrated(snn: SpikingNetwork, x: Tensor, T: int, **kwargs: Any) -> SimResult:
    """``simulate`` for the T result steps of any network, calibrated or not (logits and spike counts of those T).

    COS: runs max(T, ρ) steps and keeps the first T (the replay). SRP: runs τ + T steps and keeps steps τ+1..τ+T;
    the logits after result step t are the mean output over steps τ+1..τ+t, recovered from the engine's running
    means (exact up to float rounding). Plain networks: ``simulate``.
    """
    kind, steps = calibration_of(snn)
    if kind == "none" or not isinstance(T, int) or isinstance(T, bool) or T < 1:
        return simulate(snn, x, T, **kwargs)
    horizon = max(T, steps) if kind == "cos" else steps + T
    result = simulate(snn, x, horizon, **kwargs)
    if kind == "cos":
        if horizon == T:
            return result
        logits = result.logits[:T]
        counts = {k: c[:T] for k, c in result.spike_counts.items()}
    else:
        shape = (horizon, *([1] * (result.logits.dim() - 1)))
        t = torch.arange(1, horizon + 1, dtype=result.logits.dtype, device=result.logits.device).view(shape)
        total = result.logits * t  # running sums of the output current
        steps_t = t[:T]
        logits = (total[steps:] - total[steps - 1]) / steps_t
        counts = {k: c[steps:] for k, c in result.spike_counts.items()}
    return SimResult(logits=logits, spike_counts=counts, neurons=result.neurons, batch_size=result.batch_size)


@dataclass
class CalibratedSweepResult(SweepResult):
    """``SweepResult`` of the T result steps, plus the calibration, its steps and the latency ρ + T (τ + T)."""

    calibration: str = "none"
    pre_steps: int = 0  #: ρ (COS) or τ (SRP); 0 without calibration

    @property
    def latency(self) -> dict[int, int]:
        return {t: self.pre_steps + t for t in self.T}

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["calibration"] = self.calibration
        if self.calibration != "none":
            out["rho" if self.calibration == "cos" else "tau"] = self.pre_steps
        out["latency"] = {str(t): lat for t, lat in self.latency.items()}
        return out


def calibrated_sweep(
    snn: SpikingNetwork,
    loader: Iterable,
    T: Sequence[int],
    *,
    ann: nn.Module | None = None,
    device: torch.device | str = "cpu",
    schedule: Schedule = "layer",
    chunk: int | str | None = "auto",
    progress: bool = True,
) -> CalibratedSweepResult:
    """``snnconv.evaluate.sweep`` over the T result steps of any network (``simulate_calibrated``, one run per
    batch up to max(T)); spike rates count the result steps only (not the ρ/τ pre-run)."""
    kind, steps = calibration_of(snn)
    base = sweep(snn, loader, T, ann=ann, device=device, schedule=schedule, chunk=chunk, progress=progress,
                 simulate_fn=simulate_calibrated)  # fmt: skip
    return CalibratedSweepResult(**dataclasses.asdict(base), calibration=kind, pre_steps=steps)


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
        if type(neuron) is not IFNeuron and not isinstance(neuron, CalibratedIFNeuron):
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
