"""The converted spiking network: a traced graph of affine layers and spiking neurons, plus metadata."""

from __future__ import annotations

from typing import Any

import torch.fx as fx
from torch import Tensor, nn

from snnconv.layers.neuron import SpikingNeuron


class SpikingNetwork(nn.Module):
    """A converted SNN. ``forward(x, T)`` returns the (T, B, K) logits of ``snnconv.simulate``.

    ``graph`` is a torch.fx GraphModule whose neurons are ``SpikingNeuron`` leaves; ``meta`` records how it
    was made (method, levels, ...).
    """

    def __init__(self, graph: fx.GraphModule, meta: dict[str, Any]) -> None:
        super().__init__()
        self.graph = graph
        self.meta = dict(meta)

    def neurons(self) -> dict[str, SpikingNeuron]:
        """Spiking layers by qualified name, in graph order."""
        modules = dict(self.graph.named_modules())  # one walk of the tree, not one per node (simulate calls this)
        calls = (n.target for n in self.graph.graph.nodes if n.op == "call_module")
        return {t: modules[t] for t in calls if isinstance(modules[t], SpikingNeuron)}

    def forward(self, x: Tensor, T: int) -> Tensor:
        from snnconv.simulate import simulate

        return simulate(self, x, T).logits

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.meta.items())
