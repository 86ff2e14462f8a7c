"""Where a network is spiking and where it is analog: the domain of every graph node (issue 11).

Domains, in graph order (the simulator's own rules, ``snnconv.simulate``):

* ``input``: the analog image (direct coding).
* ``static``: depends on the input only, computed once and reused at every step (under the rate code; in a
  bit-serial SNN the input encoder makes everything after it time-dependent).
* ``spiking``: a neuron (a QCFS of the ANN, which becomes one; a ``SpikingNeuron`` of an SNN).
* ``per-step``: an affine map applied at every step to time-varying values (conv/linear, additions, means,
  permutations, per-step biases): spike-driven currents, or in a bit-serial SNN also the time-coded input.
* ``analog``: an ``Analog`` stage (LayerNorm, attention, ...) computed on decoded values: ``rate`` (running mean
  over steps 1..t, re-emitted rate-consistently; method "if"), ``sum`` (the sum over all T steps, once; method
  "bitserial"), ``once`` (time-constant input: f(x) computed once), or plain ``analog`` in an ANN (it becomes a
  ``rate`` stage under method "if", a ``sum`` stage under "bitserial").

The boundary is the set of edges per-step → analog ("decode": the stage reads the rate or the sum of its input)
and analog → per-step ("encode": its output enters the next layers as a per-step current).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.fx as fx
from torch import nn

from snnconv.convert.network import SpikingNetwork
from snnconv.convert.trace import trace
from snnconv.layers.analog import Analog, AnalogStage
from snnconv.layers.neuron import SpikingNeuron
from snnconv.layers.qcfs import QCFS
from snnconv.layers.temporal import TimeAware
from snnconv.report import table

__all__ = ["NodeDomain", "boundary_edges", "boundary_report", "has_analog", "node_domains"]

PER_STEP = ("spiking", "per-step")


@dataclass(frozen=True)
class NodeDomain:
    name: str  #: module path (call_module) or node name
    op: str  #: module type, function or method name
    domain: str  #: input, static, spiking, per-step, analog
    coding: str  #: analog stages: rate, sum, once or analog (ANN); "" otherwise
    inputs: tuple[str, ...]


def has_analog(model: nn.Module) -> bool:
    return any(isinstance(m, (Analog, AnalogStage)) for m in model.modules())


def _graph(model: nn.Module) -> fx.GraphModule:
    return model.graph if isinstance(model, SpikingNetwork) else trace(model)


def _op(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        inner = mod.inner if isinstance(mod, AnalogStage) else mod
        chain = f"({inner.describe()})" if isinstance(inner, Analog) else ""
        return type(mod).__name__ + chain
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return "." + str(node.target) + "()" if node.op == "call_method" else node.op


def node_domains(model: nn.Module) -> list[NodeDomain]:
    """The domain of every computing node of ``model`` (an ANN, traced, or a ``SpikingNetwork``), in order."""
    gm = _graph(model)
    names: dict[fx.Node, str] = {}
    static: set[fx.Node] = set()
    out = []
    for node in gm.graph.nodes:
        if node.op in ("output", "get_attr"):
            continue
        names[node] = node.target if node.op == "call_module" else node.name
        ins = [a for a in node.all_input_nodes if a in names]
        mod = gm.get_submodule(node.target) if node.op == "call_module" else None
        all_static = all(a in static for a in ins)
        coding = ""
        if node.op == "placeholder":
            domain = "input"
            static.add(node)
        elif isinstance(mod, (QCFS, SpikingNeuron)):
            domain = "spiking"
        elif isinstance(mod, (Analog, AnalogStage)):
            domain = "analog"
            constant = isinstance(mod, Analog) or mod.static_on_constant
            if all_static and constant:
                coding = "once"
                static.add(node)
            else:
                coding = mod.coding if isinstance(mod, AnalogStage) else "analog"
        elif all_static and not isinstance(mod, TimeAware):
            domain = "static"
            static.add(node)
        else:
            domain = "per-step"
        out.append(NodeDomain(names[node], _op(gm, node), domain, coding, tuple(names[a] for a in ins)))
    return out


def boundary_edges(domains: list[NodeDomain]) -> list[tuple[str, str, str]]:
    """(source, target, kind) for every edge between per-step and analog nodes (kind: decode, encode, static)."""
    by_name = {d.name: d for d in domains}
    edges = []
    for d in domains:
        for src in d.inputs:
            s = by_name[src]
            if d.domain == "analog" and d.coding != "once" and s.domain in PER_STEP:
                edges.append((src, d.name, f"decode: per-step → analog ({d.coding})"))
            elif s.domain == "analog" and s.coding != "once" and d.domain in PER_STEP:
                edges.append((src, d.name, "encode: analog → per-step"))
    return edges


def boundary_report(model: nn.Module) -> str:
    """A node table (node, op, domain, coding, inputs) and the list of boundary edges."""
    domains = node_domains(model)
    rows = [[d.name, d.op, d.domain, d.coding or "-", ", ".join(d.inputs) or "-"] for d in domains]
    counts = {k: sum(d.domain == k for d in domains) for k in ("spiking", "analog", "per-step", "static")}
    lines = [
        "spiking/analog boundary: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + " nodes",
        "(analog coding: rate = f of the running mean over steps 1..t, re-emitted so that the output's mean is f of "
        "the input's mean;\n sum = f of the sum over all T steps, sent once; once = time-constant input, computed "
        "once; analog = ANN, rate under 'if', sum under 'bitserial')",
        table(["node", "op", "domain", "coding", "inputs"], rows),
        "boundary edges:",
    ]
    edges = boundary_edges(domains)
    lines += [f"  {src} → {dst}  ({kind})" for src, dst, kind in edges] or ["  (none)"]
    return "\n".join(lines)
