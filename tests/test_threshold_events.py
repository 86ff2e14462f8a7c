"""Non-positive QCFS thresholds during training are recorded per layer and shown by ``snnconv inspect`` (issue 28)."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import snnconv
from snnconv.checkpoint import KIND_TRAIN, load_checkpoint
from snnconv.errors import SnnconvError
from snnconv.inspect import inspect_run
from snnconv.runs import build_model
from snnconv.threshold_events import EVENTS_FILE, ThresholdMonitor, format_events, read_events
from snnconv.train import TrainConfig, fit

pytestmark = pytest.mark.filterwarnings("ignore:QCFS. a threshold became non-positive:RuntimeWarning")


def two_layers() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), snnconv.QCFS(4, 2.0), nn.Linear(16, 16),
                         snnconv.QCFS(4, 2.0), nn.Linear(16, 10))  # fmt: skip


def test_monitor_records_first_step_and_recovery() -> None:
    model = two_layers()
    mon = ThresholdMonitor(model)
    assert mon.check(1, 1) == [] and mon.events == []
    with torch.no_grad():
        model[4].threshold.fill_(-0.25)
    with pytest.warns(RuntimeWarning, match=r"layer '4' became non-positive \(-0.25\) at epoch 1, step 2"):
        new = mon.check(1, 2)
    assert new == [{"layer": "4", "epoch": 1, "step": 2, "value": -0.25, "recovered_epoch": None,
                    "recovered_step": None}]  # fmt: skip
    assert mon.check(1, 3) == []  # still down: one event per excursion, not one per step
    with torch.no_grad():
        model[4].threshold.fill_(0.5)
    mon.check(2, 7)
    assert mon.events[0]["recovered_epoch"] == 2 and mon.events[0]["recovered_step"] == 7
    with torch.no_grad():
        model[2].threshold.fill_(float("nan"))
    with pytest.warns(RuntimeWarning, match="layer '2'"):
        mon.check(3, 1)
    assert mon.events[1]["value"] == "nan"
    assert "still non-positive" in format_events(mon.events) and "back above 0 at epoch 2" in format_events(mon.events)


def test_monitor_ignores_softplus_thresholds() -> None:
    model = nn.Sequential(nn.Linear(4, 4), snnconv.QCFS(4, 1.0, positive="softplus"))
    with torch.no_grad():
        model[1].threshold.fill_(-50.0)  # θ = softplus(λ) > 0
    assert ThresholdMonitor(model).check(1, 1) == []


@functools.cache
def digits() -> tuple[TensorDataset, TensorDataset]:
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    return TensorDataset(x[:1000], y[:1000]), TensorDataset(x[1000:], y[1000:])


def test_fit_records_events_in_the_run_and_inspect_shows_them(tmp_path) -> None:
    train, test = digits()
    config = TrainConfig(model="mlp", dataset="digits", epochs=2, batch_size=100, lr=0.05, device="cpu",
                         out=str(tmp_path))  # fmt: skip
    model = two_layers()

    def push_down(m, logits, y):  # a large gradient on the second layer's λ only, in the first epoch's third step
        push_down.calls += 1
        return (50.0 if push_down.calls == 3 else 0.0) * m[4].threshold

    push_down.calls = 0
    with pytest.warns(RuntimeWarning, match=r"layer '4' became non-positive .* at epoch 1, step 3"):
        fit(
            model,
            DataLoader(train, 100, shuffle=True),
            DataLoader(test, 500),
            config,
            tmp_path,
            extra_loss=push_down,
            callbacks=[lambda info: info["epoch"] == 1],
        )  # stop after epoch 1, as a killed run would
    events = read_events(tmp_path)
    assert [(e["layer"], e["epoch"], e["step"]) for e in events] == [("4", 1, 3)]
    assert events[0]["value"] < 0
    assert json.loads((tmp_path / EVENTS_FILE).read_text()) == events
    assert load_checkpoint(tmp_path / "last.pt", kind=KIND_TRAIN)["threshold_events"] == events
    # the resumed run keeps the record through its second epoch
    fit(two_layers(), DataLoader(train, 100, shuffle=True), DataLoader(test, 500), config, tmp_path, resume=True)
    assert read_events(tmp_path)[0] == events[0]


def test_inspect_run_prints_recorded_events(tmp_path) -> None:
    train, test = digits()
    config = TrainConfig(model="mlp", dataset="digits", epochs=1, batch_size=100, lr=0.05, device="cpu",
                         out=str(tmp_path))  # fmt: skip
    fit(build_model(config), DataLoader(train, 100), DataLoader(test, 500), config, tmp_path)
    assert read_events(tmp_path) == [] and not (tmp_path / EVENTS_FILE).exists()
    (tmp_path / EVENTS_FILE).write_text(json.dumps([{"layer": "hidden.act", "epoch": 3, "step": 17, "value": -0.5,
                                                      "recovered_epoch": None, "recovered_step": None}]))  # fmt: skip
    text = inspect_run(tmp_path, "last")
    assert "hidden.act: θ = -0.5 at epoch 3, step 17; still non-positive" in text


def test_a_floor_holds_the_threshold_and_records_one_excursion() -> None:
    model = two_layers()
    mon = ThresholdMonitor(model, floor=0.01)
    with torch.no_grad():
        model[4].threshold.fill_(-3.0)
    with pytest.warns(RuntimeWarning, match=r"layer '4' fell to -3.0 \(at or below the floor 0.01\) .* held at"):
        new = mon.check(2, 5)
    assert new == [{"layer": "4", "epoch": 2, "step": 5, "value": -3.0, "recovered_epoch": None,
                    "recovered_step": None, "floor": 0.01}]  # fmt: skip
    assert float(model[4].threshold.detach()) == pytest.approx(0.01) and float(model[2].threshold.detach()) == 2.0
    assert mon.check(2, 6) == [] and len(mon.events) == 1  # held at the floor: the same excursion
    with torch.no_grad():
        model[4].threshold.fill_(0.3)
    mon.check(2, 7)
    assert mon.events[0]["recovered_step"] == 7
    assert "(held at the floor 0.01)" in format_events(mon.events) and "back above the floor 0.01" in format_events(
        mon.events
    )


@pytest.mark.parametrize("floor", [0.0, 0.05])
def test_fit_with_a_floor_never_leaves_a_threshold_below_it(tmp_path, floor) -> None:
    """The same push as above, every step: without a floor λ ends far below 0, with one it never leaves it."""
    train, test = digits()
    config = TrainConfig(model="mlp", dataset="digits", epochs=1, batch_size=100, lr=0.05, device="cpu",
                         out=str(tmp_path), threshold_floor=floor)  # fmt: skip
    model = two_layers()
    with pytest.warns(RuntimeWarning, match="layer '4'"):
        fit(model, DataLoader(train, 100), DataLoader(test, 500), config, tmp_path,
            extra_loss=lambda m, logits, y: 50.0 * m[4].threshold)  # fmt: skip
    lam = float(model[4].threshold)
    if floor:
        assert lam == pytest.approx(floor) and read_events(tmp_path)[0]["floor"] == floor
    else:
        assert lam < -1 and "floor" not in read_events(tmp_path)[0]
    assert float(model[2].threshold) > 0


def test_threshold_floor_is_checked() -> None:
    with pytest.raises(SnnconvError, match="threshold_floor must be >= 0 and below threshold_init"):
        TrainConfig(model="mlp", dataset="digits", threshold_floor=8.0)
    with pytest.raises(SnnconvError, match="threshold_floor"):
        TrainConfig(model="mlp", dataset="digits", threshold_floor=-1.0)
