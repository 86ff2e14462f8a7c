"""Integrate-and-fire neuron (seed 004; SPEC §1): step == scan, QCFS equivalence at T = L, Theorem 2."""

import hypothesis.strategies as st
import torch
from hypothesis import given, settings

from snnconv import IFNeuron, qcfs
from snnconv.functional.if_neuron import if_init, if_scan, if_step


def _run_constant(z: torch.Tensor, theta: float, T: int, phi: float = 0.5) -> torch.Tensor:
    th = torch.tensor(theta, dtype=z.dtype)
    spikes, _ = if_scan(z.unsqueeze(0).expand(T, *z.shape), if_init(z, th, phi), th)
    return spikes.sum(0)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.floats(-3, 6, allow_nan=False, width=64), min_size=1, max_size=64),
    st.floats(0.05, 5.0),
    st.integers(1, 32),
)
def test_constant_input_T_equals_L_reproduces_qcfs(values, theta, L):
    """θ·count/T == qcfs(z) for T = L; a ±1 count difference only within float rounding of a boundary."""
    z = torch.tensor(values, dtype=torch.float64)
    count = _run_constant(z, theta, L)
    snn = count * (theta / L)
    ann = qcfs(z, torch.tensor(theta, dtype=torch.float64), L)
    exact = snn == ann
    if not bool(exact.all()):
        # the only allowed deviation: z·L/θ + 1/2 within a few ulps of an integer (float rounding), by one level
        r = z * L / theta + 0.5
        near = (r - r.round()).abs() <= 64 * torch.finfo(torch.float64).eps * (r.abs() + L)
        diff = ((snn - ann) / (theta / L)).round().abs()
        assert bool((near | exact).all()) and bool((diff <= 1).all())


def test_theorem2_mean_error_vanishes_for_any_T():
    """With φ = 1/2, the mean conversion error over uniformly distributed z is ~0 for T ≠ L (seed 004 Thm 2)."""
    theta, L = 1.0, 4
    z = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000 * theta  # uniform on [0, θ]
    ann = qcfs(z, torch.tensor(theta, dtype=torch.float64), L)
    for T in (1, 2, 3, 5, 8, 16):
        snn = _run_constant(z, theta, T) * (theta / T)
        assert abs(float((snn - ann).mean())) < 2e-4 * theta, T
        # whereas φ = 0 is biased low, by about θ/(2T)
        biased = _run_constant(z, theta, T, phi=0.0) * (theta / T)
        assert float((biased - ann).mean()) < -0.4 * theta / T


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 5), st.integers(0, 10_000), st.booleans())
def test_scan_equals_step_bit_for_bit(T, C, seed, per_channel):
    g = torch.Generator().manual_seed(seed)
    currents = torch.randn(T, 3, C, 4, generator=g) * 2
    theta = torch.rand(C, generator=g) + 0.2 if per_channel else torch.tensor(1.3)
    neuron = IFNeuron(theta)
    spikes_scan, st_scan = neuron.scan(currents, neuron.init_state(currents[0]))
    state = neuron.init_state(currents[0])
    steps = []
    for t in range(T):
        s, state = neuron.step(currents[t], state, t)
        steps.append(s)
    assert torch.equal(spikes_scan, torch.stack(steps))
    assert torch.equal(st_scan.v, state.v)
    values, st_values, counts = neuron.scan_counted(currents, neuron.init_state(currents[0]))  # the engine's path
    assert torch.equal(values, neuron.output(spikes_scan))
    assert torch.equal(st_values.v, state.v)
    assert torch.equal(counts, spikes_scan.sum(dim=(1, 2, 3)).double())
    assert set(torch.unique(spikes_scan).tolist()) <= {0.0, 1.0}


def test_ties_fire_and_reset_by_subtraction():
    th = torch.tensor(1.0)
    s, st1 = if_step(torch.tensor([0.5, 0.4, 2.5]), if_init(torch.zeros(3), th, 0.5), th)
    assert s.tolist() == [1.0, 0.0, 1.0]  # 0.5 + 0.5 = θ fires (H(0) = 1)
    torch.testing.assert_close(st1.v, torch.tensor([0.0, 0.9, 2.0]))


def test_bad_thresholds_rejected():
    import pytest

    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            IFNeuron(torch.tensor(bad))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(1, 4), st.integers(0, 10_000), st.booleans(), st.booleans())
def test_overwrite_gives_the_same_values_in_the_callers_buffers(T, C, seed, per_channel, channels_last):
    """``if_scan_values(overwrite=True)`` (the engine's path for values it owns) writes its outputs over the
    currents and updates the potential in place, with exactly the values of the allocating path."""
    from snnconv.functional.if_neuron import if_scan_values

    g = torch.Generator().manual_seed(seed)
    currents = torch.randn(T * 2, C, 3, 5, generator=g) * 2
    if channels_last:
        currents = currents.contiguous(memory_format=torch.channels_last)
    currents = currents.view(T, 2, C, 3, 5)
    theta = (torch.rand(C, generator=g) + 0.2).view(1, C, 1, 1) if per_channel else torch.tensor(0.9)
    state = if_init(currents[0], theta)
    ref_out, ref_state, ref_counts = if_scan_values(currents, state, theta)
    mine = currents.clone()
    v = state.v.clone()
    out, new_state, counts = if_scan_values(mine, if_init(currents[0], theta)._replace(v=v), theta, overwrite=True)
    assert out.data_ptr() == mine.data_ptr() and new_state.v.data_ptr() == v.data_ptr()
    assert torch.equal(out, ref_out) and torch.equal(new_state.v, ref_state.v) and torch.equal(counts, ref_counts)
    assert torch.equal(mine, ref_out)  # the caller's currents now hold the outputs
