"""Analysis of converted networks: spike statistics, conversion-error decomposition, energy, plots.

``snnconv.analysis.plots`` (matplotlib) is not imported here; import it explicitly.
"""

from snnconv.analysis.energy import OPS, EnergyReport, connections, energy, price_table
from snnconv.analysis.error import (
    TERMS,
    ErrorDecomposition,
    constant_response,
    decompose_layer,
    error_decomposition,
    record_neurons,
)
from snnconv.analysis.spikes import SpikeCounter, SpikeStats, format_spike_rates, spike_stats, spike_table

__all__ = [
    "OPS", "TERMS", "EnergyReport", "ErrorDecomposition", "SpikeCounter", "SpikeStats", "connections",
    "constant_response", "decompose_layer", "energy", "error_decomposition", "format_spike_rates",
    "price_table", "record_neurons", "spike_stats", "spike_table",
]  # fmt: skip
