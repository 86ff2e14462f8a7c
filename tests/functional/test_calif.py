"""Ca-LIF dynamics (seed 003 / SPEC §5): order-independent signed counts, calcium gating, rounding phase."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnconv.functional.calif import calif_reference, calif_round, calif_scan, crossings
from snnconv.layers.calif import CalifNeuron

D = torch.float64


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    T=st.integers(1, 16),
    theta=st.sampled_from([1.0, 2.0, 3.0, 4.0, 0.5, 8.0]),
    hi=st.sampled_from([math.inf, 5.0, 127.0]),
    signed=st.booleans(),
)
def test_counts_equal_rounded_relu_for_any_arrival_order(seed, T, theta, hi, signed) -> None:
    g = torch.Generator().manual_seed(seed)
    n = 64
    total = torch.randint(-30, 31, (n,), generator=g).to(D)  # net input of each neuron
    bias = (torch.randint(-3, 4, (n,), generator=g) * T).to(D)  # b' with an exact per-step leak
    # scatter each neuron's input over the steps in a random order, with random positive/negative parts
    parts = torch.randint(-6, 7, (T, n), generator=g).to(D)
    parts[-1] += total - parts.sum(0)
    currents = parts[torch.randperm(T, generator=g)]
    lo = -127.0 if signed else 0.0
    out, (v, y) = calif_scan(currents, torch.tensor(theta, dtype=D), bias, lo, hi)
    ref = calif_reference(total + bias, theta, lo, hi)
    assert torch.equal(out.sum(0), ref) and torch.equal(y, ref)
    assert torch.equal(out, out.round())  # signed integer spike counts per step
    assert bool((out.cumsum(0) >= lo).all()) and bool((out.cumsum(0) <= hi).all())


def test_gating_early_positive_then_negative_ends_at_zero() -> None:
    currents = torch.tensor([[3.0], [2.0], [-4.0], [-6.0], [0.0]], dtype=D)
    out, (v, y) = calif_scan(currents, 1.0)
    assert out.squeeze(1).tolist() == [3.0, 2.0, -4.0, -1.0, 0.0]
    assert float(y) == 0.0 and bool((out.cumsum(0) >= 0).all())
    bipolar, _ = calif_scan(currents, 1.0, lo=-math.inf)  # without the gating it would go negative
    assert float(bipolar.sum()) == -5.0


def test_burst_when_all_input_arrives_at_the_last_step() -> None:
    currents = torch.zeros(4, 1, dtype=D)
    currents[-1] = 10.0
    out, _ = calif_scan(currents, 2.0)
    assert out.squeeze(1).tolist() == [0.0, 0.0, 0.0, 5.0]


@pytest.mark.parametrize(
    ("z", "even", "up"),
    [(0.5, 0, 1), (1.5, 2, 2), (2.5, 2, 3), (3.5, 4, 4), (-0.5, 0, 0), (0.49, 0, 0), (2.51, 3, 3)],
)
def test_half_way_rule(z: float, even: int, up: int) -> None:
    theta = 4.0
    cur = torch.tensor([[z * theta]], dtype=D)
    assert float(calif_scan(cur, theta)[0].sum()) == even  # half to even, like torch's fake quantization
    assert float(calif_scan(cur, theta, rounding="half_up")[0].sum()) == up
    fq = torch.fake_quantize_per_tensor_affine(torch.tensor([z]), 1.0, 0, 0, 255)
    assert float(fq) == even


def test_negative_half_way_with_positive_count() -> None:
    # y = 3 after the steps, V = -θ/2: z/θ = 2.5 → 2 (half even), 3 (half up)
    cur = torch.tensor([[12.0], [-2.0]], dtype=D)
    assert float(calif_scan(cur, 4.0)[0].sum()) == 2.0
    assert float(calif_scan(cur, 4.0, rounding="half_up")[0].sum()) == 3.0


def test_rounding_spike_folded_into_last_step() -> None:
    out, _ = calif_scan(torch.tensor([[0.7], [0.0]], dtype=D), 1.0)
    assert out.squeeze(1).tolist() == [0.0, 1.0]
    assert float(calif_scan(torch.tensor([[0.7]], dtype=D), 1.0, round_last=False)[0].sum()) == 0.0


def test_crossings_and_round_helpers() -> None:
    v = torch.tensor([-1.0, 0.0, 0.99, 1.0, 2.5, 7.0], dtype=D)
    assert crossings(v, torch.tensor(1.0, dtype=D)).tolist() == [0, 0, 0, 1, 2, 7]
    r = calif_round(torch.tensor([0.5, 0.5, -0.5]), torch.tensor([1.0, 2.0, 1.0]), torch.tensor(1.0), 0, math.inf)
    assert r.tolist() == [1.0, 0.0, -1.0]


def test_neuron_module_per_channel_and_leak() -> None:
    neuron = CalifNeuron(torch.tensor([1.0, 2.0]), bias=torch.tensor([-4.0, 8.0]), hi=100)
    assert not neuron.causal
    assert torch.equal(neuron.leak(4), torch.tensor([1.0, -2.0]))
    x = torch.full((4, 3, 2, 2, 2), 1.0)  # [T, B, C, H, W]: Σ = 4 per neuron
    out = neuron(x)
    assert torch.equal(out.sum(0)[:, 0], torch.zeros(3, 2, 2)) and torch.equal(
        out.sum(0)[:, 1], torch.full((3, 2, 2), 6.0)
    )
    with pytest.raises(NotImplementedError, match="layer"):
        neuron.step(x[0], neuron.init_state(x[0]), 0)
    with pytest.raises(ValueError, match="> 0"):
        CalifNeuron(0.0)
