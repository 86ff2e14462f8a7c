"""Ca-LIF dynamics (seed 003 / SPEC §5): order-independent signed counts, calcium gating, rounding phase."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnconv.functional.calif import calif_fire, calif_reference, calif_round, calif_scan, crossings
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
    out, (v, y) = calif_scan(currents, torch.tensor(theta, dtype=D), bias, lo, hi, max_spikes_per_step=None)
    ref = calif_reference(total + bias, theta, lo, hi)
    assert torch.equal(out.sum(0), ref) and torch.equal(y, ref)
    assert torch.equal(out, out.round())  # signed integer spike counts per step
    assert bool((out.cumsum(0) >= lo).all()) and bool((out.cumsum(0) <= hi).all())


def test_gating_early_positive_then_negative_ends_at_zero() -> None:
    currents = torch.tensor([[3.0], [2.0], [-4.0], [-6.0], [0.0]], dtype=D)
    out, (v, y) = calif_scan(currents, 1.0, max_spikes_per_step=None)
    assert out.squeeze(1).tolist() == [3.0, 2.0, -4.0, -1.0, 0.0]
    assert float(y) == 0.0 and bool((out.cumsum(0) >= 0).all())
    # without the gating it would go negative
    bipolar, _ = calif_scan(currents, 1.0, lo=-math.inf, max_spikes_per_step=None)
    assert float(bipolar.sum()) == -5.0


def test_burst_when_all_input_arrives_at_the_last_step() -> None:
    currents = torch.zeros(4, 1, dtype=D)
    currents[-1] = 10.0
    out, _ = calif_scan(currents, 2.0, max_spikes_per_step=None)
    assert out.squeeze(1).tolist() == [0.0, 0.0, 0.0, 5.0]


@pytest.mark.parametrize(
    ("z", "even", "up"),
    [(0.5, 0, 1), (1.5, 2, 2), (2.5, 2, 3), (3.5, 4, 4), (-0.5, 0, 0), (0.49, 0, 0), (2.51, 3, 3)],
)
def test_half_way_rule(z: float, even: int, up: int) -> None:
    theta = 4.0
    cur = torch.tensor([[z * theta]], dtype=D)
    burst = {"max_spikes_per_step": None}
    assert float(calif_scan(cur, theta, **burst)[0].sum()) == even  # half to even, like torch's fake quantization
    assert float(calif_scan(cur, theta, rounding="half_up", **burst)[0].sum()) == up
    fq = torch.fake_quantize_per_tensor_affine(torch.tensor([z]), 1.0, 0, 0, 255)
    assert float(fq) == even


def test_negative_half_way_with_positive_count() -> None:
    # y = 3 after the steps, V = -θ/2: z/θ = 2.5 → 2 (half even), 3 (half up)
    cur = torch.tensor([[12.0], [-2.0]], dtype=D)
    assert float(calif_scan(cur, 4.0, max_spikes_per_step=None)[0].sum()) == 2.0
    assert float(calif_scan(cur, 4.0, rounding="half_up", max_spikes_per_step=None)[0].sum()) == 3.0


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
    neuron = CalifNeuron(torch.tensor([1.0, 2.0]), bias=torch.tensor([-4.0, 8.0]), hi=100, max_spikes_per_step=None)
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


# --- the seed's neuron: one spike per step (seed 003 §3.2, Fig. 3; SPEC §5) ------------------------------------


def seed_neuron(currents: list[float], theta: float, bias: float = 0.0, lo: float = 0.0, hi: float = math.inf):
    """Seed 003 §3.2 written out for one neuron: per step V += I - λ; one positive spike if V >= θ (y < hi), one
    negative if V <= -θ and y > lo (calcium gating), reset by ∓θ, the rest carried over; then one rounding spike
    if |V| > θ/2, folded into the last step."""
    T, v, y, out = len(currents), 0.0, 0, []
    for i in currents:
        v += i + bias / T
        n = 1 if (v >= theta and y < hi) else (-1 if (v <= -theta and y > lo) else 0)
        v, y = v - n * theta, y + n
        out.append(n)
    out[-1] += 1 if (v > theta / 2 and y < hi) else (-1 if (v < -theta / 2 and y > lo) else 0)
    return out


def test_one_spike_per_step_hand_computed() -> None:
    # all input at the last step, θ = 2: one spike (V 10 → 8), then one rounding spike; the burst neuron fires 5
    last = torch.tensor([[0.0], [0.0], [0.0], [10.0]], dtype=D)
    assert calif_scan(last, 2.0)[0].squeeze(1).tolist() == [0.0, 0.0, 0.0, 2.0]
    # early positive input, then negative: +1, +1 (V 3), -1 (V -1 → 0), -1 (V -6 → -5, y = 0), gated at y = 0
    early = torch.tensor([[3.0], [2.0], [-4.0], [-6.0], [0.0]], dtype=D)
    out, (v, y) = calif_scan(early, 1.0)
    assert out.squeeze(1).tolist() == [1.0, 1.0, -1.0, -1.0, 0.0] and float(v) == -5.0 and float(y) == 0.0


def test_one_spike_per_step_count_rises_with_T_to_the_code() -> None:
    # z = 10θ spread evenly over T steps (θ = 1): T = 4 saturates at 4 + 1 rounding spike, T = 8 at 8 + 1, and at
    # T = 16 (0.625 per step) the neuron fires at steps 2, 4, 5, 7, 8, 10, 12, 13, 15, 16 = 10 = round(z/θ)
    for T, want in ((4, 5.0), (8, 9.0), (16, 10.0)):
        out, _ = calif_scan(torch.full((T, 1), 10.0 / T, dtype=D), 1.0)
        assert float(out.sum()) == want
        assert bool((out[:-1].abs() <= 1).all())


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    T=st.integers(1, 12),
    theta=st.sampled_from([1.0, 3.0, 5.0]),  # integer potentials never sit at ±θ/2: no half-way ties
    hi=st.sampled_from([math.inf, 4.0]),
)
def test_one_spike_per_step_follows_the_seed_rule(seed, T, theta, hi) -> None:
    g = torch.Generator().manual_seed(seed)
    currents = torch.randint(-7, 8, (T, 16), generator=g).to(D)
    bias = (torch.randint(-2, 3, (16,), generator=g) * T).to(D)
    out, _ = calif_scan(currents, theta, bias, 0.0, hi)
    for j in range(16):
        want = seed_neuron(currents[:, j].tolist(), theta, float(bias[j]), 0.0, hi)
        assert out[:, j].tolist() == want
    assert bool((out[:-1].abs() <= 1).all()) and bool((out[-1].abs() <= 2).all())


def test_max_spikes_per_step_is_validated() -> None:
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="max_spikes_per_step must be a positive integer"):
            calif_scan(torch.zeros(2, 1), 1.0, max_spikes_per_step=bad)
        with pytest.raises(ValueError, match="max_spikes_per_step"):
            CalifNeuron(1.0, max_spikes_per_step=bad)
    two, _ = calif_scan(torch.tensor([[0.0], [7.0]], dtype=D), 1.0, max_spikes_per_step=2)
    assert two.squeeze(1).tolist() == [0.0, 3.0]  # at most 2 in the step, then the rounding spike


def test_one_spike_fast_path_equals_the_capped_general_path() -> None:
    g = torch.Generator().manual_seed(1)
    v = torch.randint(-40, 41, (4096,), generator=g).to(D) / 4
    y = torch.randint(0, 6, (4096,), generator=g).to(D)
    theta = torch.tensor(1.5, dtype=D)
    for lo, hi in ((0.0, math.inf), (0.0, 5.0), (-127.0, 127.0)):
        general = (torch.minimum(crossings(v, theta), hi - y).clamp(0, 1)
                   - torch.minimum(crossings(-v, theta), y - lo).clamp(0, 1))  # fmt: skip
        n, v1, y1 = calif_fire(v, y, theta, lo, hi, 1)
        assert torch.equal(n, general) and torch.equal(v1, v - general * theta) and torch.equal(y1, y + general)
