"""QCFS activation (seed 004 Eq. 15/17): values, straight-through gradients, module parity."""

import math
import warnings

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from helpers import require_native
from snnconv import QCFS, qcfs
from snnconv.functional.qcfs import qcfs_levels
from snnconv.native import use_native


@pytest.fixture(scope="module", params=["native", "torch"], autouse=True)
def qcfs_path(request):
    """Every test here runs on both paths: the fused C++ kernel and the PyTorch autograd function."""
    with use_native(request.param == "native"):
        if request.param == "native":
            require_native()
        yield request.param


def test_hand_computed_values():
    # θ = 1, L = 4, φ = 1/2: levels at 0, .25, .5, .75, 1; boundaries at (k - 1/2)/4
    z = torch.tensor([-1.0, -0.1, 0.1, 0.13, 0.37, 0.38, 0.62, 0.63, 0.87, 0.88, 5.0], dtype=torch.float64)
    expected = torch.tensor([0, 0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(qcfs(z, 1.0, 4), expected, rtol=0, atol=0)
    # θ = 2, L = 2, φ = 0: floor without shift
    z = torch.tensor([0.0, 0.99, 1.0, 1.99, 2.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(qcfs(z, 2.0, 2, shift=0.0), torch.tensor([0, 0, 1, 1, 2, 2.0], dtype=torch.float64))


def _expected_grads(z: torch.Tensor, theta: float, L: int, phi: float):
    """Eq. 17 written element by element (independent of the implementation)."""
    gz, gt = [], []
    for zi in z.tolist():
        k = min(max(math.floor(zi * L / theta + phi), 0), L)  # in float64, as the tensors under test
        a = k * theta / L
        lo, hi = -phi * theta / L, theta - phi * theta / L
        if lo < zi < hi:
            gz.append(1.0)
            gt.append((a - zi) / theta)
        elif zi >= hi:
            gz.append(0.0)
            gt.append(1.0)
        else:
            gz.append(0.0)
            gt.append(0.0)
    return torch.tensor(gz, dtype=torch.float64), torch.tensor(gt, dtype=torch.float64)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=40),
    st.floats(0.1, 4.0),
    st.integers(1, 16),
    st.sampled_from([0.0, 0.25, 0.5]),
)
def test_straight_through_gradients_eq17(values, theta, L, phi):
    z = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    w = torch.linspace(-1, 2, len(values), dtype=torch.float64)  # arbitrary upstream gradient
    (qcfs(z, th, L, phi) * w).sum().backward()
    gz, gt = _expected_grads(z.detach(), theta, L, phi)
    torch.testing.assert_close(z.grad, w * gz, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(th.grad, (w * gt).sum(), rtol=1e-9, atol=1e-9)


def test_per_channel_threshold_gradient_is_reduced_per_channel():
    torch.manual_seed(0)
    z = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    th = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    qcfs(z, th.view(1, 4, 1, 1), 4).sum().backward()
    for c in range(4):
        _, gt = _expected_grads(z[:, c].flatten(), th[c].item(), 4, 0.5)
        torch.testing.assert_close(th.grad[c], gt.sum(), rtol=1e-9, atol=1e-9)


def test_module_matches_function_and_trains_threshold():
    torch.manual_seed(0)
    m = QCFS(8, threshold=2.0)
    z = torch.randn(16, 3) * 2
    torch.testing.assert_close(m(z), qcfs(z, torch.tensor(2.0), 8), rtol=0, atol=0)
    m(z).sum().backward()
    assert m.threshold.grad is not None and m.threshold.grad.shape == ()


def test_softplus_threshold_is_positive_and_matches_plain():
    m = QCFS(4, threshold=1.5, positive="softplus", per_channel=True, channels=3)
    torch.testing.assert_close(m.theta(), torch.full((3,), 1.5), rtol=1e-6, atol=1e-6)
    z = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(m(z), QCFS(4, threshold=1.5)(z), rtol=1e-6, atol=1e-6)


def test_levels_are_integers_in_range():
    z = torch.randn(1000) * 3
    k = qcfs_levels(z, torch.tensor(1.0), 5)
    assert k.min() >= 0 and k.max() <= 5 and torch.equal(k, k.round())


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_levels_rejected(bad):
    with pytest.raises(ValueError, match="levels"):
        qcfs(torch.zeros(3), 1.0, bad)
    with pytest.raises(ValueError, match="levels"):
        QCFS(bad)


def test_negative_threshold_warns_in_training():
    m = QCFS(4, threshold=1.0)
    with torch.no_grad():
        m.threshold.fill_(-0.5)
    with pytest.warns(RuntimeWarning, match="non-positive"):
        m(torch.randn(4))


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-3, 50.0), st.integers(1, 300), st.floats(0.0, 1.0), st.sampled_from([torch.float32, torch.float64]))
def test_ramp_bounds_round_like_tensor_arithmetic(theta, L, phi, dtype):
    """The fused backward's Python-float bounds are bit-identical to θ's own tensor arithmetic."""
    from snnconv.functional.qcfs import _ramp_bounds

    th = torch.tensor(theta, dtype=dtype)
    low, high = _ramp_bounds(th, L, phi)
    assert low == float(-phi * th / L) and high == float(th - phi * th / L)


@pytest.mark.parametrize("L", [3, 7, 8])
def test_fused_cpu_gradient_equals_masked_reference_at_the_bounds(L):
    """Layer-wise θ on the CPU (hardtanh's fused backward) vs the mask path, float32, with z placed exactly on
    and one ulp around both ends of the ramp: grad_z bit for bit, grad_θ to float32 rounding (also where z is on
    the ramp's top end but the forward's level rounds to L - 1: Eq. 17 says 1 there)."""
    torch.manual_seed(L)
    theta = torch.tensor(0.77, requires_grad=True)
    lo = -0.5 * theta.detach() / L
    hi = theta.detach() - 0.5 * theta.detach() / L
    edges = torch.stack([lo, hi])
    special = torch.cat([edges, torch.nextafter(edges, edges + 1), torch.nextafter(edges, edges - 1)])
    z = torch.cat([torch.randn(5000) * 0.6, special]).requires_grad_()
    g = torch.randn(z.shape)
    (qcfs(z, theta, L) * g).sum().backward()
    inside = ((z > lo) & (z < hi)).float()
    torch.testing.assert_close(z.grad, g * inside, rtol=0, atol=0)
    out = qcfs(z.detach(), theta.detach(), L)
    above = (z.detach() >= hi).float()
    ref = (g * (inside * (out - z.detach()) / theta.detach() + above)).double().sum()
    torch.testing.assert_close(theta.grad.double(), ref, rtol=1e-5, atol=1e-4)


def test_threshold_gradient_at_the_top_end_follows_eq17():
    """z = θ with φ = 0 sits on the ramp's top end: Eq. 17 gives ∂a/∂θ = 1 even where z·L/θ rounds below L
    (the case hypothesis found: θ = z = 2.673227855132109, L = 15, φ = 0)."""
    for dtype in (torch.float64, torch.float32):
        z = torch.tensor([2.673227855132109], dtype=dtype, requires_grad=True)
        th = torch.tensor(2.673227855132109, dtype=dtype, requires_grad=True)
        qcfs(z, th, 15, 0.0).sum().backward()
        assert float(th.grad) == 1.0 and float(z.grad) == 0.0


def test_nan_upstream_gradient_stays_visible_in_the_threshold_gradient():
    """The fused CPU backward zeroes grad_z outside the ramp even for NaN upstream gradients, but the threshold
    gradient turns NaN, so a diverged step still shows (the trainer checks weights and loss)."""
    z = torch.linspace(-2, 3, 50, requires_grad=True)
    th = torch.tensor(1.0, requires_grad=True)
    qcfs(z, th, 4).backward(torch.full((50,), float("nan")))
    assert bool(th.grad.isnan())


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("value, warns", [(-0.5, True), (0.0, True), (1e-30, False)])
def test_threshold_check_in_training(per_channel, value, warns):
    """Layer-wise (one ``item()``) and per-channel thresholds <= 0 warn alike; a tiny positive one does not."""
    m = QCFS(4, threshold=1.0, per_channel=per_channel, channels=3 if per_channel else None)
    with torch.no_grad():
        m.threshold.view(-1)[-1] = value
    z = torch.randn(2, 3, 2, 2)
    if warns:
        with pytest.warns(RuntimeWarning, match="non-positive"):
            m(z)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            m(z)
