"""snnconv.inspect: per-layer thresholds (type, kind, min/max/mean, Diff, non-positive count), MaxDiff, AvgDiff."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snnconv import QCFS, convert
from snnconv.inspect import inspect_model, inspect_run


def _ann() -> nn.Sequential:
    q1 = QCFS(4, 1.0, per_channel=True, channels=3)
    with torch.no_grad():
        q1.threshold.copy_(torch.tensor([1.0, 2.0, 1.5]))  # Diff 100 %
    net = nn.Sequential(nn.Linear(4, 3), q1, nn.Linear(3, 2), QCFS(4, 2.0), nn.Linear(2, 2))  # Diff 0 %
    return net.eval()


def _row(text: str, name: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if line.split()[:1] == [name])


def test_inspect_ann_and_its_snn():
    ann = _ann()
    text = inspect_model(ann)
    assert text.splitlines()[0] == f"Sequential: {sum(p.numel() for p in ann.parameters())} parameters"
    assert _row(text, "1") == ["1", "QCFS", "analog", "3", "1", "2", "1.5", "100.00%", "0"]
    assert _row(text, "3") == ["3", "QCFS", "analog", "1", "2", "2", "2", "0.00%", "0"]
    assert "MaxDiff 100.00%  AvgDiff 50.00%" in text and "warning" not in text
    snn = inspect_model(convert(ann, calibration="cos", rho=3))
    assert "calibration=cos, rho=3" in snn.splitlines()[0] and "2 spiking layers" in snn
    assert _row(snn, "1") == ["1", "COSNeuron", "spiking", "3", "1", "2", "1.5", "100.00%", "0"]
    assert "MaxDiff 100.00%  AvgDiff 50.00%" in snn


def test_inspect_counts_non_positive_thresholds():
    ann = _ann()
    with torch.no_grad():
        ann[1].threshold.copy_(torch.tensor([1.0, -0.5, 0.0]))
    text = inspect_model(ann)
    assert _row(text, "1")[-2:] == ["nan", "2"]
    assert "MaxDiff nan" in text and "warning: 2 non-positive threshold(s)" in text


def test_inspect_without_thresholds():
    assert "no threshold-carrying layers" in inspect_model(nn.Linear(2, 2))


def test_inspect_run(tmp_path):
    from snnconv.runs import train_run
    from snnconv.train import TrainConfig

    torch.set_num_threads(1)  # conftest restores it
    cfg = TrainConfig(model="small_cnn", dataset="digits", act="csqcfs", levels=4, epochs=1, batch_size=64,
                      subset=256, lr=0.05, threshold_init=4.0, device="cpu", augment=False,
                      out=str(tmp_path / "run"))  # fmt: skip
    train_run(cfg)
    text = inspect_run(tmp_path / "run")
    first, second = text.splitlines()[:2]
    assert first.startswith(f"run {tmp_path / 'run'} (last.pt): small_cnn (width 1.0) on digits, act csqcfs, L = 4")
    assert second.startswith("VGG: ")
    assert _row(text, "features.2")[1:3] == ["QCFS", "analog"] and "MaxDiff" in text
    with pytest.raises(Exception, match="not found"):
        inspect_run(tmp_path / "missing")
