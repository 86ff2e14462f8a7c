"""CS-QCFS (seed 002): per-channel and softplus thresholds, and two-stage training (Algorithm 1) on digits."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from snnconv import QCFS, convert, simulate
from snnconv.layers.qcfs import inverse_softplus
from snnconv.models import create
from snnconv.runs import build_model, load_run
from snnconv.train import TrainConfig
from snnconv.twostage import exact_inverse_softplus, load_two_stage, qcfs_channels, to_channelwise, two_stage

# --- per-channel and softplus QCFS --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.floats(0.05, 5.0), st.integers(1, 8), st.integers(1, 5), st.sampled_from(["none", "softplus"]))
def test_per_channel_equal_thresholds_reproduce_layer_wise_qcfs(theta, L, C, positive):
    """Values equal, the z gradient equals, and Σ_c ∂/∂λ_c equals the layer-wise ∂/∂λ."""
    g = torch.Generator().manual_seed(C * 31 + L)
    z = (torch.randn(4, C, 3, 3, generator=g, dtype=torch.float64) * theta).requires_grad_()
    z2 = z.detach().clone().requires_grad_()
    w = torch.randn(4, C, 3, 3, generator=g, dtype=torch.float64)
    layer = QCFS(L, theta, positive=positive).double()
    chan = QCFS(L, theta, per_channel=True, channels=C, positive=positive).double()
    with torch.no_grad():
        chan.threshold.copy_(layer.threshold.expand(C))
    a, b = layer(z), chan(z2)
    torch.testing.assert_close(b, a, rtol=0, atol=0)
    (a * w).sum().backward()
    (b * w).sum().backward()
    torch.testing.assert_close(z2.grad, z.grad, rtol=0, atol=0)
    assert chan.threshold.grad.shape == (C,)
    torch.testing.assert_close(chan.threshold.grad.sum(), layer.threshold.grad, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-80.0, 0.0, allow_nan=False), min_size=1, max_size=6))
def test_softplus_keeps_thresholds_positive_under_adversarial_init(lams):
    q = QCFS(4, 1.0, per_channel=True, channels=len(lams), positive="softplus")
    with torch.no_grad():
        q.threshold.copy_(torch.tensor(lams))
    assert bool((q.theta() > 0).all())
    z = torch.randn(3, len(lams), 2, 2)
    out = q.train()(z)
    assert bool(torch.isfinite(out).all()) and bool((out >= 0).all())
    out.sum().backward()
    assert bool(torch.isfinite(q.threshold.grad).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lam", [-120.0, -800.0, -1e4, -1e30])
def test_softplus_keeps_thresholds_positive_for_very_negative_lambda(lam, dtype):
    """softplus(λ) underflows to 0 below λ ≈ -103 (float32) / -745 (float64); θ is clamped to the smallest normal."""
    q = QCFS(4, 1.0, per_channel=True, channels=2, positive="softplus").to(dtype)
    with torch.no_grad():
        q.threshold.fill_(lam)
    assert bool((q.theta() > 0).all())
    out = q(torch.randn(3, 2, 4, 4, dtype=dtype))
    assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("lam", [-3.0, -0.5, 0.7, 2.5])
def test_softplus_gradients_against_finite_differences(lam):
    """Seed 002 Eq. 19-20: on the smooth parts (clipped above: a = θ; below: a = 0) the straight-through gradient
    equals the true derivative σ(λ)·∂a/∂θ; inside, ∂a/∂λ = σ(λ)·(a - z)/θ (the chain rule through softplus;
    Eq. 20's printed ``z·e^λ`` term should read ``z·σ(λ)``)."""
    L, eps = 4, 1e-6
    theta = float(F.softplus(torch.tensor(lam, dtype=torch.float64)))
    sig = float(torch.sigmoid(torch.tensor(lam, dtype=torch.float64)))
    z = torch.tensor([-2.0 * theta, -0.3 * theta, 0.3 * theta, 0.6 * theta, 2.0 * theta, 5.0 * theta],
                     dtype=torch.float64, requires_grad=True)  # fmt: skip
    q = QCFS(L, 1.0, positive="softplus").double()
    with torch.no_grad():
        q.threshold.fill_(lam)
    grads = []
    for i in range(len(z)):
        q.zero_grad()
        z.grad = None
        q(z)[i].backward()
        grads.append((float(z.grad[i]), float(q.threshold.grad)))

    def f(l: float, i: int) -> float:
        with torch.no_grad():
            q.threshold.fill_(l)
            return float(q(z)[i])

    for i, zi in enumerate(z.tolist()):
        low, high = -theta / (2 * L), theta - theta / (2 * L)
        gz, gl = grads[i]
        if zi <= low or zi >= high:  # smooth part: finite differences in λ
            fd = (f(lam + eps, i) - f(lam - eps, i)) / (2 * eps)
            assert gl == pytest.approx(fd, rel=1e-6, abs=1e-9)
            assert gz == 0.0
        else:
            a = f(lam, i)
            assert gl == pytest.approx(sig * (a - zi) / theta, rel=1e-12)
            assert gz == 1.0


def test_plain_qcfs_with_negative_threshold_warns_in_training():
    q = QCFS(4, 1.0)
    with torch.no_grad():
        q.threshold.fill_(-0.5)
    with pytest.warns(RuntimeWarning, match="non-positive"):
        q.train()(torch.randn(3, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q.eval()(torch.randn(3, 4))  # evaluation does not warn
        sp = QCFS(4, 1.0, positive="softplus")
        with torch.no_grad():
            sp.threshold.fill_(-5.0)
        sp.train()(torch.randn(3, 4))  # softplus never does


# --- to_channelwise ----------------------------------------------------------------------------------------


def test_exact_inverse_softplus_round_trips():
    theta = torch.tensor([0.05, 0.5, 1.0, 2.3, 4.0, 8.0, 30.0])
    lam = exact_inverse_softplus(theta)
    torch.testing.assert_close(F.softplus(lam), theta, rtol=2e-7, atol=0)
    torch.testing.assert_close(lam, inverse_softplus(theta), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["small_cnn", "mlp", "resnet20"])
def test_channel_counts_from_graph_and_from_hooks_agree(name):
    model = create(name, num_classes=10, in_channels=1, input_size=8, width=0.25)
    assert qcfs_channels(model) == qcfs_channels(model, torch.zeros(2, 1, 8, 8))


@pytest.mark.parametrize("channelwise", [True, False])
@pytest.mark.parametrize("softplus", [True, False])
def test_to_channelwise_keeps_the_function(channelwise, softplus):
    torch.manual_seed(0)
    model = create("small_cnn", num_classes=10, in_channels=1, input_size=8, width=0.5).eval()
    with torch.no_grad():
        for i, q in enumerate(m for m in model.modules() if isinstance(m, QCFS)):
            q.threshold.fill_(0.8 + 0.7 * i)
    x = torch.randn(32, 1, 8, 8)
    before = model(x)
    to_channelwise(model, torch.zeros(1, 1, 8, 8), channelwise=channelwise, softplus=softplus)
    qs = [m for m in model.modules() if isinstance(m, QCFS)]
    assert all(q.per_channel == channelwise and q.positive == ("softplus" if softplus else "none") for q in qs)
    assert [q.threshold.numel() for q in qs] == ([8, 16, 32] if channelwise else [1, 1, 1])
    torch.testing.assert_close(model(x), before, rtol=1e-6, atol=1e-6)


# --- two-stage training on digits ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    root = tmp_path_factory.mktemp("twostage")
    cfg = TrainConfig(model="small_cnn", dataset="digits", act="qcfs", levels=4, epochs=2, batch_size=32, lr=0.05,
                      threshold_init=4.0, device="cpu", augment=False, out=str(root / "full"))  # fmt: skip
    result = two_stage(cfg, 2)
    return cfg, root, result


def test_two_stage_trains_then_fine_tunes_channel_thresholds(stage1):
    cfg, root, result = stage1
    s1, s2 = root / "full" / "stage1", root / "full" / "stage2"
    assert result["out"] == str(s2) and result["stage2"]["epochs_completed"] == 2
    c2 = json.loads((s2 / "config.json").read_text())
    assert c2["act"] == "csqcfs" and c2["lr"] == pytest.approx(cfg.lr / 10) and c2["epochs"] == 2
    # stage 2 starts from exactly the stage-1 function
    ann1, _ = load_run(s1, "last")
    x = torch.rand(64, 1, 8, 8) * 3
    start = to_channelwise(load_run(s1, "last")[0], torch.zeros(1, 1, 8, 8))
    torch.testing.assert_close(start(x), ann1(x), rtol=1e-6, atol=1e-6)
    assert (start(x).argmax(1) == ann1(x).argmax(1)).all()
    # the fine-tuned model loads with the ordinary run loader (act "csqcfs") and its thresholds differ per channel
    ann2, config2 = load_run(s2, "last")
    assert config2.act == "csqcfs" and build_model(config2).state_dict().keys() == ann2.state_dict().keys()
    for q in (m for m in ann2.modules() if isinstance(m, QCFS)):
        assert q.per_channel and q.positive == "softplus"
        theta = q.theta().detach()
        assert float(theta.max() - theta.min()) > 0
    snn = convert(ann2)  # per-channel SNN thresholds, v(0) = θ_c / 2
    assert any(n.threshold.dim() == 1 for n in snn.neurons().values())
    assert simulate(snn, x[:4], 2).logits.shape == (2, 4, 10)


@pytest.mark.parametrize("channelwise,softplus", [(False, True), (True, False), (False, False)])
def test_two_stage_ablations(stage1, channelwise, softplus):
    cfg, root, _ = stage1
    out = root / f"abl_{channelwise}_{softplus}"
    shutil.copytree(root / "full" / "stage1", out / "stage1")  # a finished stage 1 is resumed, not retrained
    cfg2 = type(cfg)(**{**cfg.to_dict(), "out": str(out), "epochs": cfg.epochs})
    result = two_stage(cfg2, 1, channelwise=channelwise, softplus=softplus)
    assert result["stage1"]["epochs_completed"] == cfg.epochs and result["stage2"]["epochs_completed"] == 1
    model, _ = load_two_stage(out / "stage2", "last")
    qs = [m for m in model.modules() if isinstance(m, QCFS)]
    assert all(q.per_channel == channelwise and q.positive == ("softplus" if softplus else "none") for q in qs)
    ckpt_acc = json.loads((out / "stage2" / "metrics.jsonl").read_text().splitlines()[-1])["test_acc"]
    from snnconv.runs import test_loader
    from snnconv.train import evaluate

    assert evaluate(model, test_loader(cfg2))["acc"] == pytest.approx(ckpt_acc)


def test_two_stage_origin_is_stage_one_only(stage1, tmp_path):
    cfg, root, _ = stage1
    shutil.copytree(root / "full" / "stage1", tmp_path / "stage1")
    result = two_stage(type(cfg)(**{**cfg.to_dict(), "out": str(tmp_path)}), 0)
    assert result["stage2"] is None and not (tmp_path / "stage2").exists()
