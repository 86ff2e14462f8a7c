"""Energy (SPEC §6): hand-counted operations on tiny linear and conv networks with known spikes."""

import pytest
import torch
from torch import nn

from snnconv import QCFS, convert
from snnconv.analysis import connections, energy, price_table


def test_connections_count_fan_out_exactly():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1.0  # corner: 2x2 outputs in reach, 2 channels
    assert connections(conv, x) == 8
    x[0, 0, 1, 2] = -3.0  # interior: 3x3 outputs
    assert connections(conv, x) == 8 + 18
    assert connections(conv, torch.ones(1, 1, 4, 4)) == 2 * 10 * 10  # per axis 2+3+3+2 outputs in reach
    strided = nn.Conv2d(1, 3, 2, stride=2)
    assert connections(strided, torch.ones(2, 1, 4, 4)) == 2 * 16 * 3  # no overlap: fan-out = out_channels
    assert connections(nn.Linear(5, 7), torch.tensor([[0.0, 1, 0, 2, 0]])) == 14
    with pytest.raises(TypeError):
        connections(nn.ReLU(), x)


def test_price_tables():
    assert price_table("45nm") == {"mac": 4.6, "ac": 0.9, "cmp": 0.0, "reset": 0.0, "shift": 0.0}
    p8 = price_table("seed001", bits=8)
    assert p8["mac"] == pytest.approx(0.23) and p8["ac"] == 0.03 and p8["shift"] == 0.024 and p8["cmp"] == 0.03
    p32 = price_table("seed001", bits=32)
    assert p32["mac"] == pytest.approx(3.2) and p32["ac"] == 0.1 and p32["shift"] == 0.13 and p32["cmp"] == 0.08
    with pytest.raises(ValueError):
        price_table("7nm")
    with pytest.raises(ValueError):
        price_table("seed001", bits=16)


def _linear_net():
    # currents 1.0, 0.3, 0 into IF neurons with θ = 1, v(0) = 0.5; T = 4:
    # neuron 0 fires every step (4), neuron 1: v = .8, 1.1 (fire) .4, .7 -> 1 spike, neuron 2: none -> 5 spikes
    fc1, fc2 = nn.Linear(2, 3, bias=False), nn.Linear(3, 2, bias=True)
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    return nn.Sequential(fc1, QCFS(4, 1.0), fc2).eval()


def test_hand_counted_linear_net():
    ann = _linear_net()
    x = torch.tensor([[1.0, 0.3], [1.0, 0.3]])  # two identical samples: counts are per sample
    r = energy(convert(ann), x, 4, ann=ann)
    assert r.samples == 2
    assert r.snn_ops["0"] == {"mac": 6 * 4, "ac": 0, "cmp": 0, "reset": 0, "shift": 0}  # analog layer, per step
    assert r.snn_ops["1"] == {"mac": 0, "ac": 0, "cmp": 3 * 4, "reset": 5, "shift": 0}
    assert r.snn_ops["2"] == {"mac": 0, "ac": 5 * 2 + 2 * 4, "cmp": 0, "reset": 0, "shift": 0}  # spikes·fan-out + bias
    assert r.ann_ops == {"0": {"mac": 6, "ac": 0, "cmp": 0, "reset": 0, "shift": 0},
                         "2": {"mac": 6, "ac": 0, "cmp": 0, "reset": 0, "shift": 0}}  # fmt: skip
    assert r.snn_total == pytest.approx(24 * 4.6 + 18 * 0.9)
    assert r.ann_total == pytest.approx(12 * 4.6)
    assert r.ratio == pytest.approx(12 * 4.6 / (24 * 4.6 + 18 * 0.9))
    once = energy(convert(ann), x, 4, analog_per_step=False, shifts_per_output=1, table="seed001", bits=8)
    assert once.snn_ops["0"]["mac"] == 6 and once.snn_ops["1"]["shift"] == 3 * 4 and once.ann_ops is None
    assert once.snn_total == pytest.approx(6 * 0.23 + 18 * 0.03 + 12 * 0.03 + 5 * 0.03 + 12 * 0.024)
    d = r.to_dict()
    assert d["ann_over_snn"] == r.ratio and d["snn_ops_total"]["ac"] == 18
    assert "E_ANN / E_SNN" in r.table()


def test_hand_counted_conv_net():
    conv1, conv2 = nn.Conv2d(1, 1, 1, bias=False), nn.Conv2d(1, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv1.weight.fill_(1.0)
    ann = nn.Sequential(conv1, QCFS(4, 1.0), conv2, nn.Flatten()).eval()
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 1, 2] = 1.0  # these two neurons fire at every step, the others never
    T = 3
    r = energy(convert(ann), x, T, ann=ann)
    assert r.snn_ops["0"]["mac"] == 16 * T
    assert r.snn_ops["1"] == {"mac": 0, "ac": 0, "cmp": 16 * T, "reset": 2 * T, "shift": 0}
    assert r.snn_ops["2"]["ac"] == T * (2 * 4 + 2 * 9)  # corner fan-out 2·4, interior 2·9
    assert r.ann_ops["0"]["mac"] == 16 and r.ann_ops["2"]["mac"] == 2 * 10 * 10
    assert r.totals("snn")["ac"] == T * 26
    batches = [(x, None), (x, None)]
    assert energy(convert(ann), batches, T).snn_ops == r.snn_ops


def test_bitserial_first_layer_macs_once_and_shifts_counted():
    """Bit-serial: the analog input reaches the first layer at t = 1 only (multi-bit MACs once per image), later
    layers accumulate spikes, and every neuron output costs one shift per step (seed 001 energy model)."""
    import torch
    from torch import nn

    from snnconv import QCFS, convert
    from snnconv.analysis import energy

    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), QCFS(7, 1.0), nn.Flatten(), nn.Linear(64, 3)).eval()
    snn = convert(ann, method="bitserial")
    x = torch.rand(2, 1, 4, 4) + 0.1  # all pixels non-zero
    rep = energy(snn, x, 3, ann=ann, shifts_per_output=1)
    first = rep.snn_ops["0"]
    # 3×3 conv, padding 1, 4×4 input: valid taps per row 2+3+3+2 = 10, so 10·10 per channel pair, 4 out channels
    assert first["mac"] == rep.ann_ops["0"]["mac"] == 4 * 10 * 10
    assert first["ac"] == 0
    assert rep.snn_ops["1"]["shift"] == 4 * 16 * 3  # neurons per sample × T


def test_seed004_prices_hand_counted():
    """Seed 004 A.8: 77 fJ per synaptic operation (an AC) and 12.5 pJ per FLOP (a MAC is 2 FLOPs)."""
    from snnconv.analysis.energy import PRICE_TABLES, EnergyReport

    assert "seed004" in PRICE_TABLES
    assert price_table("seed004") == {"mac": 25.0, "ac": 0.077, "cmp": 0.0, "reset": 0.0, "shift": 0.0}
    ann = _linear_net()
    x = torch.tensor([[1.0, 0.3]])
    r = energy(convert(ann), x, 4, ann=ann, table="seed004")  # the ops of test_hand_counted_linear_net
    assert r.snn_total == pytest.approx(24 * 25.0 + 18 * 0.077)
    assert r.ann_total == pytest.approx(12 * 25.0)
    assert r.op_counts() == {"snn_sop": 18, "snn_flop": 48, "ann_flop": 24}
    assert r.to_dict()["op_counts"]["ann_flop"] == 24
    # seed 004 Table S5 (VGG-16, CIFAR-100): ANN 0.628 GFLOP → 7.85 mJ; SNN at T = 32, 1.444 GSOP → 0.111 mJ
    table = EnergyReport(T=32, prices=price_table("seed004"))
    table.snn_ops = {"all": {"mac": 0.0, "ac": 1.444e9, "cmp": 0.0, "reset": 0.0, "shift": 0.0}}
    table.ann_ops = {"all": {"mac": 0.628e9 / 2, "ac": 0.0, "cmp": 0.0, "reset": 0.0, "shift": 0.0}}
    assert table.ann_total * 1e-9 == pytest.approx(7.85, abs=5e-3)  # pJ → mJ
    assert table.snn_total * 1e-9 == pytest.approx(0.111, abs=5e-4)
    with pytest.raises(ValueError, match="choose one of 45nm, seed001, seed004"):
        price_table("seed005")
