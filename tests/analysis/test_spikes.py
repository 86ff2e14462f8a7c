"""Spike statistics (seed 000 §4.7.1): rates, per-step rates, accumulation over batches, print formats."""

import re

import pytest
import torch
from torch import nn

from helpers import randomize
from snnconv import QCFS, convert, simulate
from snnconv.analysis import SpikeCounter, format_spike_rates, spike_stats, spike_table


def _snn():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), QCFS(4), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(16, 5), QCFS(4), nn.Linear(5, 3))  # fmt: skip
    return convert(randomize(ann))


def test_rates_match_the_definition():
    snn, x = _snn(), torch.randn(6, 1, 4, 4)
    r = simulate(snn, x, 5)
    s = spike_stats(r)
    assert s.T == 5 and s.samples == 6 and s.layers == ["2", "6"]
    for k, c in r.spike_counts.items():
        assert s.rates()[k] == pytest.approx(float(c.sum()) / (r.neurons[k] * 5 * 6))
        assert s.rates()[k] == pytest.approx(r.spike_rates()[k])
        torch.testing.assert_close(s.rates_per_step()[k], c.double() / (r.neurons[k] * 6))
        assert float(s.rates_per_step()[k].mean()) == pytest.approx(s.rates()[k])
    assert s.total_rate() == pytest.approx(r.total_spike_rate())
    assert float(s.total_rate_per_step().mean()) == pytest.approx(s.total_rate())
    assert s.spikes_per_sample() == pytest.approx(sum(float(c.sum()) for c in r.spike_counts.values()) / 6)
    assert spike_stats(r, upto=2).T == 2
    with pytest.raises(ValueError):
        spike_stats(r, upto=6)
    d = s.to_dict()
    assert d["spike_rate"] == s.rates() and len(d["spike_rate_per_step"]["2"]) == 5


def test_counter_over_batches_equals_one_big_batch():
    snn, x = _snn(), torch.randn(8, 1, 4, 4)
    whole = spike_stats(simulate(snn, x, 4))
    acc = SpikeCounter().update(simulate(snn, part, 4) for part in x.split(3)).stats()
    assert acc.samples == 8
    for k in whole.layers:
        torch.testing.assert_close(acc.counts[k], whole.counts[k])
    with pytest.raises(ValueError, match="same T"):
        SpikeCounter().update([simulate(snn, x, 4), simulate(snn, x, 3)])


def test_formats():
    s = spike_stats(simulate(_snn(), torch.randn(4, 1, 4, 4), 3))
    lines = format_spike_rates(s).splitlines()
    assert len(lines) == 2
    assert all(re.fullmatch(r"\[(2|6)\] spike_rate=\d\.\d{4}", ln) for ln in lines)
    assert format_spike_rates({"layer1.2": 0.06224}) == "[layer1.2] spike_rate=0.0622"
    table = spike_table(s)
    assert "t=3" in table and "total" in table and len(table.splitlines()) == 2 + 2 + 1
