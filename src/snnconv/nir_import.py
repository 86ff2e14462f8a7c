"""NIR import (issue 9; split from :mod:`snnconv.nir_io`): a NIR graph written by ``export_nir`` back into an
identical ``SpikingNetwork``.

The graph's own parameters are used, not snnconv's metadata (issue 20): weights and biases, and every IF node's
``v_threshold``, which must equal the scale of the ``spike_value`` node after it and be constant within a channel
(else the file is refused as inconsistent). The metadata supplies what NIR cannot express (reset by subtraction,
v(0) = φθ, module names and kinds). Layers may sit at the top level (``nn.Sequential``'s ``0``, torchvision's
``conv1``/``fc``) or nested (``layer1.0.conv1``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import Tensor, nn

from snnconv._deps import require
from snnconv.convert.network import SpikingNetwork
from snnconv.errors import ConversionError
from snnconv.layers.add import Add
from snnconv.layers.neuron import IFNeuron


def load_nir():
    """The ``nir`` package (optional: ``pip install 'snnconv[nir]'``)."""
    return require("nir", "NIR export/import")


def plain(v: Any) -> Any:
    """A metadata value as Python data (HDF5 returns strings as bytes or 0-d arrays)."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.dtype.kind in "SO" and v.ndim == 0:
        return plain(v.item())
    return v


def _tensor(a: Any, dtype: torch.dtype | None = None) -> Tensor:
    t = torch.from_numpy(np.array(a))
    return t.to(dtype) if dtype is not None else t


def from_nir(graph) -> SpikingNetwork:
    """Rebuild a ``SpikingNetwork`` from a NIR graph written by :func:`export_nir` (without ``fold_scales``)."""
    nir = load_nir()
    nodes = graph.nodes
    edges = list(graph.edges)
    preds: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        preds[b].append(a)
    kinds = [type(n) for n in nodes.values()]
    if kinds.count(nir.Input) != 1 or kinds.count(nir.Output) != 1:
        raise ConversionError(f"import_nir: the graph needs one Input and one Output node, it has "
                              f"{kinds.count(nir.Input)} Input and {kinds.count(nir.Output)} Output")  # fmt: skip
    md = {k: {m: plain(v) for m, v in (n.metadata or {}).items()} for k, n in nodes.items()}
    if any(int(np.asarray(m.get("snnconv_folded_spike_value", 0))) for m in md.values()):
        raise ConversionError("import_nir: files exported with fold_scales=True cannot be imported back exactly")
    # topological order
    order, done = [], set()

    def visit(k: str) -> None:
        if k in done:
            return
        done.add(k)
        for p in preds[k]:
            visit(p)
        order.append(k)

    for k in nodes:
        visit(k)
    root = nn.Module()
    g = fx.Graph()
    env: dict[str, fx.Node] = {}
    for k in order:
        n, m = nodes[k], md[k]
        if isinstance(n, nir.Input):
            env[k] = g.placeholder("x")
            continue
        if isinstance(n, nir.Output):
            g.output(env[preds[k][0]])
            continue
        kind = m.get("snnconv_kind")
        name = str(m.get("snnconv_name", k))
        if kind == "spike_value":  # folded into the IF neuron, which outputs s·θ
            env[k] = env[preds[k][0]]
            continue
        if isinstance(n, nir.IF):
            if kind != "IFNeuron":
                raise ConversionError(f"import_nir: IF node '{k}' was not written by snnconv")
            scale = [b for a, b in edges if a == k]
            if len(scale) != 1 or md[scale[0]].get("snnconv_kind") != "spike_value":
                raise ConversionError(f"import_nir: IF node '{k}' must be followed by its spike_value Scale")
            th = _if_threshold(k, n, nodes[scale[0]], m)
            mod = IFNeuron(_tensor(th), phi=float(np.asarray(m["v_init_fraction"])))
        elif isinstance(n, nir.Conv2d):
            w = _tensor(n.weight)
            has_bias = bool(np.asarray(m.get("has_bias", True)))
            mod = nn.Conv2d(w.shape[1] * n.groups, w.shape[0], tuple(w.shape[2:]), tuple(np.atleast_1d(n.stride)),
                            _padding(n.padding), tuple(np.atleast_1d(n.dilation)), int(n.groups), bias=has_bias,
                            dtype=w.dtype)  # fmt: skip
            with torch.no_grad():
                mod.weight.copy_(w)
                if has_bias:
                    mod.bias.copy_(_tensor(n.bias))
        elif isinstance(n, (nir.Affine, nir.Linear)):
            w = _tensor(n.weight)
            has_bias = isinstance(n, nir.Affine)
            mod = nn.Linear(w.shape[1], w.shape[0], bias=has_bias, dtype=w.dtype)
            with torch.no_grad():
                mod.weight.copy_(w)
                if has_bias:
                    mod.bias.copy_(_tensor(n.bias))
        elif isinstance(n, nir.AvgPool2d):
            if kind == "AdaptiveAvgPool2d":
                out = [None if int(o) < 0 else int(o) for o in np.asarray(m["output_size"])]
                mod = nn.AdaptiveAvgPool2d(tuple(out))
            else:
                cip = bool(np.asarray(m.get("count_include_pad", True)))
                mod = nn.AvgPool2d(tuple(int(v) for v in n.kernel_size), tuple(int(v) for v in n.stride),
                                   tuple(int(v) for v in n.padding), count_include_pad=cip)  # fmt: skip
        elif isinstance(n, nir.Flatten):
            if "torch_start_dim" in m:
                mod = nn.Flatten(int(np.asarray(m["torch_start_dim"])), int(np.asarray(m["torch_end_dim"])))
            else:
                mod = nn.Flatten(n.start_dim + 1, n.end_dim + 1 if n.end_dim >= 0 else -1)
        elif isinstance(n, nir.Scale) and kind == "Add":
            mod = Add()
        else:
            raise ConversionError(f"import_nir: node '{k}' ({type(n).__name__}) is not supported")
        _add_nested(root, name, mod)  # top-level ("0", "conv1") and nested ("layer1.0.conv1") names alike
        env[k] = g.call_module(name, tuple(env[p] for p in preds[k]))
    gm = fx.GraphModule(root, g, class_name="ImportedSNN")
    meta = {"method": plain(graph.metadata.get("snnconv_method", "if")) if graph.metadata else "if", "source": "nir"}
    return SpikingNetwork(gm.eval(), meta)


def _if_threshold(key: str, node: Any, spike_value: Any, md: dict) -> np.ndarray:
    """The IF neuron's threshold from the graph's own parameters (an edited ``v_threshold`` wins over snnconv's
    metadata), as a scalar or one value per channel/feature; a graph snnconv's neuron cannot express is refused."""
    v_th = np.asarray(node.v_threshold)
    where = f"import_nir: IF node '{key}'"
    if np.any(np.asarray(node.r) != 1) or np.any(np.asarray(node.v_reset) != 0):
        raise ConversionError(f"{where} has r != 1 or v_reset != 0; snnconv's IF neuron integrates its input as is "
                              "and resets by subtraction (r = 1, v_reset = 0 in the file it writes)")  # fmt: skip
    if v_th.size == 0 or not np.all(np.isfinite(v_th)) or np.any(v_th <= 0):
        raise ConversionError(f"{where}: v_threshold must be finite and > 0 everywhere")
    if np.shape(spike_value.scale) != v_th.shape or not np.array_equal(np.asarray(spike_value.scale), v_th):
        raise ConversionError(f"{where}: its v_threshold and the scale of the Scale node after it (the value a "
                              "spike sends on, θ) differ; snnconv's neuron sends s·θ: edit both alike")  # fmt: skip
    flat = v_th.reshape(v_th.shape[0], -1) if v_th.ndim > 1 else v_th.reshape(-1, 1)
    if not np.all(flat == flat[:, :1]):
        raise ConversionError(f"{where}: v_threshold varies within a channel; snnconv's IF neuron holds one threshold "
                              "per channel (or one per layer)")  # fmt: skip
    per_channel = flat[:, 0]
    if int(np.asarray(md.get("threshold_is_scalar", 0))) and np.all(per_channel == per_channel[0]):
        return per_channel[0].reshape(())
    return per_channel.copy()


def _add_nested(root: nn.Module, name: str, mod: nn.Module) -> None:
    parent = root
    parts = name.split(".")
    for part in parts[:-1]:
        if not hasattr(parent, part):
            parent.add_module(part, nn.Module())
        parent = getattr(parent, part)
    parent.add_module(parts[-1], mod)


def _padding(p: Any) -> Any:
    p = plain(p)
    if isinstance(p, str):
        return p
    return tuple(int(v) for v in np.atleast_1d(p))


def import_nir(path: str | Path) -> SpikingNetwork:
    """Read a NIR file written by :func:`export_nir` back into an identical ``SpikingNetwork``.

    The graph's parameters are used (weights, biases, IF thresholds: a file edited by another tool is imported as
    edited, or refused where snnconv's modules cannot express it); a file that is not a readable NIR graph, or a
    graph not written by :func:`export_nir`, raises ``ConversionError``."""
    nir = load_nir()
    if not Path(path).is_file():
        raise ConversionError(f"import_nir: {path} does not exist or is not a file")
    try:
        graph = nir.read(str(path))
    except Exception as e:  # h5py/nir raise OSError, KeyError, ValueError ... on damaged or foreign files
        raise ConversionError(f"import_nir: {path} is not a readable NIR file ({type(e).__name__}: {e})") from None
    try:
        return from_nir(graph)
    except ConversionError:
        raise
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as e:
        raise ConversionError(f"import_nir: {path} holds a NIR graph that export_nir did not write or that was "
                              f"damaged ({type(e).__name__}: {e})") from None  # fmt: skip
