"""Neuron variants: offset-spike calibration (COS), residual-potential masking (SRP), binary outputs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnconv import IFNeuron, qcfs
from snnconv.errors import SimulationError
from snnconv.functional.if_neuron import if_init, if_scan
from snnconv.layers.calibrated import BinaryIFNeuron, CalibratedIFNeuron, cos_offset

UNEVEN = torch.tensor([1.0, 1.0, -1.0, -1.0])  # seed 004's example: mean 0, but the IF neuron fires twice


def _seq(values, *shape) -> torch.Tensor:
    """[T] values -> currents [T, *shape] (the same sequence for every neuron)."""
    v = torch.as_tensor(values, dtype=torch.float64)
    return v.view(-1, *([1] * len(shape))).expand(-1, *shape).clone()


def test_cos_fixes_seed_004_unevenness_example():
    currents = _seq(UNEVEN, 1, 1)  # [T=4, B=1, 1 neuron]
    plain = IFNeuron(1.0)(currents).mean(0)
    cos = CalibratedIFNeuron(1.0, mode="cos", steps=4)
    calibrated = cos(currents).mean(0)
    want = qcfs(currents.mean(0), torch.tensor(1.0, dtype=torch.float64), 4)  # QCFS_4(0) = 0
    assert float(plain) == 0.5 and float(want) == 0.0
    assert float(calibrated) == float(want)
    assert float(cos.last_calibration) == 2.0  # two offset spikes, v(0) shifted by -2θ


def test_cos_offset_is_per_neuron_and_per_sample():
    # 2 samples x 3 neurons, each with its own sequence and threshold
    theta = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    seqs = torch.tensor(
        [
            [[1, 1, -1, -1], [0.3, 0.3, 0.3, 0.3], [2, 2, -2, -2]],
            [[0.2, 0.2, 0.2, 0.2], [0.5, 0.5, -0.5, -0.5], [-1, 3, 1, 0]],
        ],
        dtype=torch.float64,
    ).permute(2, 0, 1)  # [T, B, C]
    neuron = CalibratedIFNeuron(theta, mode="cos", steps=4)
    out = neuron(seqs)
    psi = neuron.last_calibration
    assert psi.shape == (2, 3)
    assert len({float(p) for p in psi.flatten()}) > 1  # not one shift for everybody
    for b in range(2):
        for c in range(3):
            single = CalibratedIFNeuron(float(theta[c]), mode="cos", steps=4)
            torch.testing.assert_close(single(seqs[:, b, c].view(4, 1)).view(4), out[:, b, c], rtol=0, atol=0)
            assert float(single.last_calibration) == float(psi[b, c])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-3, 3, allow_nan=False, width=32), min_size=1, max_size=8))
def test_cos_with_rho_1_never_shifts(values):
    """One step cannot fire more or fewer spikes than its (clipped) input implies: ψ ≡ 0 at ρ = 1."""
    currents = _seq(values, 2, 3)
    neuron = CalibratedIFNeuron(0.7, mode="cos", steps=1)
    torch.testing.assert_close(neuron(currents), IFNeuron(0.7)(currents), rtol=0, atol=0)
    assert not bool(neuron.last_calibration.any())


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(-2, 2, allow_nan=False, width=32), min_size=2, max_size=8))
def test_cos_never_moves_the_count_away_from_the_qcfs_count(values):
    """With ρ = T the calibrated count is at least as close to the QCFS count of the same input as the plain one."""
    T = len(values)
    currents = _seq(values, 1)
    theta = torch.tensor(1.0, dtype=torch.float64)
    want = qcfs(currents.sum(0) / T, theta, T) * T  # = clip(floor(ΣI/θ + 1/2), 0, T)
    plain = IFNeuron(theta)(currents).sum(0)
    cos = CalibratedIFNeuron(theta, mode="cos", steps=T)(currents).sum(0)
    assert float((cos - want).abs()) <= float((plain - want).abs())


def test_cos_offset_formula():
    count = torch.tensor([2.0, 0.0, 1.0, 4.0, 3.0])
    v = torch.tensor([-1.5, -3.0, 1.2, 2.5, 0.3])
    # desired = clip(count + floor(v), 0, 4): 0, 0, 2, 4, 3
    torch.testing.assert_close(cos_offset(count, v, torch.tensor(1.0), 4), torch.tensor([2.0, 0.0, -1.0, 0.0, 0.0]))


def test_constant_input_needs_no_calibration():
    currents = torch.linspace(-1, 2, 7, dtype=torch.float64).expand(6, 7).clone()
    neuron = CalibratedIFNeuron(1.0, mode="cos", steps=3)
    torch.testing.assert_close(neuron(currents), IFNeuron(1.0)(currents), rtol=0, atol=0)


def test_srp_silences_neurons_with_non_positive_residual_potential():
    # neuron 0: the uneven example (v(4) = -1.5 <= 0); neuron 1: a steady positive input (v(4) > 0)
    currents = torch.stack([_seq(UNEVEN, 1)[:, 0], _seq([0.6] * 4, 1)[:, 0]], dim=1).unsqueeze(1)  # [4, 1, 2]
    currents = torch.cat([currents, currents])  # real run of 8 steps, pre-run on the first tau = 4
    srp = CalibratedIFNeuron(1.0, mode="srp", steps=4)
    spikes, _ = srp.scan(currents, srp.init_state(currents[0]))
    plain, state = if_scan(currents[:4], if_init(currents[0], torch.tensor(1.0, dtype=torch.float64)),
                           torch.tensor(1.0, dtype=torch.float64))  # fmt: skip
    assert bool(state.v[0, 0] <= 0) and bool(state.v[0, 1] > 0)
    assert plain[:, 0, 0].sum() == 2  # the plain neuron fires twice in the pre-run ...
    assert spikes[:, 0, 0].sum() == 0  # ... the masked one never fires in the real run
    torch.testing.assert_close(spikes[:, 0, 1], IFNeuron(1.0)(currents)[:, 0, 1], rtol=0, atol=0)
    assert srp.last_calibration.tolist() == [[True, False]]


def test_srp_mask_is_per_sample():
    currents = torch.stack([_seq(UNEVEN, 1)[:, 0], _seq([0.6] * 4, 1)[:, 0]], dim=1).unsqueeze(-1)  # [4, B=2, 1]
    srp = CalibratedIFNeuron(1.0, mode="srp", steps=4)
    out = srp(currents)
    assert srp.last_calibration.view(-1).tolist() == [True, False]
    assert out[:, 0].sum() == 0 and out[:, 1].sum() > 0


def test_calibrated_neurons_need_their_calibration_steps_and_no_step_mode():
    neuron = CalibratedIFNeuron(1.0, mode="cos", steps=4)
    with pytest.raises(SimulationError, match="rho=4"):
        neuron(torch.zeros(2, 1, 3))
    with pytest.raises(SimulationError, match="schedule='layer'"):
        neuron.step(torch.zeros(1, 3), neuron.init_state(torch.zeros(1, 3)), 0)
    assert not neuron.causal
    with pytest.raises(ValueError, match="mode"):
        CalibratedIFNeuron(1.0, mode="bad")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive integer"):
        CalibratedIFNeuron(1.0, steps=0)


def test_binary_neuron_outputs_the_spikes_of_the_if_neuron():
    torch.manual_seed(0)
    theta = torch.tensor([0.5, 1.0, 2.0])
    currents = torch.randn(5, 4, 3) * 2
    ref = IFNeuron(theta)
    b = BinaryIFNeuron(theta)
    spikes, _ = ref.scan(currents, ref.init_state(currents[0]))
    values, _ = b.scan_values(currents, b.init_state(currents[0]))
    torch.testing.assert_close(values, spikes, rtol=0, atol=0)
    assert set(values.unique().tolist()) <= {0.0, 1.0}
    cal = CalibratedIFNeuron(theta, mode="cos", steps=2, binary=True)
    assert set(cal(currents).unique().tolist()) <= {0.0, 1.0}
