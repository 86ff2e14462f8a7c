"""Neuron variants of issue 5: offset-spike calibration (COS), residual-potential masking (SRP), binary outputs."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnconv import IFNeuron, qcfs
from snnconv.errors import SimulationError
from snnconv.functional.if_neuron import IFState, if_scan
from snnconv.layers.calibrated import BinaryIFNeuron, COSNeuron, SRPNeuron, cos_initial_potential, srp_mask

F64 = torch.float64


def _seq(values, *shape) -> torch.Tensor:
    """[T] values -> currents [T, *shape] (the same sequence for every neuron)."""
    v = torch.as_tensor(values, dtype=F64)
    return v.view(-1, *([1] * len(shape))).expand(-1, *shape).clone()


def _v0(values, theta: float = 1.0, shift: str = "theta") -> float:
    """v0 of one neuron; ``shift="theta"`` is the rule of issue 5 these tests were written for (issue 19 names it)."""
    c = _seq(values, 1)
    v = torch.full((1,), theta / 2, dtype=F64)
    return float(cos_initial_potential(c, v, torch.tensor(theta, dtype=F64), shift))


def _reference_v0(values, theta: float, all_fired_shift: float = 1.0) -> float:
    """The issue's rule, scalar by scalar (``all_fired_shift``: the shift, in θ, when no step was silent)."""
    v, fired, m_s, m_n = theta / 2, False, math.inf, -math.inf
    for i in values:
        m = v + i
        if m >= theta:
            fired, m_s, v = True, min(m_s, m), m - theta
        else:
            m_n, v = max(m_n, m), m
    if v < 0 and fired:
        return theta / 2 - theta * max(1.0, m_s / theta - 0.999)
    if v >= theta:
        return theta / 2 + theta * (max(1.0, 1.001 - m_n / theta) if m_n > -math.inf else all_fired_shift)
    return theta / 2


# --- COS: the three branches with the exact formulas ---------------------------------------------------------


def test_cos_fired_too_much():
    # θ = 1: m = 2.5 (fires), 0.5, -0.5, -0.5 -> v(4) = -0.5 < 0; m_s = 2.5; shift max(1, 2.5 - 0.999) = 1.501
    assert _v0([2, -1, -1, 0]) == pytest.approx(0.5 - 1.501, abs=1e-12)
    # m_s = 1.5 -> max(1, 0.501) = 1
    assert _v0([1, 1, -1, -1]) == pytest.approx(-0.5, abs=1e-12)
    # θ = 2: m = 5 (fires), 1, -1, -1; m_s / θ = 2.5 -> v0 = 1 - 2 * 1.501
    assert _v0([4, -2, -2, 0], theta=2.0) == pytest.approx(1.0 - 2 * 1.501, abs=1e-12)


def test_cos_fired_too_little():
    # m = -0.5 (silent), 2.5, 4.5 (fire): v(3) = 3.5 ≥ θ; m_n = -0.5 -> shift max(1, 1.001 + 0.5) = 1.501
    assert _v0([-1, 3, 3]) == pytest.approx(0.5 + 1.501, abs=1e-12)
    # seed 004's "fewer spikes" case: m_n = 0.5 -> shift 1
    assert _v0([-2, -2, 2, 2, 2]) == pytest.approx(1.5, abs=1e-12)
    # it fired at every step (m_n does not exist): the shift is the floor θ
    assert _v0([3, 3]) == pytest.approx(1.5, abs=1e-12)
    assert _v0([6, 6], theta=2.0) == pytest.approx(1.0 + 2.0, abs=1e-12)


def test_cos_reference_shift_when_it_fired_at_every_step():
    # no silent step: the authors' code takes m_n = -1000θ, so the shift is (1.001 + 1000)·θ (issue 19)
    assert _v0([3, 3], shift="reference") == pytest.approx(0.5 + 1001.001, abs=1e-9)
    assert _v0([6, 6], theta=2.0, shift="reference") == pytest.approx(1.0 + 2 * 1001.001, abs=1e-9)
    # with a silent step both rules agree: m_n = -0.5 -> shift 1.501
    assert _v0([-1, 3, 3], shift="reference") == _v0([-1, 3, 3], shift="theta") == pytest.approx(2.001, abs=1e-12)
    with pytest.raises(ValueError, match="cos_shift must be one of reference, theta"):
        _v0([3, 3], shift="huge")
    with pytest.raises(ValueError, match="cos_shift"):
        COSNeuron(1.0, shift="big")


def _authors_cos(x: list[float], rho: int, T: int) -> list[float]:
    """The authors' COS neuron (hzc1208/ANN2SNN_COS, modules.py ``MPLayer``, one calibration round), in units of θ,
    for one neuron: v starts at 0.5; pre-run ρ steps recording the pre-reset potential of firing steps (1000 when
    silent) and the potential of silent steps (-1000 when firing); shift; replay T steps from t = 1."""
    v, rate, mem_seq, mem_seq2 = 0.5, 0, [], []
    for t in range(rho):
        v += x[t]
        out = v >= 1.0
        v -= float(out)
        rate += out
        mem_seq.append(v + 1.0 if out else 1000.0)
        mem_seq2.append(-1000.0 if out else v)
    lower = 1.0 if (v < 0 and rate > 1e-3) else 0.0
    val = min(mem_seq) - 0.999
    val = val if val > 1.0 else 1.0
    val2 = 1.001 - max(mem_seq2)
    val2 = val2 if val2 > 1.0 else 1.0
    v = 0.5 + val2 if v >= 1.0 else 0.5 - lower * val
    spikes = []
    for t in range(T):
        v += x[t]
        spikes.append(float(v >= 1.0))
        v -= spikes[-1]
    return spikes


def test_cos_fires_as_the_authors_code_on_the_issue_case():
    # [1.2θ x4, -3θ, -3θ, 0.5θ, 0.5θ], ρ = 4: it fires at each pre-run step, v(4) = 1.3θ ≥ θ. The reference shifts
    # v(0) to 0.5θ + 1001.001θ, so the replay fires at all 8 steps (8 spikes); the θ rule (v(0) = 1.5θ) fires at
    # steps 1-4 only (m = 2.7, 2.9, 3.1, 3.3, then -0.7, -3.7, -3.2, -2.7)
    for theta in (1.0, 2.0):
        c = _seq([1.2 * theta] * 4 + [-3 * theta] * 2 + [0.5 * theta] * 2, 1)
        assert COSNeuron(theta, rho=4).double()(c).flatten().tolist() == [theta] * 8
        assert COSNeuron(theta, rho=4, shift="theta").double()(c).flatten().tolist() == [theta] * 4 + [0.0] * 4
    assert _authors_cos([1.2] * 4 + [-3.0] * 2 + [0.5] * 2, 4, 8) == [1.0] * 8


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(-24, 24), min_size=2, max_size=10), st.integers(1, 10))
def test_cos_reference_shift_spikes_like_the_authors_code(eighths, rho):
    x = [v / 8 for v in eighths]  # exact binary fractions: both sides compute the same floats
    rho = min(rho, len(x))
    got = COSNeuron(1.0, rho=rho).double()(_seq(x, 1)).flatten().tolist()
    assert got == _authors_cos(x, rho, len(x))
    assert _v0(x[:rho], shift="reference") == pytest.approx(_reference_v0(x[:rho], 1.0, 1001.001), abs=1e-9)


def test_cos_neither_branch():
    assert _v0([0.3, 0.3, 0.3, 0.3]) == 0.5  # 0 ≤ v(ρ) < θ
    assert _v0([-1, -1]) == 0.5  # v(ρ) < 0 but it never fired
    assert _v0([1.0, -0.5]) == 0.5  # fired, v(2) = 0 (not < 0)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(-4, 4, allow_nan=False, allow_subnormal=False), min_size=1, max_size=8),
    st.sampled_from([0.5, 1.0, 2.0]),
)
def test_cos_initial_potential_matches_the_issue_rule(values, theta):
    assert _v0(values, theta) == pytest.approx(_reference_v0(values, theta), rel=1e-12, abs=1e-12)


def test_cos_pre_simulates_on_the_first_rho_steps_then_replays_all_T_from_t1():
    theta = torch.tensor(1.0, dtype=F64)
    currents = _seq([-2, -2, 2, 2, 2, 0.4, 0.4, 0.4], 1, 1)
    neuron = COSNeuron(1.0, rho=5).double()
    out = neuron(currents)
    v0 = cos_initial_potential(currents[:5], torch.full((1, 1), 0.5, dtype=F64), theta)
    ref, _ = if_scan(currents, IFState(v0), theta)  # all 8 steps, from t = 1, starting at v0
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    changed = currents.clone()
    changed[5:] = -3.0  # what comes after ρ does not change the calibration
    torch.testing.assert_close(neuron(changed)[:5], out[:5], rtol=0, atol=0)


def test_cos_is_per_neuron_and_per_sample():
    theta = torch.tensor([1.0, 0.5, 2.0], dtype=F64)
    seqs = torch.tensor(
        [
            [[2, -1, -1, 0], [0.3, 0.3, 0.3, 0.3], [-2, 6, 6, 0]],
            [[-2, -2, 2, 2], [0.5, 0.5, -0.5, -0.5], [1, 1, 1, 1]],
        ],
        dtype=F64,
    ).permute(2, 0, 1)  # [T=4, B=2, C=3]
    out = COSNeuron(theta, rho=4)(seqs)
    v0 = cos_initial_potential(seqs, (theta / 2).expand(2, 3), theta)
    assert len({round(float(v), 9) for v in (v0 / theta - 0.5).flatten()}) > 1  # not one shift for everybody
    for b in range(2):
        for c in range(3):
            single = COSNeuron(float(theta[c]), rho=4).double()
            torch.testing.assert_close(single(seqs[:, b, c].view(4, 1)).view(4), out[:, b, c], rtol=0, atol=0)
            assert _v0(seqs[:, b, c].tolist(), float(theta[c])) == pytest.approx(float(v0[b, c]), abs=1e-12)


# --- COS on seed 004's unevenness examples -------------------------------------------------------------------


def _counts(values, rho: int) -> tuple[float, float, float]:
    """(plain IF spikes, COS spikes, QCFS spikes) of one θ = 1 neuron over T = len(values) steps, L = T."""
    T = len(values)
    c = _seq(values, 1, 1)
    plain = float(IFNeuron(1.0).double()(c).sum())
    cos = float(COSNeuron(1.0, rho=rho).double()(c).sum())
    want = float(qcfs(c.mean(0), torch.tensor(1.0, dtype=F64), T).sum()) * T
    return plain, cos, want


def test_cos_fixes_seed_004_fewer_spikes_example():
    # seed 004 §3: inputs arrive as -2, -2, +2, +2, +2 (θ = 1, T = 5); ANN/QCFS value 0.4 = 2 spikes
    plain, cos, want = _counts([-2, -2, 2, 2, 2], rho=5)
    assert (plain, cos, want) == (1.0, 2.0, 2.0)


def test_cos_removes_one_offset_spike_of_the_more_spikes_examples():
    """The issue's rule shifts v0 by max(1, m_s/θ - 0.999)·θ: it silences the lowest firing step, i.e. removes one
    offset spike (more only when m_s ≥ 2θ); with two surplus spikes it gets closer to QCFS but not equal."""
    plain, cos, want = _counts([2, 2, 2, -2, -2], rho=5)  # seed 004: 4 spikes instead of 2
    assert (plain, cos, want) == (4.0, 3.0, 2.0)
    plain, cos, want = _counts([1, 1, -1, -1], rho=4)  # mean 0: QCFS 0, plain IF 2 spikes
    assert (plain, cos, want) == (2.0, 1.0, 0.0)
    plain, cos, want = _counts([2, -1, -1, 0], rho=4)  # m_s = 2.5θ: the larger shift removes its only spike
    assert (plain, cos, want) == (1.0, 0.0, 0.0)


# --- SRP ---------------------------------------------------------------------------------------------------


def test_srp_mask_threshold_is_strictly_above_a_thousandth_of_theta():
    theta = torch.tensor([1.0, 2.0], dtype=F64)
    v = torch.tensor([[1e-3, 2e-3], [1.0001e-3, 2.0002e-3], [0.0, -1.0]], dtype=F64)
    assert srp_mask(v, theta).tolist() == [[False, False], [True, True], [False, False]]


def _srp_reference(currents: torch.Tensor, theta: float, tau: int) -> torch.Tensor:
    """Steps 1..τ plain IF from θ/2; mask = v(τ) > 1e-3·θ; reset to θ/2; then masked IF spikes."""
    th = torch.tensor(theta, dtype=F64)
    pre, state = if_scan(currents[:tau], IFState(torch.full_like(currents[0], theta / 2)), th)
    mask = (state.v > 1e-3 * theta).to(F64)
    run, _ = if_scan(currents[tau:], IFState(torch.full_like(currents[0], theta / 2)), th)
    return torch.cat([pre, run * mask])


def test_srp_pre_run_mask_and_reset():
    # neuron 0: v(4) = -1.5 (masked); neuron 1: v(4) = 0.5 + 4·0.6 - 2 = 0.9 (kept);
    # neuron 2: v(4) = 0.5 - 0.4995 = 5e-4 > 0 but ≤ 1e-3·θ (masked)
    cols = [[1, 1, -1, -1, 0.6, 0.6, 0.6, 0.6], [0.6] * 8, [-0.4995, 0, 0, 0, 0.9, 0.9, 0.9, 0.9]]
    currents = torch.tensor(cols, dtype=F64).T.unsqueeze(1)  # [T=8, B=1, 3]
    srp = SRPNeuron(1.0, tau=4).double()
    spikes, state = srp.scan(currents, srp.init_state(currents[0]))
    assert state.t == 8 and state.mask.view(-1).tolist() == [0.0, 1.0, 0.0]
    torch.testing.assert_close(spikes, _srp_reference(currents, 1.0, 4), rtol=0, atol=0)
    plain, _ = if_scan(currents[:4], IFState(torch.full_like(currents[0], 0.5)), torch.tensor(1.0, dtype=F64))
    torch.testing.assert_close(spikes[:4], plain, rtol=0, atol=0)  # the pre-run is the plain neuron
    assert spikes[4:, 0, 0].sum() == 0 and spikes[4:, 0, 2].sum() == 0
    # after the reset the kept neuron restarts from θ/2 (not from v(4) = 0.9): m = 1.1, 0.7, 1.3, 0.9
    assert spikes[4:, 0, 1].tolist() == [1.0, 0.0, 1.0, 0.0]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-2, 2, allow_nan=False, allow_subnormal=False), min_size=2, max_size=9),
    st.integers(1, 4),
    st.integers(1, 4),
)
def test_srp_chunks_and_steps_equal_one_scan(values, tau, chunk):
    """The SRP neuron is causal: any chunking of the timeline, or one step at a time, gives the same spikes."""
    currents = _seq(values, 2, 3) * torch.tensor([1.0, -0.5, 2.0], dtype=F64)
    srp = SRPNeuron(torch.tensor([1.0, 0.7, 1.3], dtype=F64), tau=tau)
    whole, _ = srp.scan(currents, srp.init_state(currents[0]))
    torch.testing.assert_close(whole, _srp_reference_channels(currents, srp), rtol=0, atol=0)
    state, parts = srp.init_state(currents[0]), []
    for start in range(0, len(values), chunk):
        s, state = srp.scan(currents[start : start + chunk], state)
        parts.append(s)
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=0)
    state, steps = srp.init_state(currents[0]), []
    for t in range(len(values)):
        s, state = srp.step(currents[t], state, t)
        steps.append(s)
    torch.testing.assert_close(torch.stack(steps), whole, rtol=0, atol=0)


def _srp_reference_channels(currents: torch.Tensor, srp: SRPNeuron) -> torch.Tensor:
    return torch.stack(
        [_srp_reference(currents[..., c], float(srp.threshold[c]), srp.tau) for c in range(currents.shape[-1])], -1
    )


def test_srp_mask_is_per_sample():
    currents = torch.tensor([[1, 1, -1, -1, 1, 1], [0.6] * 6], dtype=F64).T.unsqueeze(-1)  # [6, B=2, 1]
    srp = SRPNeuron(1.0, tau=4).double()
    out = srp(currents)
    assert out[4:, 0].sum() == 0 and out[4:, 1].sum() > 0
    torch.testing.assert_close(out[:4], IFNeuron(1.0).double()(currents[:4]), rtol=0, atol=0)


# --- API details -------------------------------------------------------------------------------------------


def test_cos_needs_rho_steps_and_the_layer_schedule():
    neuron = COSNeuron(1.0, rho=4)
    with pytest.raises(SimulationError, match="rho=4"):
        neuron(torch.zeros(2, 1, 3))
    with pytest.raises(SimulationError, match="schedule='layer'"):
        neuron.step(torch.zeros(1, 3), neuron.init_state(torch.zeros(1, 3)), 0)
    assert not neuron.causal and SRPNeuron(1.0).causal
    with pytest.raises(ValueError, match="rho must be a positive integer"):
        COSNeuron(1.0, rho=0)
    with pytest.raises(ValueError, match="tau must be a positive integer"):
        SRPNeuron(1.0, tau=True)  # type: ignore[arg-type]
    assert "rho=4" in repr(neuron) and "tau=3" in repr(SRPNeuron(1.0, tau=3))


def test_binary_neurons_output_the_spikes():
    torch.manual_seed(0)
    theta = torch.tensor([0.5, 1.0, 2.0])
    currents = torch.randn(5, 4, 3) * 2
    ref = IFNeuron(theta)
    spikes, _ = ref.scan(currents, ref.init_state(currents[0]))
    b = BinaryIFNeuron(theta)
    values, _ = b.scan_values(currents, b.init_state(currents[0]))
    torch.testing.assert_close(values, spikes, rtol=0, atol=0)
    for cls, kw in ((COSNeuron, {"rho": 2}), (SRPNeuron, {"tau": 2})):
        n, nb = cls(theta, **kw), cls(theta, binary=True, **kw)
        out, binary = n(currents), nb(currents)
        assert set(binary.unique().tolist()) <= {0.0, 1.0}
        torch.testing.assert_close(binary * theta.view(1, 1, 3), out, rtol=0, atol=0)
        v, _, counts = nb.scan_counted(currents, nb.init_state(currents[0]))
        torch.testing.assert_close(counts.double(), binary.sum((1, 2)).double(), rtol=0, atol=0)
