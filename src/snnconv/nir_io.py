"""NIR (Neuromorphic Intermediate Representation, nir 1.0) export/import of IF-method SNNs (issue 9).

``export_nir(snn, path, input_shape)`` writes the ``SpikingNetwork`` as a ``nir.NIRGraph`` (HDF5 via
``nir.write``); ``import_nir(path)`` rebuilds a ``SpikingNetwork`` that reproduces it bit for bit.

Node mapping (shapes exclude the batch dimension, as NIR requires):

* ``nn.Conv2d`` → ``nir.Conv2d``; ``nn.Linear`` → ``nir.Affine`` (``nir.Linear`` without bias);
* ``nn.AvgPool2d`` → ``nir.AvgPool2d``; ``AdaptiveAvgPool2d``/``F.adaptive_avg_pool2d`` → ``nir.AvgPool2d``
  with the equivalent kernel (input size divisible by the output size);
* ``nn.Flatten``/``torch.flatten`` → ``nir.Flatten`` (NIR counts dims without the batch: torch's
  ``start_dim=1`` is NIR's 0);
* ``snnconv.Add`` / tensor ``+`` → ``nir.Scale`` of ones with two incoming edges (NIR sums the edges entering
  a node);
* ``IFNeuron`` → ``nir.IF(r=1, v_threshold=θ, v_reset=0)`` followed by ``nir.Scale(θ)`` named
  ``<neuron>.spike_value`` (a NIR IF emits 1, ours sends s·θ, SPEC §1). With ``fold_scales=True`` the θ
  is instead multiplied into the input columns of the following conv/linear layers where the path
  IF → [avg-pool/flatten]* → conv/linear allows it (for frameworks without ``nir.Scale``, e.g. snnTorch's
  importer); such files are not imported back by :func:`import_nir`.

**What NIR's IF cannot express** (recorded in node metadata instead, so other tools may ignore them): the
reset by subtraction (``metadata["reset"] = "subtract"``; NIR's IF resets to ``v_reset``), the initial
membrane potential v(0) = φθ (``metadata["v_init_fraction"] = φ``), the firing condition v ≥ θ (NIR: v > θ)
and the per-layer/per-channel threshold tensor (``metadata["threshold"]``). Every node also stores its
snnconv module name (``metadata["snnconv_name"]``) and kind, which :func:`import_nir` uses to rebuild the
exact modules (e.g. ``AdaptiveAvgPool2d`` rather than an equivalent ``AvgPool2d``). Identity and Dropout
layers are skipped. Unfolded BatchNorm and other layers are rejected with a ``ConversionError``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from snnconv.convert.network import SpikingNetwork
from snnconv.errors import ConversionError
from snnconv.layers.add import Add
from snnconv.layers.neuron import IFNeuron, SpikingNeuron
from snnconv.nir_import import from_nir, import_nir, load_nir, plain

_SKIP = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_ADDS = {operator.add, operator.iadd, torch.add}


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


class _Shapes(fx.Interpreter):
    """Per-node output shapes of one sample, neurons as identity."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[str, tuple[int, ...]] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, Tensor):
            self.shapes[n.name] = tuple(result.shape[1:])
        return result

    def call_module(self, target, args, kwargs):
        if isinstance(self.module.get_submodule(target), SpikingNeuron):
            return args[0]
        return super().call_module(target, args, kwargs)


def _adaptive_kernel(shape: Sequence[int], output_size: Any, name: str) -> tuple[int, int]:
    h, w = shape[-2:]
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    oh, ow = oh or h, ow or w
    if h % oh or w % ow:
        raise ConversionError(f"export_nir: adaptive pooling '{name}' from {h}×{w} to {oh}×{ow} is not a fixed kernel")
    return h // oh, w // ow


def to_nir(snn: SpikingNetwork, input_shape: Sequence[int], *, fold_scales: bool = False):
    """The ``nir.NIRGraph`` of ``snn`` for inputs of shape ``input_shape`` (no batch dim); see the module doc."""
    nir = load_nir()
    gm = snn.graph
    for name, mod in snn.neurons().items():
        if type(mod) is not IFNeuron:
            raise ConversionError(
                f"export_nir: neuron '{name}' ({type(mod).__name__}) has no NIR node: NIR's IF neuron integrates "
                f"and fires every step and carries no calibration pre-run (this network: method "
                f"{snn.meta.get('method', '?')!r}); export a network converted with method='if' (or 'ratenorm') "
                "without calibration or binary_spikes (fold_scales=True gives 0/1 spikes)"
            )
    p = next(iter(gm.parameters()), None)
    dtype = p.dtype if p is not None else torch.get_default_dtype()
    interp = _Shapes(gm)
    with torch.no_grad():
        interp.run(torch.zeros(1, *input_shape, dtype=dtype))
    shapes = interp.shapes
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    alias: dict[str, str] = {}  # fx node name -> NIR node name producing its value

    def meta(name: str, kind: str, **extra: Any) -> dict[str, Any]:
        return {"snnconv_name": name, "snnconv_kind": kind, **extra}

    def src(arg: Any) -> str:
        if not isinstance(arg, fx.Node):
            raise ConversionError(f"export_nir: unsupported non-tensor argument {arg!r}")
        return alias[arg.name]

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            nodes["input"] = nir.Input(input_type={"input": np.array(input_shape)})
            alias[node.name] = "input"
            continue
        if node.op == "output":
            out = node.args[0]
            nodes["output"] = nir.Output(output_type={"output": np.array(shapes[out.name])})
            edges.append((src(out), "output"))
            continue
        ins = [a for a in node.args if isinstance(a, fx.Node)]
        in_shape = shapes[ins[0].name] if ins else ()
        key = node.target if node.op == "call_module" else node.name
        new = None
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            if isinstance(mod, _SKIP):
                alias[node.name] = src(node.args[0])
                continue
            if type(mod) is IFNeuron:  # subclasses (binary, COS/SRP-calibrated) fire differently: refused below
                out_shape = shapes[node.name]
                theta = torch.broadcast_to(mod.threshold.reshape(-1, *([1] * (len(out_shape) - 1)))
                                           if mod.threshold.dim() else mod.threshold, out_shape)  # fmt: skip
                scalar = int(mod.threshold.dim() == 0)
                md = meta(key, "IFNeuron", reset="subtract", v_init_fraction=mod.phi,
                          threshold=np.atleast_1d(_np(mod.threshold)), threshold_is_scalar=scalar,
                          fire="v >= v_threshold")  # fmt: skip
                nodes[key] = nir.IF(r=np.ones(out_shape, dtype=_np(theta).dtype), v_threshold=_np(theta),
                                    v_reset=np.zeros(out_shape, dtype=_np(theta).dtype), metadata=md)  # fmt: skip
                edges.append((src(node.args[0]), key))
                scale_key = f"{key}.spike_value"
                nodes[scale_key] = nir.Scale(scale=_np(theta), metadata=meta(key, "spike_value"))
                edges.append((key, scale_key))
                alias[node.name] = scale_key
                continue
            if isinstance(mod, nn.Conv2d):
                if mod.padding_mode != "zeros":
                    raise ConversionError(f"export_nir: conv '{key}' uses padding_mode={mod.padding_mode!r}")
                bias = (
                    _np(mod.bias) if mod.bias is not None else np.zeros(mod.out_channels, dtype=_np(mod.weight).dtype)
                )
                new = nir.Conv2d(input_shape=tuple(in_shape[-2:]), weight=_np(mod.weight), stride=mod.stride,
                                 padding=mod.padding, dilation=mod.dilation, groups=mod.groups, bias=bias,
                                 metadata=meta(key, "Conv2d", has_bias=mod.bias is not None))  # fmt: skip
            elif isinstance(mod, nn.Linear):
                md = meta(key, "Linear", has_bias=mod.bias is not None)
                new = (nir.Affine(weight=_np(mod.weight), bias=_np(mod.bias), metadata=md) if mod.bias is not None
                       else nir.Linear(weight=_np(mod.weight), metadata=md))  # fmt: skip
            elif isinstance(mod, nn.AvgPool2d):
                if mod.divisor_override is not None or mod.ceil_mode:
                    raise ConversionError(f"export_nir: avg-pool '{key}' uses ceil_mode/divisor_override")
                pair = nn.modules.utils._pair
                new = nir.AvgPool2d(kernel_size=np.array(pair(mod.kernel_size)), stride=np.array(pair(mod.stride)),
                                    padding=np.array(pair(mod.padding)),
                                    metadata=meta(key, "AvgPool2d",
                                                  count_include_pad=mod.count_include_pad))  # fmt: skip
            elif isinstance(mod, nn.AdaptiveAvgPool2d):
                new = _adaptive(nir, key, in_shape, mod.output_size, meta)
            elif isinstance(mod, nn.Flatten):
                new = _flatten(nir, key, in_shape, mod.start_dim, mod.end_dim, meta)
            elif isinstance(mod, Add):
                new = nir.Scale(scale=np.ones(shapes[node.name], dtype=np.float32), metadata=meta(key, "Add"))
            else:
                raise ConversionError(
                    f"export_nir: layer '{key}' ({type(mod).__name__}) has no NIR mapping; supported: Conv2d, Linear, "
                    "AvgPool2d, AdaptiveAvgPool2d, Flatten, Add, IFNeuron (fold BatchNorm before exporting)"
                )
        elif node.op == "call_function" and node.target is torch.flatten:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            new = _flatten(nir, key, in_shape, start, end, meta)
        elif node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
            out_size = node.args[1] if len(node.args) > 1 else node.kwargs["output_size"]
            new = _adaptive(nir, key, in_shape, out_size, meta)
        elif node.op == "call_function" and node.target in _ADDS and len(ins) == 2 and not node.kwargs:
            new = nir.Scale(scale=np.ones(shapes[node.name], dtype=np.float32), metadata=meta(key, "Add"))
        else:
            raise ConversionError(f"export_nir: operation '{node.name}' ({node.target}) has no NIR mapping")
        nodes[key] = new
        for a in ins:
            edges.append((src(a), key))
        alias[node.name] = key
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"snnconv_method": str(snn.meta.get("method", ""))})
    return _fold_scales(nir, graph) if fold_scales else graph


def _flatten(nir, key: str, in_shape: Sequence[int], start: int, end: int, meta) -> Any:
    nd = len(in_shape) + 1
    start, end = start % nd, end % nd
    if start == 0:
        raise ConversionError(f"export_nir: flatten '{key}' flattens the batch dimension")
    md = meta(key, "Flatten", torch_start_dim=start, torch_end_dim=end)
    return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=start - 1,
                       end_dim=end - 1 if end < nd - 1 else -1, metadata=md)  # fmt: skip


def _adaptive(nir, key: str, in_shape: Sequence[int], output_size: Any, meta) -> Any:
    k = _adaptive_kernel(in_shape, output_size, key)
    out = list(output_size) if isinstance(output_size, (tuple, list)) else [output_size, output_size]
    md = meta(key, "AdaptiveAvgPool2d", output_size=np.array([-1 if o is None else o for o in out]))
    return nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(k), padding=np.array([0, 0]), metadata=md)


def _fold_scales(nir, graph) -> Any:
    """Replace IF → Scale(θ) by θ folded into the next conv/linear layers wherever every path allows it."""
    nodes, edges = dict(graph.nodes), list(graph.edges)

    def succ(k: str) -> list[str]:
        return [b for a, b in edges if a == k]

    def n_preds(k: str) -> int:
        return sum(b == k for _, b in edges)

    spike_values = [k for k, n in nodes.items() if isinstance(n, nir.Scale)
                    and plain(n.metadata.get("snnconv_kind")) == "spike_value"]  # fmt: skip
    for key in spike_values:
        th = np.asarray(nodes[key].scale)
        if th.ndim == 3 and np.all(th == th[:, :1, :1]):
            start = ("chan", th[:, 0, 0])
        elif th.ndim == 1:
            start = ("feat", th)
        else:
            continue
        targets, frontier, ok = [], [(s, start) for s in succ(key)], True
        while frontier and ok:
            k, (kind, vec) = frontier.pop()
            n = nodes[k]
            if n_preds(k) != 1:
                ok = False
            elif isinstance(n, nir.AvgPool2d) and kind == "chan":
                frontier += [(s, (kind, vec)) for s in succ(k)]
            elif isinstance(n, nir.Flatten) and kind == "chan" and n.start_dim == 0 and n.end_dim == -1:
                spatial = int(np.prod(np.asarray(n.input_type["input"])[1:]))
                frontier += [(s, ("feat", np.repeat(vec, spatial))) for s in succ(k)]
            elif isinstance(n, nir.Conv2d) and kind == "chan" and n.groups == 1:
                targets.append((k, vec.reshape(1, -1, 1, 1)))
            elif isinstance(n, (nir.Affine, nir.Linear)) and kind == "feat":
                targets.append((k, vec.reshape(1, -1)))
            else:
                ok = False
        if not ok or not targets:
            continue
        for k, vec in targets:
            n = nodes[k]
            n.weight = n.weight * vec.astype(n.weight.dtype)
            n.metadata = {**n.metadata, "snnconv_folded_spike_value": 1}
        neuron = next(a for a, b in edges if b == key)
        edges = [(neuron if a == key else a, b) for a, b in edges if b != key]
        del nodes[key]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata))


def export_nir(snn: SpikingNetwork, path: str | Path, input_shape: Sequence[int], *, fold_scales: bool = False):
    """Write ``snn`` (IF method) to ``path`` as a NIR HDF5 file; returns the ``nir.NIRGraph`` written."""
    nir = load_nir()
    graph = to_nir(snn, input_shape, fold_scales=fold_scales)
    nir.write(str(path), graph)
    return graph


__all__ = ["export_nir", "from_nir", "import_nir", "to_nir"]
