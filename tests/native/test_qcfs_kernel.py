"""The fused C++ QCFS kernel (snnconv.native) against the PyTorch path: forward bit for bit, grad_z bit for bit,
grad_θ to rounding, on random shapes/layouts/dtypes, special values and thread counts; the loader's modes."""

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

import snnconv.native as native
from helpers import require_native
from snnconv.errors import SnnconvError
from snnconv.functional.qcfs import qcfs
from snnconv.native import available, build_library, use_native


@pytest.fixture(scope="module", autouse=True)
def _built():
    require_native()


def _run(z, theta, levels, shift, grad, *, on):
    """Forward and gradients of qcfs on one path (fresh leaves, so the two runs share nothing)."""
    z = z.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    th = theta.detach().clone().requires_grad_()
    view = th.view(-1, *([1] * (z.dim() - 2))) if th.dim() else th
    with use_native(on):
        assert native.fits(z, view)  # every case here is one the kernel covers
        out = qcfs(z, view, levels, shift)
        out.backward(grad)
    return out.detach(), z.grad, th.grad


def _assert_same(z, theta, levels, shift, grad):
    a, gz_a, gt_a = _run(z, theta, levels, shift, grad, on=True)
    b, gz_b, gt_b = _run(z, theta, levels, shift, grad, on=False)
    assert torch.equal(a, b), "forward differs from the PyTorch path"
    assert a.stride() == b.stride()
    assert torch.equal(gz_a, gz_b), "grad_z differs from the PyTorch path"
    # θ sums: same terms, other summation order; bound by the rounding of Σ|terms|
    scale = (grad.abs() * (1 + z.abs() / theta.abs().min())).sum().item()
    eps = torch.finfo(z.dtype).eps
    torch.testing.assert_close(gt_a, gt_b, rtol=0, atol=64 * eps * scale + 1e-30)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 5),
    c=st.integers(1, 9),
    hw=st.integers(1, 7),
    layout=st.sampled_from(["contiguous", "channels_last", "flat"]),
    per_channel=st.booleans(),
    levels=st.integers(1, 32),
    shift=st.sampled_from([0.0, 0.5, 0.25, 0.1]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**31 - 1),
)
def test_native_equals_pytorch_path(n, c, hw, layout, per_channel, levels, shift, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (n, c) if layout == "flat" else (n, c, hw, hw + 1)
    z = torch.randn(shape, generator=g, dtype=dtype) * 3
    if layout == "channels_last":
        z = z.contiguous(memory_format=torch.channels_last)
    theta = torch.rand(c if per_channel else (), generator=g, dtype=dtype) * 4 + 0.05
    grad = torch.randn(shape, generator=g, dtype=dtype)
    _assert_same(z, theta, levels, shift, grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("levels", [1, 3, 8, 255])
def test_bin_edges_and_special_values(dtype, levels):
    """z exactly on every level boundary and one ulp either side, the ramp ends, ±inf and NaN."""
    theta = torch.tensor(0.77, dtype=dtype)
    k = torch.arange(-1, levels + 2, dtype=dtype)
    edges = (k - 0.5) * theta / levels
    special = torch.tensor([math.inf, -math.inf, 0.0, -0.0], dtype=dtype)
    z = torch.cat([edges, torch.nextafter(edges, edges + 1), torch.nextafter(edges, edges - 1), special])
    grad = torch.linspace(-1, 1, z.numel(), dtype=dtype)
    _assert_same(z[finite := z.isfinite()], theta, levels, 0.5, grad[finite])
    with torch.no_grad(), use_native(True):
        a = qcfs(torch.cat([z, torch.tensor([math.nan], dtype=dtype)]), theta, levels)
    with torch.no_grad(), use_native(False):
        b = qcfs(torch.cat([z, torch.tensor([math.nan], dtype=dtype)]), theta, levels)
    assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


def test_threshold_gradient_does_not_depend_on_the_thread_count():
    torch.manual_seed(0)
    z = torch.randn(16, 32, 24, 24).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(z.shape)
    for theta in (torch.tensor(1.3), torch.rand(32) + 0.5):
        grads = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            grads.append(_run(z, theta, 8, 0.5, grad, on=True)[2])
        assert torch.equal(grads[0], grads[1])


def test_upstream_gradient_in_another_layout_or_dtype_is_used_as_is():
    torch.manual_seed(1)
    z = torch.randn(2, 5, 6, 6).contiguous(memory_format=torch.channels_last)
    theta = torch.rand(5) + 0.5
    grad = torch.randn(2, 5, 6, 6)  # row-major, while z is channels-last
    _assert_same(z, theta, 4, 0.5, grad)
    _assert_same(z, theta, 4, 0.5, grad.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2))


@pytest.mark.parametrize(
    "z, theta",
    [
        (torch.randn(3, 4, 5).transpose(1, 2), torch.tensor(1.0)),  # strided view
        (torch.randn(2, 3, 4, 5, 5), torch.rand(4).view(4, 1, 1) + 0.5),  # (T, N, C, H, W): channel at dim 2
        (torch.randn(3, 4), torch.rand(4).double()),  # dtype mismatch
        (torch.randn(3, 4).half(), torch.tensor(1.0).half()),
    ],
)
def test_arguments_outside_the_kernel_take_the_pytorch_path(z, theta):
    assert not native.fits(z, theta)
    with use_native(True):
        out = qcfs(z, theta, 4)
    with use_native(False):
        ref = qcfs(z, theta, 4)
    assert torch.equal(out, ref)


def test_kernel_rejects_arguments_it_does_not_cover():
    with pytest.raises(RuntimeError, match="one value or one per channel"):
        torch.ops.snnconv.qcfs(torch.randn(2, 3, 4), torch.rand(4), 4, 0.5)
    with pytest.raises(RuntimeError, match="share a dtype"):
        torch.ops.snnconv.qcfs(torch.randn(2, 3), torch.tensor(1.0, dtype=torch.float64), 4, 0.5)


def test_module_training_step_matches():
    from snnconv import QCFS

    torch.manual_seed(2)
    x = torch.randn(8, 6, 5, 5)
    results = []
    for on in (True, False):
        m = QCFS(4, threshold=1.5, per_channel=True, channels=6, positive="softplus")
        with use_native(on):
            y = m(x)
            y.square().sum().backward()
        results.append((y.detach(), m.threshold.grad))
    assert torch.equal(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-5)


# --- the loader -------------------------------------------------------------------------------------------------


def test_build_is_cached_and_names_a_failing_compiler(tmp_path, monkeypatch):
    path = build_library()  # already built for this process: returned without compiling
    monkeypatch.setattr(native.subprocess, "run", lambda *a, **k: pytest.fail("rebuilt a cached library"))
    assert build_library() == path and path.exists()
    monkeypatch.undo()
    with pytest.raises(SnnconvError, match="false failed"):
        build_library(tmp_path, cxx="false")
    assert list(tmp_path.iterdir()) == []  # no partial library left behind


@pytest.fixture()
def fresh_state(monkeypatch):
    monkeypatch.setitem(native._state, "loaded", None)
    monkeypatch.setattr(native, "_registered", lambda: False)

    def broken(*args, **kwargs):
        raise SnnconvError("snnconv native kernels: no C++ compiler found")

    monkeypatch.setattr(native, "build_library", broken)
    return monkeypatch


def test_auto_mode_warns_once_and_falls_back(fresh_state):
    fresh_state.setenv("SNNCONV_NATIVE", "auto")
    with pytest.warns(RuntimeWarning, match="PyTorch path"):
        assert available() is False
    assert available() is False  # decided once: no second warning, no second build
    z = torch.randn(4, 3, requires_grad=True)
    qcfs(z, 1.0, 4).sum().backward()
    assert z.grad is not None


def test_required_mode_raises_and_off_mode_never_builds(fresh_state):
    fresh_state.setenv("SNNCONV_NATIVE", "1")
    with pytest.raises(SnnconvError, match="SNNCONV_NATIVE=1"):
        available()
    fresh_state.setitem(native._state, "loaded", None)
    fresh_state.setenv("SNNCONV_NATIVE", "0")
    assert available() is False
    fresh_state.setitem(native._state, "loaded", None)
    fresh_state.setenv("SNNCONV_NATIVE", "yes")
    with pytest.raises(SnnconvError, match="auto, 0 or 1"):
        available()
