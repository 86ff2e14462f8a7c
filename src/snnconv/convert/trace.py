"""Symbolic tracing with snnconv's own modules kept as leaves, so passes see every activation and addition."""

from __future__ import annotations

import torch.fx as fx
from torch import nn

from snnconv.errors import ConversionError
from snnconv.layers.add import Add
from snnconv.layers.analog import Analog, AnalogStage
from snnconv.layers.embedding import PositionEmbedding
from snnconv.layers.neuron import SpikingNeuron
from snnconv.layers.qcfs import QCFS
from snnconv.layers.temporal import TimeAware

#: Module types that stay single call_module nodes in a traced graph (``Analog``: the spiking/analog boundary).
LEAF_TYPES: tuple[type[nn.Module], ...] = (QCFS, SpikingNeuron, TimeAware, Add, Analog, AnalogStage, PositionEmbedding)


class SNNTracer(fx.Tracer):
    """torch.fx tracer treating QCFS, spiking neurons, ``Add``, ``Analog`` stages and ``PositionEmbedding`` as leaves
    (besides torch.nn's own layers)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, LEAF_TYPES) or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> fx.GraphModule:
    """Trace ``model`` into a GraphModule (module names such as ``layer1.0.conv1`` are preserved)."""
    if isinstance(model, fx.GraphModule):
        return model
    try:
        graph = SNNTracer().trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, ... on data-dependent control flow
        raise ConversionError(
            f"could not trace {type(model).__name__} with torch.fx ({type(exc).__name__}: {exc}); "
            "conversion needs a forward() without data-dependent Python control flow"
        ) from exc
    return fx.GraphModule(model, graph, class_name=type(model).__name__)


def set_module(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    """Replace the submodule at dotted path ``target``."""
    parent_name, _, name = target.rpartition(".")
    parent = gm.get_submodule(parent_name) if parent_name else gm
    setattr(parent, name, module)
