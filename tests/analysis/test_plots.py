"""Plots: each writes a PNG (smoke test)."""

import torch
from torch import nn

from snnconv import QCFS, convert, simulate
from snnconv.analysis import error_decomposition, spike_stats
from snnconv.analysis.plots import plot_accuracy_vs_T, plot_error_decomposition, plot_spike_rates
from snnconv.evaluate import SweepResult

PNG = b"\x89PNG\r\n\x1a\n"


def test_plots_write_pngs(tmp_path):
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(6, 8), QCFS(4, 1.0), nn.Linear(8, 8), QCFS(4, 1.0), nn.Linear(8, 3)).eval()
    snn, x = convert(ann), torch.randn(5, 6)
    sweep = SweepResult(T=[1, 2, 4], snn_accuracy={1: 40.0, 2: 60.0, 4: 70.0}, ann_accuracy=72.0, spike_rate={})
    paths = [
        plot_accuracy_vs_T({"if": sweep, "other": {1: 50.0, 2: 65.0, 4: 71.0}}, tmp_path / "acc.png"),
        plot_accuracy_vs_T({"if": {"1": 50.0, "8": 65.0}}, tmp_path / "acc2.png", ann_accuracy=70.0),
        plot_spike_rates(spike_stats(simulate(snn, x, 4)), tmp_path / "rates.png"),
        plot_spike_rates({"w=0": {"a": 0.1, "b": 0.2}, "w=0.1": {"a": 0.05, "b": 0.1}}, tmp_path / "r2.png"),
        plot_error_decomposition(error_decomposition(ann, snn, x, 3), tmp_path / "sub" / "err.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == PNG
