"""End to end on real Fashion-MNIST: train a QCFS CNN, convert it, and compare the SNN with its ANN."""

from __future__ import annotations

import json

import pytest

from snnconv.cli import main
from snnconv.data import DatasetNotFoundError, dataset_info, get_dataset


def _have_fashion_mnist() -> bool:
    try:
        get_dataset("fashion-mnist", train=False)
    except DatasetNotFoundError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _have_fashion_mnist(), reason="Fashion-MNIST missing: sudo apt-get install dataset-fashion-mnist"
)


@pytest.mark.slow
def test_train_convert_evaluate_on_fashion_mnist(tmp_path, capsys):
    run = tmp_path / "run"
    assert dataset_info("fashion-mnist").num_classes == 10
    code = main([
        "train", "--model", "small_cnn", "--dataset", "fashion-mnist", "--levels", "4", "--epochs", "2",
        "--subset", "12000", "--lr", "0.05", "--threshold-init", "4", "--batch-size", "128", "--out", str(run),
    ])  # fmt: skip
    assert code == 0
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file() and (run / "config.json").is_file()
    out_json = tmp_path / "eval.json"
    code = main(["evaluate", str(run), "--T", "1,2,4,8,16,32", "--subset", "2000", "--json", str(out_json)])
    assert code == 0
    report = json.loads(out_json.read_text())
    for key in ("ann_accuracy", "snn_accuracy", "spike_rate", "method", "levels", "model", "dataset"):
        assert key in report
    assert report["method"] == "if" and report["levels"] == 4 and report["model"] == "small_cnn"
    ann, snn = report["ann_accuracy"], {int(t): a for t, a in report["snn_accuracy"].items()}
    assert sorted(snn) == [1, 2, 4, 8, 16, 32]
    assert ann > 75.0, ann  # the QCFS ANN learned something
    assert abs(snn[32] - ann) <= 2.0, (snn, ann)  # the bar: within 2 points at T = 32
    assert snn[32] > snn[1]
    assert all(0.0 < r < 1.0 for r in report["spike_rate"].values())
    printed = capsys.readouterr().out
    assert "SNN acc %" in printed and "spike rate" in printed
    assert out_json.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the analysis layer on the same run: error decomposition, spike rates, energy
    assert main(["analyze", str(run), "--T", "4", "--batches", "1", "--batch-size", "64"]) == 0
    analysis = json.loads((run / "analyze_if_T4.json").read_text())
    assert set(analysis) >= {"errors", "spikes", "energy"}
    printed = capsys.readouterr().out
    assert "unevenness" in printed and "spike_rate=" in printed and "E_ANN / E_SNN" in printed
