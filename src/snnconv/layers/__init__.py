"""Stateful-parameter modules: activations, neurons, structural ops."""

from snnconv.layers.act import ACT_KINDS, ActFactory, make_act
from snnconv.layers.add import Add
from snnconv.layers.neuron import IFNeuron, SpikingNeuron
from snnconv.layers.qcfs import QCFS, inverse_softplus
from snnconv.layers.temporal import TimeAware

__all__ = [
    "ACT_KINDS",
    "QCFS",
    "ActFactory",
    "Add",
    "IFNeuron",
    "SpikingNeuron",
    "TimeAware",
    "inverse_softplus",
    "make_act",
]
