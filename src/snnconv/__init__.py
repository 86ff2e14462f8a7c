"""snnconv: convert quantization-aware ANNs into spiking neural networks that need 1-8 time steps."""

import snnconv._deps  # noqa: F401 - first: an unsupported torch fails here (snnconv._deps.check_torch)
from snnconv import models
from snnconv.allocator import tune_cpu_allocator
from snnconv.convert import SpikingNetwork, convert, fold_bn, list_methods
from snnconv.functional.qcfs import qcfs
from snnconv.layers import QCFS, Add, IFNeuron, SpikingNeuron, make_act
from snnconv.prepare import prepare
from snnconv.simulate import SimResult, simulate, tune_fold_bytes

__version__ = "0.1.0"

__all__ = [
    "QCFS", "Add", "IFNeuron", "SimResult", "SpikingNetwork", "SpikingNeuron", "convert", "fold_bn",
    "list_methods", "make_act", "models", "prepare", "qcfs", "simulate", "tune_cpu_allocator",
    "tune_fold_bytes",
]  # fmt: skip
