"""snnconv.fold_plan and ``tune_fold_bytes``: plans per fold budget (issue 8); results never depend on the plan."""

from __future__ import annotations

import importlib
import types

import pytest
import torch

import snnconv.fold_plan as fold_plan
from helpers import randomize
from snnconv import convert, simulate, tune_fold_bytes
from snnconv.errors import SimulationError
from snnconv.models import create

engine = importlib.import_module("snnconv.simulate")  # the module (the package exports the function)


def _resnet(batch: int = 3):
    torch.manual_seed(0)
    snn = convert(randomize(create("resnet20", num_classes=10, in_channels=3, input_size=16, width=0.25)))
    return snn, torch.randn(batch, 3, 16, 16)


def _sizes(snn, x):
    layout = engine.resolve_layout("auto", x.device)  # the key simulate keeps the sizes under
    program = engine._Program(snn.graph, layout)
    return program, fold_plan.known_sizes(snn, program, (tuple(x.shape), x.dtype, x.device, layout))


def test_budgets_with_the_same_plan_count_once():
    """The smallest of the budgets that plan alike stays (same work, less memory)."""
    snn, x = _resnet()
    simulate(snn, x, 9)
    program, sizes = _sizes(snn, x)
    budgets = (512, 8192, 16 * 1024, 32 * 1024, 64 * 1024, 2**30, 2**31)
    distinct = fold_plan.distinct_budgets(program, sizes, budgets, 9)
    assert distinct[0] == 512 and 8192 not in distinct and 2**31 not in distinct
    plans = [fold_plan.signature(fold_plan.plan_stages(program, sizes, b, 9)) for b in distinct]
    assert len(set(plans)) == len(plans) >= 4


@pytest.mark.parametrize("fastest", [0, 1, 2])
def test_tune_fold_bytes_returns_the_fastest_distinct_budget(monkeypatch, fastest):
    """Each distinct candidate is timed ``samples`` times; the least time wins (a fake clock decides here), and
    every timed run gives the bit-identical result of folding all steps at once."""
    snn, x = _resnet()
    budgets = (16 * 1024, 32 * 1024, 64 * 1024)  # three different plans for this small ResNet at T = 9
    full = simulate(snn, x, 9, chunk=None)
    fake = {b: (0.1 if i == fastest else 0.2 + i) for i, b in enumerate(budgets)}
    calls: list[int] = []
    clock = {"now": 0.0}
    real_simulate = engine.simulate

    def timed(snn_, x_, T, **kw):
        calls.append(kw["fold_bytes"])
        res = real_simulate(snn_, x_, T, **kw)
        torch.testing.assert_close(res.logits, full.logits, rtol=0, atol=0)
        assert all(torch.equal(res.spike_counts[k], full.spike_counts[k]) for k in full.spike_counts)
        clock["now"] += fake.get(kw["fold_bytes"], 0.0)
        return res

    monkeypatch.setattr(engine, "simulate", timed)
    monkeypatch.setattr(engine, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    assert tune_fold_bytes(snn, x, 9, candidates=budgets, samples=3) == budgets[fastest]
    assert calls[0] == min(budgets) and sorted(calls[1:]) == sorted(budgets * 3)


def test_tune_fold_bytes_has_nothing_to_choose_for_one_step_or_bit_serial_networks(monkeypatch):
    torch.manual_seed(0)
    ann = randomize(create("small_cnn", num_classes=10, in_channels=1, input_size=8, width=0.25))
    x = torch.randn(2, 1, 8, 8)
    bits = convert(ann, "bitserial")
    assert tune_fold_bytes(bits, x, bits.meta["steps"], candidates=(4096, 8192)) == 4096
    assert tune_fold_bytes(convert(ann), x, 1, candidates=(4096, 8192)) == 4096


@pytest.mark.parametrize("kw, pattern", [({"candidates": ()}, "candidates must be positive"),
                                         ({"candidates": (0, 4096)}, "candidates must be positive"),
                                         ({"samples": 0}, "samples must be a positive integer")])  # fmt: skip
def test_tune_fold_bytes_bad_arguments_are_explained(kw, pattern):
    snn, x = _resnet(batch=1)
    with pytest.raises(SimulationError, match=pattern):
        tune_fold_bytes(snn, x, 4, **kw)


def test_the_default_candidates_plan_differently_for_cifar_networks():
    """On the benchmark's CIFAR-shaped VGG-16 and ResNet-20 batches, 2, 4, 8 and 16 MB are different plans (a
    guard against candidates that silently collapse to one), and the default budget is one of them."""
    for name in ("vgg16", "resnet20"):
        torch.manual_seed(0)
        snn = convert(randomize(create(name, num_classes=10, in_channels=3, input_size=32)))
        x = torch.randn(32, 3, 32, 32)
        simulate(snn, x, 8)
        program, sizes = _sizes(snn, x)
        assert fold_plan.distinct_budgets(program, sizes, fold_plan.CANDIDATES, 8) == list(fold_plan.CANDIDATES)
    assert fold_plan.FOLD_BYTES in fold_plan.CANDIDATES
