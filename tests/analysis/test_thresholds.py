"""Threshold statistics (seed 002 Table 5): Diff per layer, MaxDiff, AvgDiff, table, non-positive warnings."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from snnconv import QCFS, convert
from snnconv.analysis.thresholds import threshold_stats, threshold_table
from snnconv.models import create


def _net(*qcfs: QCFS) -> nn.Module:
    return nn.Sequential(*qcfs)


def _set(q: QCFS, values) -> QCFS:
    with torch.no_grad():
        q.threshold.copy_(torch.as_tensor(values, dtype=q.threshold.dtype))
    return q


def test_diff_max_and_avg_over_layers():
    a = _set(QCFS(4, 1.0, per_channel=True, channels=3), [1.0, 2.0, 1.5])  # Diff = 1
    b = _set(QCFS(4, 1.0, per_channel=True, channels=2), [2.0, 2.5])  # Diff = 0.25
    c = QCFS(4, 3.0)  # layer-wise: Diff = 0
    stats = threshold_stats(_net(a, b, c))
    assert [l.name for l in stats.layers] == ["0", "1", "2"]
    assert [l.channels for l in stats.layers] == [3, 2, 1]
    assert [l.diff for l in stats.layers] == pytest.approx([1.0, 0.25, 0.0])
    assert stats.max_diff == pytest.approx(1.0)
    assert stats.avg_diff == pytest.approx(1.25 / 3)
    d = stats.to_dict()
    assert d["max_diff"] == pytest.approx(1.0) and d["layers"]["1"]["min"] == 2.0
    text = threshold_table(stats)
    assert "MaxDiff 100.0%" in text and "AvgDiff 41.7%" in text and "25.0%" in text


def test_softplus_thresholds_are_reported_as_theta():
    q = QCFS(4, 1.0, per_channel=True, channels=2, positive="softplus")
    _set(q, [0.0, -50.0])
    layer = threshold_stats(_net(q)).layers[0]
    assert layer.max == pytest.approx(math.log(2.0)) and layer.min > 0


def test_non_positive_plain_threshold_warns_and_gives_nan_diff():
    q = _set(QCFS(4, 1.0, per_channel=True, channels=3), [1.0, -0.5, 0.0])
    with pytest.warns(RuntimeWarning, match=r"non-positive QCFS thresholds in 0 \(min θ = -0.5, 2 of 3\)"):
        stats = threshold_stats(_net(q, QCFS(4, 2.0)))
    assert math.isnan(stats.layers[0].diff) and math.isnan(stats.max_diff)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        threshold_stats(_net(q), warn=False)
        threshold_stats(_net(_set(QCFS(4, 1.0, positive="softplus"), -30.0)))  # softplus: never warns


def test_stats_of_a_converted_network_match_the_ann():
    torch.manual_seed(0)
    ann = create("small_cnn", num_classes=10, in_channels=1, input_size=8, width=0.25, act=None)
    qs = [m for m in ann.modules() if isinstance(m, QCFS)]
    for i, q in enumerate(qs):
        _set(q, 1.0 + i)
    snn = convert(ann.eval())
    a, s = threshold_stats(ann), threshold_stats(snn)
    assert [l.name for l in a.layers] == [l.name.removeprefix("graph.") for l in s.layers]
    assert [l.max for l in a.layers] == [l.max for l in s.layers]
    assert all(l.positive == "snn" for l in s.layers)
