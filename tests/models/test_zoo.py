"""Model-zoo additions of issue 9: ResNet-50/101 (Bottleneck) and MobileNetV2 - forward/backward/convert/simulate."""

from __future__ import annotations

import pytest
import torch

import snnconv
from helpers import randomize
from snnconv import QCFS, Add, make_act
from snnconv.models import create

ZOO = ("resnet50", "resnet101", "mobilenetv2")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest


def build(name: str, kind: str = "qcfs", **kw):
    kw.setdefault("width", 0.125)
    return create(name, act=make_act(kind, levels=4), **kw)


@pytest.mark.parametrize(
    "name, kind", [("resnet50", "relu"), ("resnet50", "csqcfs"), ("mobilenetv2", "relu"), ("mobilenetv2", "csqcfs")]
)  # fmt: skip
def test_forward_backward(name: str, kind: str) -> None:
    torch.manual_seed(0)
    model = build(name, kind, num_classes=7, input_size=8)
    out = model(torch.randn(4, 3, 8, 8))
    assert out.shape == (4, 7)
    out.square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(isinstance(m, Add) for m in model.modules())
    assert not any(isinstance(m, (torch.nn.ReLU6, torch.nn.MaxPool2d)) for m in model.modules())


@pytest.mark.parametrize("name", ZOO)
def test_convert_and_simulate(name: str) -> None:
    torch.manual_seed(0)
    ann = randomize(build(name, in_channels=1, input_size=16))
    snn = snnconv.convert(ann, method="if")
    assert len(snn.neurons()) == sum(isinstance(m, QCFS) for m in ann.modules())
    x = torch.rand(2, 1, 16, 16)
    result = snnconv.simulate(snn, x, 3)
    assert result.logits.shape == (3, 2, 10) and torch.isfinite(result.logits).all()


@pytest.mark.parametrize("name", ["resnet50", "mobilenetv2"])
def test_stems(name: str) -> None:
    small = build(name, input_size=32)
    large = build(name, input_size=96)
    forced = build(name, input_size=32, stem="imagenet")
    first = {m: next(mm for mm in mod.modules() if isinstance(mm, torch.nn.Conv2d)) for m, mod in
             (("small", small), ("large", large), ("forced", forced))}  # fmt: skip
    assert first["small"].stride == (1, 1) and first["large"].stride == (2, 2) and first["forced"].stride == (2, 2)
    assert forced(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="stem"):
        build(name, stem="nope")


def test_depths_and_width() -> None:
    def n_conv(m):
        return sum(isinstance(x, torch.nn.Conv2d) and x.kernel_size != (1, 1) or
                   (isinstance(x, torch.nn.Conv2d) and x.stride == (1, 1)) for x in m.modules())  # fmt: skip

    r50, r101 = build("resnet50"), build("resnet101")
    assert sum(isinstance(m, Add) for m in r50.modules()) == 16
    assert sum(isinstance(m, Add) for m in r101.modules()) == 33
    assert n_conv(r101) > n_conv(r50)
    assert build("resnet50", width=0.25).head[-1].in_features == 2 * build("resnet50", width=0.125).head[-1].in_features
    assert sum(isinstance(m, Add) for m in build("mobilenetv2").modules()) == 10
