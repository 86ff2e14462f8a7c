"""Bit-level ℓ1 regularizer (seed 001 Eq. 10-11; SPEC §3): exact bit counts, surrogate gradient, effect."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snnconv import QCFS, convert, simulate
from snnconv.functional.sparsity import BitSparsity, bit_count, bit_l1


def test_bit_count_hand_cases():
    codes = torch.tensor([0.0, 1, 2, 3, 4, 5, 7, 8, 15, 255])
    assert bit_count(codes, 8).tolist() == [0, 1, 1, 2, 1, 2, 3, 1, 4, 8]


def test_forward_counts_bits_of_the_codes():
    lam, L = 2.0, 7  # Δ = 2/7, codes 0..7 (3 bits)
    codes = torch.tensor([[0.0, 1, 2, 3], [5, 6, 7, 7]], dtype=torch.float64)
    a = codes * (lam / L)
    assert float(bit_l1(a, lam, L)) == 0 + 1 + 1 + 2 + 2 + 2 + 3 + 3
    # per-channel thresholds (C = 2 on axis 1)
    lam_c = torch.tensor([1.0, 3.0], dtype=torch.float64).view(1, 2)
    a = torch.tensor([[7.0, 7.0], [4.0, 1.0]], dtype=torch.float64) * lam_c / 7
    assert float(bit_l1(a, lam_c, 7)) == 3 + 3 + 1 + 1


def test_gradient_is_the_surrogate_rule():
    lam, L = 1.0, 3
    a = torch.tensor([0.0, 1 / 3, 2 / 3, 1.0, 0.5], dtype=torch.float64, requires_grad=True)
    bit_l1(a, lam, L).backward()
    T = 2  # min_bits(3)
    assert a.grad.tolist() == [0.0, T, T, 0.0, T]  # T for 0 < a < λ, else 0
    a.grad = None
    bit_l1(a, lam, L, T=5).backward()
    assert a.grad.tolist() == [0.0, 5, 5, 0.0, 5]
    with pytest.raises(ValueError, match="positive integer"):
        bit_l1(a, lam, 0)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), QCFS(7, 1.0), nn.Linear(32, 32), QCFS(7, 1.0), nn.Linear(32, 10))


def test_collector_equals_the_spike_count_of_the_bitserial_snn():
    net = _net().double().eval()
    x = torch.rand(16, 64, dtype=torch.float64) * 2
    with BitSparsity(net) as sp:
        net(x)
        loss = sp.loss().detach()
        assert set(sp.per_layer()) == {"1", "3"}
        net(x)  # a new forward pass starts a fresh record
        assert float(sp.loss().detach()) == float(loss)
    r = simulate(convert(net, method="bitserial"), x, 3)
    assert float(loss) == sum(float(c.sum()) for c in r.spike_counts.values()) > 0
    with pytest.raises(ValueError, match="no QCFS"):
        BitSparsity(nn.Linear(2, 2))


def _train(coef: float, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    net = _net(1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    with BitSparsity(net) as sp:
        for _ in range(8):
            for idx in torch.randperm(len(x), generator=g).split(64):
                loss = F.cross_entropy(net(x[idx]), y[idx]) + coef * sp.loss()
                opt.zero_grad()
                loss.backward()
                opt.step()
    return net.eval()


def test_regularizer_lowers_spiking_activity_on_digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16
    y = torch.tensor(data.target)
    rates, accs = [], []
    for coef in (0.0, 3e-4):
        net = _train(coef, x[:1400], y[:1400])
        r = simulate(convert(net, method="bitserial"), x[1400:], 3)
        rates.append(r.total_spike_rate())
        accs.append(float((r.logits[-1].argmax(-1) == y[1400:]).double().mean()))
    assert rates[1] < 0.6 * rates[0], rates  # seen: 0.36 → 0.12
    assert accs[1] > 0.75, accs  # still a working classifier (seen: 0.88 both)
