"""Rate-norm conversion of ReLU networks (issue 9): accuracy approaches the ANN's at large T, not at T=1."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import snnconv
from snnconv import IFNeuron
from snnconv.errors import ConversionError


@pytest.fixture(scope="module")
def trained():
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    train, test = perm[:1400], perm[1400:]
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is much faster on a shared CPU
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(15):
        for idx in torch.randperm(len(train), generator=g).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[train[idx]]), y[train[idx]]).backward()
            opt.step()
    torch.set_num_threads(threads)
    model.eval()
    with torch.no_grad():
        acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    loader = [(x[train[i : i + 100]], y[train[i : i + 100]]) for i in range(0, 800, 100)]
    return model, acc, loader, x[test], y[test]


@pytest.mark.parametrize("mode", ["max", "percentile"])
def test_accuracy_approaches_ann(trained, mode):
    model, ann_acc, loader, xt, yt = trained
    assert ann_acc > 0.9
    snn = snnconv.convert(model, method="ratenorm", mode=mode, percentile=99.9, calibration=loader, batches=4)
    assert len(snn.neurons()) == 2 and all(isinstance(n, IFNeuron) and n.phi == 0.5 for n in snn.neurons().values())
    assert snn.meta["method"] == "ratenorm" and set(snn.meta["scales"]) == set(snn.neurons())
    result = snnconv.simulate(snn, xt, 256)
    acc = result.correct(yt).float() / len(yt)
    print(f"{mode}: ANN {ann_acc:.3f}  SNN T=1 {acc[0]:.3f}  T=8 {acc[7]:.3f}  T=64 {acc[63]:.3f}  T=256 {acc[-1]:.3f}")
    assert acc[-1] >= ann_acc - 0.03
    assert acc[0] < ann_acc - 0.2


def test_percentile_below_max(trained):
    model, _, loader, _, _ = trained
    a = snnconv.convert(model, method="ratenorm", mode="max", calibration=loader[0][0])
    b = snnconv.convert(model, method="ratenorm", mode="percentile", percentile=99.0, calibration=loader[0][0])
    assert all(b.meta["scales"][k] < a.meta["scales"][k] for k in a.meta["scales"])
    for name, neuron in a.neurons().items():
        assert float(neuron.threshold) == pytest.approx(a.meta["scales"][name])


@pytest.mark.parametrize(
    "model, match",
    [
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU6(), nn.Linear(4, 2)), "ReLU6.*not a ReLU"),
        (nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2)), "GELU.*not a ReLU"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()), "average pooling"),
        (nn.Sequential(nn.Linear(4, 2)), "no ReLU"),
    ],
)
def test_rejects_non_relu(model, match):
    with pytest.raises(ConversionError, match=match):
        snnconv.convert(model, method="ratenorm", calibration=torch.randn(2, 1, 6, 6))


def test_functional_and_shared_relus():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3, self.fc4 = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2), nn.Linear(4, 8)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.fc3(self.relu(self.fc2(F.relu(self.fc1(x))) + self.relu(self.fc4(x))))

    snn = snnconv.convert(Net(), method="ratenorm", calibration=torch.randn(16, 4))
    assert len(snn.neurons()) == 3
    assert snnconv.simulate(snn, torch.randn(3, 4), 4).logits.shape == (4, 3, 2)
