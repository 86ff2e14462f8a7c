"""The fused C++ integrate-and-fire scan (snnconv.native) against the PyTorch scan: outputs, potentials and spike
counts bit for bit, over random shapes, layouts, thresholds, dtypes and in-place use; and a whole simulation."""

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from helpers import require_native
from snnconv import native
from snnconv.functional.if_neuron import IFState, _native_scan, if_init, if_scan_values, if_step
from snnconv.layers.channels import channel_view
from snnconv.native import use_native


@pytest.fixture(scope="module", autouse=True)
def _built():
    require_native()


def _scan(currents, theta, *, on, overwrite=False, v=None):
    cur = currents.clone(memory_format=torch.preserve_format)  # dense: keeps the strides of every step
    state = if_init(cur[0], theta) if v is None else IFState(v=v.clone())
    with use_native(on):
        assert _native_scan(cur, state.v, theta, cur) == on  # the path under test is the one taken
        out, new, counts = if_scan_values(cur, state, theta, overwrite=overwrite)
    return out, new.v, counts


@settings(max_examples=80, deadline=None)
@given(
    steps=st.integers(1, 9),
    b=st.integers(1, 4),
    c=st.integers(1, 20),
    hw=st.integers(1, 6),
    layout=st.sampled_from(["contiguous", "channels_last", "flat"]),
    per_channel=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    overwrite=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_native_scan_equals_pytorch_scan(steps, b, c, hw, layout, per_channel, dtype, overwrite, seed):
    g = torch.Generator().manual_seed(seed)
    step_shape = (b, c) if layout == "flat" else (b, c, hw, hw + 2)
    currents = torch.randn(steps, *step_shape, generator=g, dtype=dtype)
    if layout == "channels_last":
        currents = _cl_steps(currents)
    theta = torch.rand(c if per_channel else (), generator=g, dtype=dtype) + 0.1
    theta = channel_view(theta, len(step_shape))
    assert native.fits(currents[0], theta)
    a = _scan(currents, theta, on=True, overwrite=overwrite)
    r = _scan(currents, theta, on=False, overwrite=overwrite)
    for x, y in zip(a, r, strict=True):
        assert x.stride() == y.stride() and torch.equal(x, y)


def _cl_steps(currents):
    from snnconv.functional.if_neuron import empty_steps

    step = currents[0].contiguous(memory_format=torch.channels_last)
    return empty_steps(currents.shape[0], step).copy_(currents)


def test_ties_fire_and_the_potential_matches_if_step():
    """m = θ exactly fires (H(0) = 1); the scan equals if_step applied T times, with v(0) from the state."""
    theta = torch.tensor(0.75)
    currents = torch.tensor([[0.375, 0.0, -1.0, 0.75], [0.0, 0.375, 2.0, 0.1]]).view(2, 1, 4)
    v0 = torch.full((1, 4), 0.375)
    out, v, counts = _scan(currents, theta, on=True, v=v0)
    state, ref = IFState(v=v0.clone()), []
    for t in range(2):
        s, state = if_step(currents[t], state, theta)
        ref.append(s * theta)
    assert torch.equal(out, torch.stack(ref)) and torch.equal(v, state.v)
    assert out[0, 0, 0] == theta and counts.tolist() == [2.0, 2.0]


def test_grad_tracking_inputs_take_the_pytorch_path():
    currents = torch.randn(3, 2, 4, requires_grad=True)
    assert not _native_scan(currents, torch.zeros(2, 4), torch.tensor(1.0), torch.empty(3, 2, 4))
    with torch.no_grad():
        assert _native_scan(currents, torch.zeros(2, 4), torch.tensor(1.0), torch.empty(3, 2, 4))


def test_kernel_rejects_mismatched_buffers():
    cur = torch.randn(3, 2, 4)
    with pytest.raises(RuntimeError, match="one dense layout per step"):
        torch.ops.snnconv.if_scan_(torch.empty(3, 2, 5), cur, torch.zeros(2, 4), torch.tensor(1.0))
    with pytest.raises(RuntimeError, match="one value or one per channel"):
        torch.ops.snnconv.if_scan_(torch.empty_like(cur), cur, torch.zeros(2, 4), torch.ones(3))


@pytest.mark.parametrize("model", ["resnet20", "vgg11"])
def test_whole_simulation_is_bit_identical(model):
    from snnconv import convert, make_act, simulate
    from snnconv.models import create

    torch.manual_seed(0)
    ann = create(model, num_classes=10, in_channels=3, input_size=32, act=make_act("qcfs", levels=4)).eval()
    x = torch.randn(4, 3, 32, 32)
    snn = convert(ann, method="if")
    with use_native(True):
        a = simulate(snn, x, 6)
    with use_native(False):
        r = simulate(snn, x, 6)
    assert torch.equal(a.logits, r.logits)
    assert a.spike_counts.keys() == r.spike_counts.keys()
    assert all(torch.equal(a.spike_counts[k], r.spike_counts[k]) for k in a.spike_counts)
