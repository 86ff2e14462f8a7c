"""Bit-serial neuron and per-step modules (seed 001; SPEC §3): exact bits, conventions, constant splits."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from torch import nn

from snnconv import IFNeuron
from snnconv.errors import SimulationError
from snnconv.functional.bitserial import (
    bit_planes,
    bit_step_values,
    bitserial_fire,
    bitserial_potential,
    clamp_value,
    codes_from_bits,
    min_bits,
    quantize_codes,
)
from snnconv.functional.qcfs import qcfs_levels
from snnconv.layers.bitserial import (
    AnalogInput,
    BitIFNeuron,
    BitSerialNeuron,
    ShiftedBatchNorm,
    StepBias,
    SumReadout,
)


def test_min_bits_table():
    assert [min_bits(L) for L in (1, 2, 3, 4, 7, 8, 15, 16, 255, 256)] == [1, 2, 2, 3, 3, 4, 4, 5, 8, 9]
    with pytest.raises(ValueError, match="positive integer"):
        min_bits(0)


def test_step_values_are_exact_powers_of_two():
    delta = torch.tensor([0.1, 1 / 3, 7.0], dtype=torch.float64)
    w = bit_step_values(delta, 5, 5)
    assert w.shape == (5, 3)
    for t in range(5):  # w(t) = θ·2^-t = Δ·2^(T-t), bit-exact
        assert torch.equal(w[t], delta * 2.0 ** (4 - t))
    assert torch.equal(bit_step_values(delta, 5, 2), w[:2])


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 8), seed=st.integers(0, 2**16), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_fired_bits_are_exactly_the_bits_of_floor_u_over_delta(T, seed, dtype):
    """Exact in any precision: every subtraction is exact (Sterbenz), ties fire."""
    g = torch.Generator().manual_seed(seed)
    delta = (torch.rand((), generator=g) + 0.01).to(dtype)
    u = (torch.rand(500, generator=g) * 1.4 - 0.2).to(dtype) * delta * 2**T
    u[:50] = torch.randint(0, 2**T, (50,), generator=g).to(dtype) * delta  # exact multiples: ties
    spikes = bitserial_fire(u, bit_step_values(delta, T, T))
    d = float(delta)
    exact_k = torch.tensor([min(max(int(a // d), 0), 2**T - 1) for a in u.double().tolist()], dtype=dtype)
    assert torch.equal(spikes, bit_planes(exact_k, T))  # the exact floor (Python's float //), not fl(u/Δ)


@pytest.mark.parametrize("T", [1, 2, 3, 4, 6])
def test_quantizer_matches_qcfs_levels(T):
    """L = 2^T - 1 with T bits, and L = 2^(T-1) (top level reachable) with T bits and the clamp."""
    lam = torch.tensor(1.3, dtype=torch.float64)
    for L, clamp in ((2**T - 1, False), (2 ** (T - 1), True)):
        delta = lam / L
        j = torch.arange(-3, L + 3, dtype=torch.float64).repeat_interleave(9)
        z = (j - 0.5 + torch.linspace(0.05, 0.95, 9, dtype=torch.float64).repeat(L + 6)) * delta  # off boundaries
        cap = clamp_value(delta, L) if clamp else None
        k = quantize_codes(z, delta, delta / 2, 2**T - 1, cap)
        torch.testing.assert_close(k, qcfs_levels(z, lam, L), rtol=0, atol=0)
        w = bit_step_values(delta, T, T)
        spikes = bitserial_fire(bitserial_potential(z.unsqueeze(0), delta / 2, cap), w)
        torch.testing.assert_close(codes_from_bits(spikes), k, rtol=0, atol=0)


@pytest.mark.parametrize("L", [1, 2, 3, 4, 5, 6, 8, 12, 16])
def test_clamp_gives_exactly_level_L(L):
    for delta in (torch.tensor(0.1), torch.tensor(1 / 3, dtype=torch.float64), torch.tensor(2.0**-7)):
        assert int(torch.floor(clamp_value(delta, L) / delta)) == L
    assert float(clamp_value(torch.tensor(0.25), 4)) == 1.0  # λ itself for a power of two


def test_bit_planes_roundtrip():
    k = torch.tensor([[0.0, 1, 2], [5, 6, 7]])
    planes = bit_planes(k, 3)
    assert planes[:, 1, 0].tolist() == [1, 0, 1]  # 5 = 101, MSB first
    assert torch.equal(codes_from_bits(planes), k)


def test_neuron_output_sums_to_the_quantized_value_per_channel():
    delta = torch.tensor([0.1, 0.2], dtype=torch.float64)
    T = 3
    n = BitSerialNeuron(bit_step_values(delta, T, T), delta / 2)
    currents = torch.rand(T, 4, 2, 3, 3, dtype=torch.float64)  # [T, B, C, H, W]
    out = n(currents)
    z = currents.sum(0)
    d = delta.view(2, 1, 1)
    torch.testing.assert_close(out.sum(0), torch.clamp(torch.floor(z / d + 0.5), 0, 7) * d, rtol=0, atol=1e-15)
    with pytest.raises(SimulationError, match="fires 3 steps"):
        n(currents[:2])
    with pytest.raises(SimulationError, match="schedule='layer'"):
        n.step(currents[0], None, 0)
    assert n.causal is False


def test_if_ablation_neuron_is_the_if_neuron_for_equal_thresholds():
    theta = torch.tensor(0.7, dtype=torch.float64)
    currents = torch.randn(5, 6, 4, dtype=torch.float64) * 0.5
    ablated = BitIFNeuron((theta / 5).expand(5).clone(), theta / 10)
    reference = IFNeuron(theta / 5).double()
    reference.threshold = theta / 5
    torch.testing.assert_close(ablated(currents), reference(currents), rtol=0, atol=0)


@pytest.mark.parametrize("split", ["first", "uniform", "every"])
def test_step_bias_sums(split):
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    T = 4
    x = torch.zeros(T, 2, 3, 5, 5, dtype=torch.float64)
    sb = StepBias(c, split)
    y = sb(x)
    total = y.sum(0)[0, :, 0, 0]
    torch.testing.assert_close(total, c * (T if split == "every" else 1), rtol=1e-15, atol=0)
    chunks = torch.cat([sb.seq(x[:1], 0, T), sb.seq(x[1:], 1, T)])  # chunked evaluation agrees
    torch.testing.assert_close(chunks, y, rtol=0, atol=0)
    linear = StepBias(c, split, channel_last=True, scale=torch.tensor([2.0, 1, 1], dtype=torch.float64))
    ones = torch.ones(T, 2, 3, dtype=torch.float64)
    assert linear(ones).sum(0)[0, 0] == pytest.approx(2 * T + float(c[0]) * (T if split == "every" else 1))
    with pytest.raises(ValueError, match="split must be one of"):
        StepBias(c, "last")


def test_shifted_batchnorm_is_the_papers_split():
    bn = nn.BatchNorm2d(3).double().eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    b = torch.randn(3, dtype=torch.float64)
    x = torch.randn(5, 2, 3, 4, 4, dtype=torch.float64)
    y = ShiftedBatchNorm(bn, b)(x)
    torch.testing.assert_close(y.sum(0), bn(x.sum(0) + b.view(3, 1, 1)), rtol=1e-12, atol=1e-12)
    y_plain = ShiftedBatchNorm(bn, b, shift=False)(x)
    torch.testing.assert_close(y_plain[2], bn(x[2] + b.view(3, 1, 1)), rtol=1e-12, atol=1e-12)


def test_input_encoder_and_readout():
    x = torch.randn(2, 3, dtype=torch.float64)
    seq = x.unsqueeze(0).expand(4, 2, 3)
    first = AnalogInput("first")(seq)
    assert torch.equal(first[0], x) and not first[1:].any()
    torch.testing.assert_close(AnalogInput("uniform")(seq).sum(0), x)
    assert torch.equal(SumReadout()(seq), seq * 4)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 10_000), st.booleans(), st.booleans(), st.booleans())
def test_fused_scan_equals_fire_of_potential(T, C, seed, per_channel, clamped, channels_last):
    """The engine's fused path (``scan_counted``, with and without overwriting the currents) is bit-identical to
    ``output(bitserial_fire(bitserial_potential(...)))`` and counts the spikes it fires."""
    g = torch.Generator().manual_seed(seed)
    delta = torch.rand(C, generator=g) + 0.1 if per_channel else torch.tensor(0.3)
    steps = bit_step_values(delta, T, T)
    clamp = clamp_value(delta, 2**T - 1) if clamped else None
    neuron = BitSerialNeuron(steps, delta / 2, clamp)
    currents = torch.randn(T * 2, C, 3, 4, generator=g) * delta.max() * 3
    if channels_last:
        currents = currents.contiguous(memory_format=torch.channels_last)
    currents = currents.view(T, 2, C, 3, 4)
    ref = neuron.output(neuron.scan(currents, None)[0])
    values, _, counts = neuron.scan_counted(currents, None)
    mine = currents.clone()
    over, _, counts2 = neuron.scan_counted(mine, None, overwrite=True)
    assert over.data_ptr() == mine.data_ptr()
    for v, c in ((values, counts), (over, counts2)):
        assert torch.equal(v, ref)
        assert torch.equal(c, torch.count_nonzero(ref.reshape(T, -1), dim=1).double())


@pytest.mark.parametrize("case", ["float64 step", "float64 clamp", "broadcast step", "plain"])
def test_quantize_codes_in_place_path_equals_the_formula(case):
    """The no-autograd in-place path is taken only where it cannot change dtype or shape; otherwise the plain
    formula runs: the result always equals clip(floor(min(z + v0, clamp)/Δ), 0, K)."""
    torch.manual_seed(0)
    z = torch.randn(2, 4, 3, 3)
    step, v0, clamp = torch.tensor(0.3), torch.tensor(0.15), torch.tensor(2.0)
    if case == "float64 step":
        step = step.double()
    elif case == "float64 clamp":
        clamp = clamp.double()
    elif case == "broadcast step":
        step = torch.full((1, 2, 4, 1, 1), 0.3)
    expected = torch.clamp(torch.floor(torch.minimum(z + v0, clamp) / step), 0, 7)
    with torch.no_grad():
        got = quantize_codes(z, step, v0, 7, clamp)
    assert got.dtype == expected.dtype and got.shape == expected.shape and torch.equal(got, expected)
