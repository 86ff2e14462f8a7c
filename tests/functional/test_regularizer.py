"""QCFS regularizer (seed 000 §4.2; SPEC §2): values, gradients toward the levels, the hook collector."""

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from torch import nn

from snnconv import QCFS, make_act
from snnconv.functional.qcfs import qcfs
from snnconv.functional.regularizer import QCFSRegularizer, qcfs_regularizer
from snnconv.models import create

floats = st.floats(-1.0, 3.0, allow_nan=False, width=64)


def test_hand_computed_value():
    # θ = 1, L = 4: levels 0, .25, .5, .75, 1
    z = torch.tensor([-0.5, 0.1, 0.3, 0.5, 0.9, 1.7], dtype=torch.float64)
    q = torch.tensor([0.0, 0.0, 0.25, 0.5, 1.0, 1.0], dtype=torch.float64)
    expected = ((z - q) ** 2).mean()
    torch.testing.assert_close(qcfs_regularizer(z, 1.0, 4), expected, rtol=0, atol=1e-15)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(floats, min_size=1, max_size=20), theta=st.floats(0.25, 4.0), levels=st.integers(1, 8))
def test_gradient_pulls_toward_nearest_level(values, theta, levels):
    z = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    qcfs_regularizer(z, th, levels).backward()
    zc = z.detach().clamp(0, theta)
    q = qcfs(zc, theta, levels)  # nearest level of clip(z, 0, θ) for φ = 1/2
    assert bool(((zc - q).abs() <= theta / (2 * levels) + 1e-12).all())
    # analytic gradient 2(z - q)/N, whose sign points away from q: a descent step moves z toward q
    torch.testing.assert_close(z.grad, 2 * (z.detach() - q) / len(values), rtol=1e-12, atol=1e-15)
    step = z.detach() - 1e-3 * z.grad
    assert bool(((step - q).abs() <= (z.detach() - q).abs()).all())
    # q is detached: the threshold gets no gradient from the regularizer
    assert th.grad is None or float(th.grad.abs()) == 0.0


def test_gradient_zero_at_levels():
    theta, L = 2.0, 4
    z = (torch.arange(L + 1, dtype=torch.float64) * theta / L).requires_grad_()
    loss = qcfs_regularizer(z, theta, L)
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert bool((z.grad == 0).all())


def test_channelwise_threshold_broadcast():
    z = torch.rand(2, 3, 4, 4, dtype=torch.float64) * 3
    th = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    expected = torch.cat(
        [((z[:, c] - qcfs(z[:, c].clamp(0, float(th[c])), th[c], 4)) ** 2).flatten() for c in range(3)]
    )
    torch.testing.assert_close(qcfs_regularizer(z, th.view(-1, 1, 1), 4), expected.mean())


def test_collector_is_concatenated_mean_and_resets_each_forward():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), QCFS(4, 1.0), nn.Linear(7, 3), QCFS(2, 2.0), nn.Linear(3, 2))
    x = torch.randn(6, 5)
    z1 = model[0](x)
    z2 = model[2](model[1](z1))
    sq = torch.cat([((z1 - qcfs(z1.clamp(0, 1.0), 1.0, 4)) ** 2).flatten(),
                    ((z2 - qcfs(z2.clamp(0, 2.0), 2.0, 2)) ** 2).flatten()])  # fmt: skip
    with QCFSRegularizer(model) as reg:
        model(x)
        torch.testing.assert_close(reg.loss(), sq.mean().detach())
        assert set(reg.per_layer()) == {"1", "3"}
        model(x)  # a new forward replaces the record instead of accumulating
        torch.testing.assert_close(reg.loss(), sq.mean().detach())
        reg.loss().backward()
        assert model[0].weight.grad is not None
        # q detached: a layer's λ gets no gradient through its own term; only through deeper layers' z
        assert model[3].threshold.grad is None
        assert model[1].threshold.grad is not None
    model(x)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert float(reg.loss()) == 0.0


def test_collector_channelwise_and_extra_loss_signature():
    model = create("small_cnn", num_classes=3, in_channels=1, input_size=8, width=0.25,
                   act=make_act("csqcfs", levels=4, threshold=1.0))  # fmt: skip
    reg = QCFSRegularizer(model)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    logits = model(x)
    extra = (lambda m, lg, t: 0.1 * reg.loss())(model, logits, y)
    assert extra.dim() == 0 and float(extra.detach()) > 0 and extra.requires_grad
    reg.remove()
    assert all(not m._forward_hooks for m in model.modules())


def test_no_qcfs_raises():
    with pytest.raises(ValueError, match="no QCFS"):
        QCFSRegularizer(nn.Linear(2, 2))


# --- the three readings of seed 000 §4.2-4.3 (SPEC §2) --------------------------------------------------------

Z6 = [-0.5, 0.1, 0.3, 0.5, 0.9, 1.7]  # θ = 1, L = 4; clip(z, 0, 1) = [0, .1, .3, .5, .9, 1]


def test_seed_form_hand_computed():
    # q = θ(⌊z̄L/θ + 0.5⌋ - 0.5)/L: z̄L + .5 = [.5, .9, 1.7, 2.5, 4.1, 4.5] → ⌊⌋ = [0, 0, 1, 2, 4, 4]
    # → q = [-.125, -.125, .125, .375, .875, .875]; z̄ - q = [.125, .225, .175, .125, .025, .125]
    z = torch.tensor(Z6, dtype=torch.float64, requires_grad=True)
    loss = qcfs_regularizer(z, 1.0, 4, form="seed")
    sq = [0.125**2, 0.225**2, 0.175**2, 0.125**2, 0.025**2, 0.125**2]  # Σ = 0.12875
    torch.testing.assert_close(loss.detach(), torch.tensor(sum(sq) / 6, dtype=torch.float64), rtol=0, atol=1e-15)
    loss.backward()  # 2(z̄ - q)/N inside (0, θ); nothing where the clip is active (z = -0.5, 1.7)
    want = torch.tensor([0.0, 0.225, 0.175, 0.125, 0.025, 0.0], dtype=torch.float64) * 2 / 6
    torch.testing.assert_close(z.grad, want, rtol=0, atol=1e-15)


def test_clipped_and_raw_forms_hand_computed():
    z = torch.tensor(Z6, dtype=torch.float64)
    # nearest levels of z̄: [0, 0, .25, .5, 1, 1]; clipped: z̄ - q = [0, .1, .05, 0, -.1, 0] (Σ² = 0.0225)
    torch.testing.assert_close(qcfs_regularizer(z, 1.0, 4, form="clipped"), torch.tensor(0.0225 / 6, dtype=z.dtype))
    # raw: z - q = [-.5, .1, .05, 0, -.1, .7] (Σ² = 0.7625): the two out-of-range values carry 97 % of it
    torch.testing.assert_close(qcfs_regularizer(z, 1.0, 4, form="raw"), torch.tensor(0.7625 / 6, dtype=z.dtype))
    assert torch.equal(qcfs_regularizer(z, 1.0, 4), qcfs_regularizer(z, 1.0, 4, form="raw"))  # default: raw


def test_raw_form_is_mostly_the_pull_into_range():
    # the numbers: z ~ N(0, 1.5²), λ = 2, L = 8: ~all of the raw loss comes from z outside [0, λ]
    z = torch.randn(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.5
    raw = qcfs_regularizer(z, 2.0, 8, form="raw")
    inside = ((z >= 0) & (z <= 2)).to(z.dtype)
    q = qcfs(z.clamp(0, 2), 2.0, 8)
    share_outside = float((((z - q) ** 2) * (1 - inside)).mean() / raw)
    assert share_outside > 0.99
    assert float(qcfs_regularizer(z, 2.0, 8, form="clipped")) < 0.01 * float(raw)


def test_form_is_validated_and_reaches_the_collector():
    with pytest.raises(ValueError, match="form must be one of seed, clipped, raw, got 'exact'"):
        qcfs_regularizer(torch.zeros(3), 1.0, 4, form="exact")
    model = nn.Sequential(nn.Linear(5, 7), QCFS(4, 1.0), nn.Linear(7, 2))
    with pytest.raises(ValueError, match="QCFSRegularizer: form must be one of"):
        QCFSRegularizer(model, form="exact")
    x = torch.randn(6, 5)
    z = model[0](x)
    for form in ("seed", "clipped", "raw"):
        with QCFSRegularizer(model, form=form) as reg:
            model(x)
            torch.testing.assert_close(reg.loss(), qcfs_regularizer(z, 1.0, 4, form=form).detach())
