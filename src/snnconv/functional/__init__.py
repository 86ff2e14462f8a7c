"""Pure functions (no module state): activations, neuron dynamics, regularizers."""

from snnconv.functional.if_neuron import IFState, if_init, if_scan, if_step
from snnconv.functional.qcfs import qcfs, qcfs_backward, qcfs_forward, qcfs_levels

__all__ = ["IFState", "if_init", "if_scan", "if_step", "qcfs", "qcfs_backward", "qcfs_forward", "qcfs_levels"]
