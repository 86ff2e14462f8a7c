"""`snnconv evaluate` / `demo` say in one line when a plain IF SNN loses more than 3 points at T <= 4 (issue 28)."""

from __future__ import annotations

from snnconv.cli import low_T_note, print_report


def report(snn: dict[int, float], ann: float = 92.0, method: str = "if") -> dict:
    return {"model": "vgg16", "dataset": "fashion-mnist", "act": "qcfs", "levels": 4, "method": method,
            "samples": 10, "seconds": 1.0, "T": sorted(snn), "ann_accuracy": ann,
            "snn_accuracy": {str(t): a for t, a in snn.items()},
            "total_spike_rate": {str(t): 0.1 for t in snn}, "spike_rate": {"a": 0.1}}  # fmt: skip


def test_note_names_the_worst_low_T_gap() -> None:
    note = low_T_note(report({1: 65.6, 2: 80.1, 4: 84.5, 8: 88.5}))
    assert note is not None and "26.4 points below the ANN at T = 1" in note and "--method cos" in note


def test_no_note_within_three_points_or_only_beyond_T4() -> None:
    assert low_T_note(report({1: 89.1, 4: 91.0})) is None  # 2.9 points
    assert low_T_note(report({8: 80.0, 16: 85.0})) is None  # the gap is above T = 4 only
    assert low_T_note(report({1: 50.0, 4: 60.0}, method="cos")) is None  # calibrated methods: not a plain IF net


def test_print_report_prints_the_note(capsys) -> None:
    print_report(report({1: 65.6, 4: 84.5}))
    out = capsys.readouterr().out
    assert out.count("note: the plain IF SNN") == 1
    print_report(report({1: 91.5, 4: 92.0}))
    assert "note:" not in capsys.readouterr().out
