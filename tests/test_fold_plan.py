"""snnconv.fold_plan: the fold budget chosen online on CPU (issue 8); results never depend on the plan."""

from __future__ import annotations

import importlib

import pytest
import torch

import snnconv.fold_plan as fold_plan
from helpers import randomize
from snnconv import convert, simulate, warm_up
from snnconv.fold_plan import SAMPLES, FoldTuner
from snnconv.models import create


def test_tuner_tries_every_candidate_then_keeps_the_fastest():
    t = FoldTuner((1, 2, 3))
    fake = {1: 0.5, 2: 0.2, 3: 0.9}
    order = []
    while t.best is None:
        b = t.next_budget()
        order.append(b)
        t.record(b, fake[b])
    assert sorted(order) == sorted([1, 2, 3] * SAMPLES)  # round robin, SAMPLES timings each
    assert t.best == 2 and t.next_budget() == 2
    t.record(2, 100.0)  # settled: later timings change nothing
    assert t.best == 2
    assert FoldTuner((7,)).best == 7  # one distinct plan: nothing to tune


def test_candidates_with_the_same_plan_are_tried_once(monkeypatch):
    """Budgets that give the same stages are one candidate (the smallest: same work, less memory)."""
    torch.manual_seed(0)
    snn = convert(randomize(create("small_cnn", num_classes=10, in_channels=1, input_size=8, width=0.25)))
    x = torch.randn(2, 1, 8, 8)
    monkeypatch.setattr(fold_plan, "CANDIDATES", (2**30, 2**31, 2**32))  # all fold everything
    simulate(snn, x, 5)
    simulate(snn, x, 5)
    key = (tuple(x.shape), x.dtype, x.device, "auto")
    assert fold_plan._KNOWN[snn][key][2][5].candidates == (2**30,)
    assert warm_up(snn, x, 5) == 1


@pytest.mark.parametrize("fastest", [0, 1, 2])
def test_online_tuning_settles_on_the_fastest_budget_with_identical_results(monkeypatch, fastest):
    """The first calls of a shape and T try each candidate budget; every call gives the bit-identical result of
    folding all steps at once, and later calls use the budget that was fastest (timings faked here)."""
    engine = importlib.import_module("snnconv.simulate")
    budgets = (16 * 1024, 32 * 1024, 64 * 1024)  # three distinct plans for this small ResNet at T = 9
    monkeypatch.setattr(fold_plan, "CANDIDATES", budgets)
    fake = {b: (0.1 if i == fastest else 0.2 + i) for i, b in enumerate(budgets)}
    real_record = FoldTuner.record
    monkeypatch.setattr(FoldTuner, "record", lambda self, b, s: real_record(self, b, fake[b]))
    used = []
    real_plan = engine._plan_stages
    monkeypatch.setattr(engine, "_plan_stages", lambda p, sizes, fb, n: used.append(fb) or real_plan(p, sizes, fb, n))
    torch.manual_seed(0)
    snn = convert(randomize(create("resnet20", num_classes=10, in_channels=3, input_size=16, width=0.25)))
    x = torch.randn(3, 3, 16, 16)
    full = simulate(snn, x, 9, chunk=None)
    runs = [simulate(snn, x, 9) for _ in range(1 + len(budgets) * SAMPLES + 2)]
    assert used[0] == fold_plan.FOLD_BYTES  # the measuring call
    assert sorted(used[1 : 1 + len(budgets) * SAMPLES]) == sorted(budgets * SAMPLES)
    assert used[-2:] == [budgets[fastest]] * 2
    assert warm_up(snn, x, 9) == 1
    for run in runs:
        torch.testing.assert_close(run.logits, full.logits, rtol=0, atol=0)
        assert all(torch.equal(run.spike_counts[k], full.spike_counts[k]) for k in full.spike_counts)


def test_explicit_fold_bytes_is_never_tuned(monkeypatch):
    engine = importlib.import_module("snnconv.simulate")
    used = []
    real_plan = engine._plan_stages
    monkeypatch.setattr(engine, "_plan_stages", lambda p, sizes, fb, n: used.append(fb) or real_plan(p, sizes, fb, n))
    torch.manual_seed(0)
    snn = convert(randomize(create("resnet20", num_classes=10, in_channels=3, input_size=16, width=0.25)))
    x = torch.randn(2, 3, 16, 16)
    for _ in range(5):
        simulate(snn, x, 6, fold_bytes=4096)
    assert used == [4096] * 5


def test_the_reference_candidates_plan_differently_for_cifar_networks():
    """On CIFAR-shaped VGG-16 and ResNet-20 batches (the benchmark's), 2, 4 and 8 MB are three different plans,
    so the tuner has a real choice (a guard against candidates that silently collapse to one)."""
    engine = importlib.import_module("snnconv.simulate")
    for name in ("vgg16", "resnet20"):
        torch.manual_seed(0)
        snn = convert(randomize(create(name, num_classes=10, in_channels=3, input_size=32)))
        x = torch.randn(32, 3, 32, 32)
        simulate(snn, x, 8)
        program = engine._Program(snn.graph, "auto")
        key = (tuple(x.shape), x.dtype, x.device, "auto")
        sizes = fold_plan.known_sizes(snn, program, key)
        assert fold_plan.tuner(snn, program, key, sizes, 8).candidates == fold_plan.CANDIDATES, name


def test_warm_up_returns_at_once_where_nothing_is_tuned():
    """Bit-serial networks fire after all T inputs (no staged folding): one call; T = 1 has one plan: two."""
    torch.manual_seed(0)
    ann = randomize(create("small_cnn", num_classes=10, in_channels=1, input_size=8, width=0.25))
    x = torch.randn(2, 1, 8, 8)
    bits = convert(ann, "bitserial")
    assert warm_up(bits, x, bits.meta["steps"]) == 1
    assert warm_up(convert(ann), x, 1) == 2
