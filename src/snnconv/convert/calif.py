"""Method "calif": export a QAT model (``snnconv.qat.prepare_qat`` / ``prepare_qat_fx``) to Ca-LIF neurons.

Seed 003 / SPEC §5. Walking the QAT graph, every value carries a *unit* (its real value per unit of the
tensor) and a pending real constant (bias not yet absorbed):

* input fake quantizer (scale S_x) → ``InputEncoder``: integer input codes as spike trains (unit S_x);
* QAT conv/linear (BN folded exactly as the intrinsic QAT module does) → the same layer with integer weights
  w^Q = round(w/S_w) and no bias (unit S_w·S_x, constant b);
* fake quantizer (scale S_y, zero point 0) → ``CalifNeuron`` with θ = S_y/(S_w·S_x), leak −b/(S_w·S_x·T), codes
  in [0, q_max] after a ReLU (calcium gating) or [q_min, q_max] otherwise, at most ``max_spikes_per_step``
  spikes per step (1: the seed's neuron; None: burst); it emits signed integer counts (unit S_y), so the next
  integer-weight layer receives exactly its integer input;
* average pooling → sum pooling (unit weights, unit ÷ p²), so its neuron has θ = p² (no leak, no gating at 0
  for a signed quantizer); adaptive pooling keeps the average (θ = 1, the same map);
* residual additions rescale one branch to the other's unit; the output gets ``CalifReadout`` (unit, bias).

Anything not expressible exactly is refused with a ``ConversionError``: a non-zero zero point, per-channel
activation quantizers, max pooling, unquantized input, other operations.
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.ao.quantization import FakeQuantize

from snnconv.coding import CODINGS, Coding, InputEncoder, Order
from snnconv.convert.check import FIX_MAXPOOL, MAXPOOL_FUNCTIONS, MAXPOOL_MODULES
from snnconv.convert.methods import register_method
from snnconv.convert.network import SpikingNetwork
from snnconv.errors import ConversionError
from snnconv.functional.calif import Rounding, check_max_spikes
from snnconv.layers.calif import CalifNeuron, CalifReadout
from snnconv.qat import freeze

__all__ = ["convert_calif", "integer_weights"]

_PASS_MODULES = (nn.Flatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Unflatten)
_PASS_FUNCTIONS = {torch.flatten, torch.reshape, F.dropout}
_PASS_METHODS = {"view", "reshape", "flatten", "contiguous", "unsqueeze"}
_META_FUNCTIONS = {getattr}
_META_METHODS = {"size", "dim"}
_RELU = ({F.relu, torch.relu}, {"relu"})
_ADD = ({operator.add, torch.add}, {"add", "__add__"})
_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_SUM_POOLS = (nn.AvgPool2d, nn.AvgPool3d)


@dataclass
class _Val:
    node: fx.Node
    unit: Tensor | None = None  # real value of one unit of the tensor: () or (C,); None for non-tensors
    const: Tensor | None = None  # pending real constant (per channel), absorbed by the next neuron
    relu: bool = False  # a ReLU is pending (becomes the gating of the next neuron)
    analog: bool = False  # the raw input (before the input quantizer)


def _fail(node: fx.Node, why: str) -> ConversionError:
    what = f"layer '{node.target}'" if node.op == "call_module" else f"operation '{node.name}'"
    return ConversionError(f"calif: {what} {why}")


def _activation_qparams(fq: FakeQuantize, node: fx.Node) -> tuple[float, float, float]:
    zp = fq.zero_point
    if bool((zp != 0).any()):
        raise _fail(node, f"has zero point {zp.flatten().tolist()[:4]} (scale {float(fq.scale.flatten()[0]):.4g}); "
                    "Ca-LIF export needs zero point 0 (symmetric quantization): use snnconv.qat.prepare_qat "
                    "(signed=True) or non-negative inputs")  # fmt: skip
    if fq.scale.numel() != 1:
        raise _fail(node, "quantizes activations per channel; use a per-tensor activation quantizer")
    return float(fq.scale.reshape(())), float(fq.quant_min), float(fq.quant_max)


def _folded(mod: nn.Module) -> tuple[Tensor, Tensor]:
    """(weight, bias) the QAT module applies in eval mode, BN folded: w·γ/σ and (b − μ)·γ/σ + β."""
    w = mod.weight.detach()
    b = mod.bias.detach() if getattr(mod, "bias", None) is not None else torch.zeros(w.shape[0], dtype=w.dtype)
    bn = getattr(mod, "bn", None)
    if bn is None:
        return w, b
    sigma = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(sigma)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(sigma)
    factor = gamma / sigma
    return w * factor.reshape(-1, *([1] * (w.dim() - 1))), (b - bn.running_mean) * factor + beta


def integer_weights(mod: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
    """(w^Q, S_w, b) of a QAT conv/linear: integer weights round(w/S_w) (scale () or per channel), real bias."""
    w, b = _folded(mod)
    fq = getattr(mod, "weight_fake_quant", None)
    if fq is None or not bool(fq.fake_quant_enabled[0]):
        return w, torch.ones(()), b
    if bool((fq.zero_point != 0).any()):
        raise ConversionError(f"calif: weight quantizer of {type(mod).__name__} has a non-zero zero point; "
                              "use symmetric weight quantization")  # fmt: skip
    with torch.no_grad():
        wf = fq(w)
    scale = fq.scale.detach().reshape(-1)
    if scale.numel() == 1:
        return torch.round(wf / scale), scale.reshape(()), b
    if fq.ch_axis != 0:
        raise ConversionError("calif: per-channel weight quantization must use ch_axis=0 (output channels)")
    return torch.round(wf / scale.view(-1, *([1] * (w.dim() - 1)))), scale, b


def _integer_layer(mod: nn.Module, wq: Tensor) -> nn.Module:
    if isinstance(mod, nn.Linear) or wq.dim() == 2:
        layer = nn.Linear(wq.shape[1], wq.shape[0], bias=False)
    else:
        conv = _CONVS[wq.dim() - 2]
        layer = conv(mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                     mod.groups, bias=False, padding_mode=mod.padding_mode)  # fmt: skip
    layer.weight.data.copy_(wq)
    return layer


class _Exporter:
    def __init__(self, gm: fx.GraphModule, coding: Coding, order: Order, alpha: float, seed: int, rounding: str,
                 max_spikes: int | None = 1):  # fmt: skip
        self.gm = gm
        self.max_spikes = max_spikes
        self.graph, self.root = fx.Graph(), nn.Module()
        self.env: dict[fx.Node, _Val] = {}
        self.enc = {"coding": coding, "order": order, "alpha": alpha, "seed": seed}
        self.rounding = rounding
        self.neurons: list[str] = []
        self.max_input_code = 0.0

    def add(self, base: str, module: nn.Module, *args: fx.Node) -> fx.Node:
        name, i = base.replace(".", "_"), 1
        while hasattr(self.root, name):
            name, i = f"{base.replace('.', '_')}_{i}", i + 1
        self.root.add_module(name, module)
        return self.graph.call_module(name, args)

    def run(self) -> fx.GraphModule:
        for node in self.gm.graph.nodes:
            self.env[node] = self.visit(node)
        self.graph.lint()
        return fx.GraphModule(self.root, self.graph, class_name="CalifSNN")

    def arg(self, node: fx.Node, i: int = 0, *, linear: bool = True) -> _Val:
        a = node.args[i]
        if not isinstance(a, fx.Node):
            raise _fail(node, "has a constant operand, which the Ca-LIF export cannot express")
        v = self.env[a]
        if linear and (v.relu or v.analog):
            why = "follows a ReLU that no fake quantizer closes" if v.relu else "receives the unquantized input"
            raise _fail(node, f"{why}; the QAT graph must quantize every activation (use snnconv.qat.prepare_qat)")
        return v

    def visit(self, node: fx.Node) -> _Val:
        if node.op == "placeholder":
            return _Val(self.graph.placeholder(node.name), torch.ones(()), analog=True)
        if node.op == "output":
            return self.output(node)
        if node.op == "call_module":
            return self.module(node, self.gm.get_submodule(node.target))
        if node.op in ("call_function", "call_method"):
            return self.function(node)
        raise _fail(node, f"({node.op}) is not supported by the Ca-LIF export")

    def output(self, node: fx.Node) -> _Val:
        v = self.arg(node)
        readout = self.add("readout", CalifReadout(v.unit, v.const if v.const is not None else 0.0), v.node)
        return _Val(self.graph.output(readout))

    def module(self, node: fx.Node, mod: nn.Module) -> _Val:
        if isinstance(mod, FakeQuantize):
            return self.quantizer(node, mod)
        if isinstance(mod, MAXPOOL_MODULES):
            raise _fail(node, f"({type(mod).__name__}) cannot be converted: {FIX_MAXPOOL}")
        if isinstance(mod, nn.ReLU):
            return self.relu(node)
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) or hasattr(mod, "weight_fake_quant"):
            return self.weighted(node, mod)
        if isinstance(mod, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                            nn.AdaptiveAvgPool3d)):  # fmt: skip
            return self.pool(node, mod)
        if isinstance(mod, _PASS_MODULES):
            return self.passthrough(
                node, lambda: self.add(node.target, copy.deepcopy(mod), self.arg(node, linear=False).node)
            )
        raise _fail(node, f"({type(mod).__name__}) is not supported by the Ca-LIF export; supported: QAT conv/linear "
                    "(+BN, +ReLU), ReLU, average pooling, flatten, dropout, additions and fake quantizers")  # fmt: skip

    def quantizer(self, node: fx.Node, fq: FakeQuantize) -> _Val:
        v = self.arg(node, linear=False)
        if not bool(fq.fake_quant_enabled[0]):
            return v
        scale, qmin, qmax = _activation_qparams(fq, node)
        if v.analog:
            if v.const is not None or v.relu or float(v.unit) != 1.0:
                raise _fail(node, "quantizes a transformed input; quantize the network input directly")
            self.max_input_code = max(self.max_input_code, qmax)
            enc = InputEncoder(scale, qmin, qmax, **self.enc)
            return _Val(self.add("input_encoder", enc, v.node), torch.tensor(scale))
        unit = v.unit
        bias = v.const / unit if v.const is not None else torch.zeros(())
        lo = max(0.0, qmin) if v.relu else qmin
        neuron = CalifNeuron(scale / unit, bias, lo=lo, hi=qmax, rounding=self.rounding,
                             max_spikes_per_step=self.max_spikes)  # fmt: skip
        out = self.add(f"calif_{node.target}", neuron, v.node)
        self.neurons.append(out.target)
        return _Val(out, torch.tensor(scale))

    def relu(self, node: fx.Node) -> _Val:
        v = self.arg(node, linear=False)
        if v.analog:
            raise _fail(node, "applies a ReLU to the unquantized input")
        return _Val(v.node, v.unit, v.const, relu=True)

    def weighted(self, node: fx.Node, mod: nn.Module) -> _Val:
        v = self.arg(node)
        if v.const is not None or v.unit.dim() != 0:
            raise _fail(node, "receives a per-channel scaled or biased value that no quantizer closes")
        wq, sw, b = integer_weights(mod)
        out = self.add(node.target, _integer_layer(mod, wq), v.node)
        relu = "ReLU" in type(mod).__name__
        return _Val(out, v.unit * sw, b, relu=relu)

    def pool(self, node: fx.Node, mod: nn.Module) -> _Val:
        v = self.arg(node)
        if v.const is not None or v.unit.dim() != 0:
            raise _fail(node, "pools a per-channel scaled or biased value; quantize before pooling")
        exact_sum = mod.count_include_pad or not any(_tuple(mod.padding)) if isinstance(mod, _SUM_POOLS) else False
        if exact_sum and mod.divisor_override is None and not mod.ceil_mode:
            area = math.prod(_tuple(mod.kernel_size, 2 if isinstance(mod, nn.AvgPool2d) else 3))
            summed = copy.deepcopy(mod)
            summed.divisor_override = 1  # unit weights: the pooling neuron gets θ = p² (SPEC §5)
            return _Val(self.add(node.target, summed, v.node), v.unit / area)
        return _Val(self.add(node.target, copy.deepcopy(mod), v.node), v.unit)

    def passthrough(self, node: fx.Node, make) -> _Val:
        """Shape ops and dropout: the value keeps its unit; on the raw input they commute with its quantizer."""
        v = self.arg(node, linear=False)
        if v.relu:
            v = self.arg(node)  # raises: a ReLU no fake quantizer closes
        if v.const is not None or (v.unit is not None and v.unit.dim() != 0):
            raise _fail(node, "reshapes a per-channel scaled or biased value; quantize it first")
        return _Val(make(), v.unit, analog=v.analog)

    def function(self, node: fx.Node) -> _Val:
        fn, is_method = node.target, node.op == "call_method"
        copy_node = lambda: self.graph.node_copy(node, lambda n: self.env[n].node)  # noqa: E731
        if (fn in MAXPOOL_FUNCTIONS) or (is_method and fn in ("max_pool2d",)):
            raise _fail(node, f"cannot be converted: {FIX_MAXPOOL}")
        if fn in _RELU[0] or (is_method and fn in _RELU[1]):
            return self.relu(node)
        if fn in _ADD[0] or (is_method and fn in _ADD[1]):
            return self.addition(node)
        if (is_method and fn in _META_METHODS) or fn in _META_FUNCTIONS:
            return _Val(copy_node())
        if fn in _PASS_FUNCTIONS or (is_method and fn in _PASS_METHODS):
            return self.passthrough(node, copy_node)
        name = fn if is_method else getattr(fn, "__name__", str(fn))
        raise _fail(node, f"({name}) is not supported by the Ca-LIF export")

    def addition(self, node: fx.Node) -> _Val:
        if len(node.args) != 2 or node.kwargs:
            raise _fail(node, "is an addition with extra arguments (alpha/out), which is not supported")
        a, b = self.arg(node, 0), self.arg(node, 1)
        if a.unit.dim() != 0 or b.unit.dim() != 0:
            raise _fail(node, "adds per-channel scaled values; quantize both branches first")
        rhs = b.node
        if float(b.unit) != float(a.unit):
            rhs = self.graph.call_function(operator.mul, (b.node, float(b.unit / a.unit)))
        out = self.graph.call_function(operator.add, (a.node, rhs))
        const = a.const if b.const is None else (b.const if a.const is None else a.const + b.const)
        return _Val(out, a.unit, const)


def _tuple(v, n: int = 2) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


@register_method("calif")
def convert_calif(
    qat_model: nn.Module,
    *,
    T: int = 128,
    input_coding: Coding = "codes",
    order: Order = "even",
    alpha: float = 1.0,
    seed: int = 0,
    rounding: Rounding = "half_even",
    max_spikes_per_step: int | None = 1,
) -> SpikingNetwork:
    """QAT model → Ca-LIF SNN (seed 003 / SPEC §5); simulate with ``simulate(snn, x, T)`` (layer schedule).

    ``max_spikes_per_step=1`` (default): the seed's neuron, one spike per step (§3.2, Fig. 3), so a neuron sends
    at most T + 1 spikes and accuracy rises with T (seed 003 Table 3). ``None``: the burst neuron (one spike per
    threshold crossed), whose final logits ``simulate(...).logits[-1]`` equal the QAT model's output for
    ``input_coding="codes"`` (the exact input codes, spread over the steps by ``order``) at every T, up to float
    rounding at exact half-way points. The leak λ = −b/(S_w·S_x·T) uses the simulated T. ``"isi"``/``"rate"``/
    ``"direct"`` encode x ∈ [0, 1] instead (approximate). ``T`` (>= the largest input code for one input spike
    per step) and the neuron's options are recorded in ``meta``.
    """
    check_max_spikes(max_spikes_per_step, "calif", ConversionError)
    if not isinstance(qat_model, fx.GraphModule):
        raise ConversionError("calif: expected a QAT GraphModule; prepare the model with snnconv.qat.prepare_qat")
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ConversionError(f"calif: T must be a positive integer, got {T!r}")
    if input_coding not in CODINGS:
        raise ConversionError(f"calif: input_coding must be one of {CODINGS}, got {input_coding!r}")
    if not any(isinstance(m, FakeQuantize) for m in qat_model.modules()):
        raise ConversionError("calif: the model has no fake quantizer; prepare it with snnconv.qat.prepare_qat")
    for name, m in qat_model.named_modules():
        if isinstance(m, (nn.LayerNorm, nn.MultiheadAttention)):
            raise ConversionError(f"calif: layer '{name}' ({type(m).__name__}) has no Ca-LIF form: the export covers "
                                  "conv/linear/ReLU/pooling networks (seed 003); convert transformers with "
                                  "method='if' or 'bitserial'")  # fmt: skip
    gm = freeze(copy.deepcopy(qat_model))
    exporter = _Exporter(gm, input_coding, order, alpha, seed, rounding, max_spikes_per_step)
    with torch.no_grad():
        graph = exporter.run()
    meta = {"method": "calif", "T": T, "input_coding": input_coding, "order": order, "rounding": rounding,
            "max_spikes_per_step": max_spikes_per_step, "neurons": len(exporter.neurons),
            "max_input_code": exporter.max_input_code}  # fmt: skip
    return SpikingNetwork(graph, meta)
