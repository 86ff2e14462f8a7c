"""snnconv.prepare: torchvision ReLU models → QCFS/AvgPool/Add models that convert and simulate (issue 9)."""

from __future__ import annotations

import copy
import operator
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import snnconv
from snnconv import QCFS, Add
from snnconv.convert import trace
from snnconv.errors import ConversionError
from snnconv.prepare import RELU_FUNCTIONS, RELU_METHODS

TORCHVISION = ("resnet18", "resnet34", "resnet50", "vgg16_bn", "mobilenet_v2")
FORBIDDEN_MODULES = (nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.AdaptiveMaxPool2d)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest


def assert_prepared(gm: nn.Module) -> None:
    g = trace(gm)
    for node in g.graph.nodes:
        if node.op == "call_module":
            assert not isinstance(g.get_submodule(node.target), FORBIDDEN_MODULES), node.target
        elif node.op == "call_function":
            assert node.target not in RELU_FUNCTIONS | {operator.add, operator.iadd, torch.add, F.max_pool2d}, node
        elif node.op == "call_method":
            assert node.target not in RELU_METHODS | {"add", "add_"}, node


def snapshot(model: nn.Module) -> tuple[list[type], dict[str, torch.Tensor]]:
    return [type(m) for m in model.modules()], copy.deepcopy(model.state_dict())


def assert_untouched(model: nn.Module, snap: tuple[list[type], dict[str, torch.Tensor]]) -> None:
    kinds, state = snap
    assert [type(m) for m in model.modules()] == kinds
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_models(name: str) -> None:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    snap = snapshot(model)
    x = torch.randn(1, 3, 32, 32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared = snnconv.prepare(model, act="qcfs", levels=4, threshold=8.0)
    pools = [n for n, m in model.named_modules() if isinstance(m, nn.MaxPool2d)]
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len([m for m in messages if "max pooling" in m]) == len(pools)
    assert all(any(f"'{p}'" in m for m in messages) for p in pools)
    assert_untouched(model, snap)
    assert_prepared(prepared)
    # module names are kept: every conv/linear of the model is still there under the same name
    names = dict(prepared.named_modules())
    for path, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert torch.equal(names[path].weight, m.weight), path
    n_relu_sites = sum(isinstance(m, QCFS) for m in prepared.modules())
    assert n_relu_sites >= sum(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in model.modules())
    if "resnet" in name or "mobilenet" in name:
        assert any(isinstance(m, Add) for m in prepared.modules())
    assert prepared(x).shape == (1, 10)
    snn = snnconv.convert(prepared, method="if")
    result = snnconv.simulate(snn, x, 2)
    assert result.logits.shape == (2, 1, 10) and torch.isfinite(result.logits).all()


class Functional(nn.Module):
    """ReLUs in every spelling, a shared ReLU module, functional max pooling and tensor additions."""

    def __init__(self, max_pool: bool = True) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 6, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.act6 = nn.ReLU6()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        a = F.relu(self.conv1(x))
        b = self.conv2(a)
        F.relu(b, inplace=True)  # in place: b is read below
        b += a
        c = self.relu(b).relu()
        c = torch.relu(self.conv2(c)) + c
        c = F.max_pool2d(c, 2) if self.max_pool else F.avg_pool2d(c, 2)
        d = self.act6(self.conv3(c))
        d = self.relu(d)
        d = torch.add(d, d.relu_())
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(d, 1), 1))


@pytest.mark.parametrize("act", ["qcfs", "csqcfs"])
def test_functional_spellings(act: str) -> None:
    torch.manual_seed(0)
    model = Functional().eval()
    x = torch.randn(2, 2, 8, 8)
    with pytest.warns(UserWarning, match="max_pool2d"):
        prepared = snnconv.prepare(model, act=act, levels=8, threshold=4.0)
    assert_prepared(prepared)
    qs = {n: m for n, m in prepared.named_modules() if isinstance(m, QCFS)}
    assert len(qs) == 8  # one module per call site
    assert {"relu", "relu_1", "act6"} <= set(qs)  # the shared module keeps its name at its first site
    if act == "csqcfs":
        assert qs["act6"].threshold.shape == (6,) and qs["relu"].threshold.shape == (4,)
    # with QCFS at a high resolution and a high threshold, the prepared model tracks the ReLU model
    avg = Functional(max_pool=False).eval()
    avg.load_state_dict(model.state_dict())
    fine = snnconv.prepare(avg, act="qcfs", levels=4096, threshold=6.0)
    torch.testing.assert_close(fine(x), avg(x), atol=0.01, rtol=0.01)
    assert sum(isinstance(m, Add) for m in prepared.modules()) == 3
    snn = snnconv.convert(prepared, method="if")
    assert snnconv.simulate(snn, x, 3).logits.shape == (3, 2, 3)


def test_channels_from_example_input() -> None:
    model = nn.Sequential(nn.Conv2d(1, 5, 3), nn.Flatten(), nn.ReLU(), nn.Linear(5 * 4 * 4, 2))
    with pytest.raises(ValueError, match="example_input"):
        snnconv.prepare(nn.Sequential(nn.Flatten(), nn.ReLU()), act="csqcfs")
    gm = snnconv.prepare(model, act="csqcfs", example_input=torch.randn(1, 1, 6, 6))
    assert gm.get_submodule("2").threshold.shape == (80,)


def test_data_dependent_control_flow_is_rejected() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            y = self.fc(x)
            if y.sum() > 0:
                return F.relu(y)
            return y

    with pytest.raises(ConversionError, match="data-dependent"):
        snnconv.prepare(Branchy())


def test_train_mode_is_kept() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU()).train()
    assert snnconv.prepare(model).training
    assert not snnconv.prepare(model.eval()).training
