"""Tests of the model registry and every registered model (ReLU, QCFS and channel-wise QCFS)."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

from snnconv.errors import RegistryError
from snnconv.layers import QCFS, Add, make_act
from snnconv.models import create, list_models, register_model

WIDTH = 0.125
ACTS = ("relu", "qcfs", "csqcfs")


class LeafTracer(fx.Tracer):
    """Keeps QCFS and Add as call_module nodes."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (QCFS, Add)) or super().is_leaf_module(m, qualname)


def counting(kind: str) -> tuple[list[int], object]:
    """An activation factory that records the channel count of every call."""
    base, calls = make_act(kind, levels=4), []

    def act(channels: int) -> nn.Module:
        calls.append(channels)
        return base(channels)

    return calls, act


def build(name: str, kind: str = "qcfs", **kw) -> nn.Module:
    kw.setdefault("width", WIDTH)
    return create(name, act=make_act(kind, levels=4), **kw)


def test_list_models() -> None:
    names = list_models()
    assert names == sorted(names)
    assert {"vgg11", "vgg16", "resnet18", "resnet20", "resnet34", "small_cnn", "mlp"} <= set(names)
    assert list_models("resnet*") == ["resnet101", "resnet11h", "resnet18", "resnet20", "resnet34", "resnet50"]
    assert list_models("vgg1*", exclude="*11") == ["vgg16"]


def test_duplicate_registration_raises() -> None:
    with pytest.raises(RegistryError, match="already registered"):
        register_model("vgg16")(lambda *a, **k: nn.Identity())


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(RegistryError) as info:
        create("nope")
    msg = str(info.value)
    assert "nope" in msg and all(n in msg for n in list_models())


def test_default_act_is_qcfs() -> None:
    model = create("small_cnn", input_size=8)
    qs = [m for m in model.modules() if isinstance(m, QCFS)]
    assert qs and all(q.levels == 4 and not q.per_channel for q in qs)


@pytest.mark.parametrize("kind", ACTS)
@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name: str, kind: str) -> None:
    torch.manual_seed(0)
    model = build(name, kind, num_classes=7, input_size=16)
    out = model(torch.randn(4, 3, 16, 16))  # batch 4: BN over a 1×1 map of 2 samples is exactly ±1
    assert out.shape == (4, 7)
    out.square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    if kind != "relu":
        assert any(m.threshold.grad.abs().sum() > 0 for m in model.modules() if isinstance(m, QCFS))


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("name", list_models())
def test_grayscale_sizes(name: str, size: int) -> None:
    model = build(name, in_channels=1, input_size=size, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, size, size)).shape == (2, 10)


@pytest.mark.parametrize("kind", ("qcfs", "csqcfs"))
@pytest.mark.parametrize("name", list_models())
def test_act_count(name: str, kind: str) -> None:
    calls, act = counting(kind)
    model = create(name, act=act, width=WIDTH, input_size=16)
    qs = [m for m in model.modules() if isinstance(m, QCFS)]
    assert len(qs) == len(calls) > 0
    relus = [m for m in build(name, "relu", input_size=16).modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == len(calls)
    if kind == "csqcfs":  # one threshold per channel, sized by the factory argument
        assert sorted(q.threshold.numel() for q in qs) == sorted(calls)


@pytest.mark.parametrize("name", list_models())
def test_no_max_pool_or_functional_ops(name: str) -> None:
    model = build(name, input_size=32)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)) for m in model.modules())
    graph = fx.GraphModule(model, LeafTracer().trace(model)).graph
    assert not any(n.op == "call_function" and "relu" in str(n.target) for n in graph.nodes)


@pytest.mark.parametrize("name", list_models())
def test_fx_trace_keeps_add_and_qcfs(name: str) -> None:
    model = build(name, input_size=16).eval()
    gm = fx.GraphModule(model, LeafTracer().trace(model))
    called = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    adds = {q for q, m in model.named_modules() if isinstance(m, Add)}
    qcfs = {q for q, m in model.named_modules() if isinstance(m, QCFS)}
    assert adds <= called and qcfs <= called
    if name.startswith("resnet"):
        assert adds
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x))


def test_vgg_pooling_and_width() -> None:
    def pools(m: nn.Module) -> int:
        return sum(isinstance(x, nn.AvgPool2d) for x in m.modules())

    assert pools(build("vgg16", input_size=32)) == 5
    assert pools(build("vgg16", input_size=28)) == 4  # 28→14→7→3→1, fifth skipped
    assert pools(build("vgg16", input_size=8)) == 3
    full = create("vgg16", act=make_act("relu"), width=1.0)
    assert full.classifier[1].in_features == 512 and full.classifier[1].out_features == 4096
    thin = build("vgg16", hidden=32)
    assert thin.classifier[1].in_features == 64 and thin.classifier[1].out_features == 32


def test_resnet_structure() -> None:
    def count(m: nn.Module, t: type) -> int:
        return sum(isinstance(x, t) for x in m.modules())

    r20 = create("resnet20", act=make_act("relu"))
    convs = [m for m in r20.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 19 and count(r20, Add) == 9 and r20.head[-1].in_features == 64
    assert count(build("resnet18"), Add) == 8 and count(build("resnet34"), Add) == 16
    assert isinstance(build("resnet34").stem[-1], nn.AvgPool2d)


def test_unknown_kwarg_and_bad_size() -> None:
    with pytest.raises(TypeError):
        build("small_cnn", bogus=1)
    with pytest.raises(ValueError):
        build("small_cnn", input_size=0)
