"""Stateful-parameter modules: activations, neurons, structural ops."""

from snnconv.layers.act import ACT_KINDS, ActFactory, make_act
from snnconv.layers.add import Add
from snnconv.layers.analog import Analog, AnalogStage, RateAnalog, SumAnalog
from snnconv.layers.attention import SelfAttention
from snnconv.layers.embedding import PositionEmbedding
from snnconv.layers.encoder import EncoderBlock
from snnconv.layers.neuron import IFNeuron, SpikingNeuron
from snnconv.layers.qcfs import QCFS, inverse_softplus
from snnconv.layers.temporal import TimeAware

__all__ = [
    "ACT_KINDS",
    "QCFS",
    "ActFactory",
    "Add",
    "Analog",
    "AnalogStage",
    "EncoderBlock",
    "IFNeuron",
    "PositionEmbedding",
    "RateAnalog",
    "SelfAttention",
    "SpikingNeuron",
    "SumAnalog",
    "TimeAware",
    "inverse_softplus",
    "make_act",
]
