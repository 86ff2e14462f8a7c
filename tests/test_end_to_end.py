"""End to end on real Fashion-MNIST: train a QCFS CNN once, then convert it with each method and compare."""

from __future__ import annotations

import json

import pytest

from snnconv.cli import main
from snnconv.data import DatasetNotFoundError, get_dataset


def _have_fashion_mnist() -> bool:
    try:
        get_dataset("fashion-mnist", train=False)
    except DatasetNotFoundError:
        return False
    return True


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not _have_fashion_mnist(), reason="Fashion-MNIST missing: apt-get install dataset-fashion-mnist"
    ),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """small_cnn, QCFS with L = 7 levels (= 2^3 - 1: exact bit-serial conversion with T = 3), 2 epochs, 12k images."""
    run = tmp_path_factory.mktemp("e2e") / "run"
    code = main([
        "train", "--model", "small_cnn", "--dataset", "fashion-mnist", "--levels", "7", "--epochs", "2",
        "--subset", "12000", "--lr", "0.05", "--threshold-init", "4", "--batch-size", "128", "--out", str(run),
    ])  # fmt: skip
    assert code == 0
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file() and (run / "config.json").is_file()
    return run


def test_if_conversion_matches_ann_at_T32(run, tmp_path, capsys):
    out_json = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--T", "1,2,4,8,16,32", "--subset", "2000", "--json", str(out_json)]) == 0
    report = json.loads(out_json.read_text())
    for key in ("ann_accuracy", "snn_accuracy", "spike_rate", "method", "levels", "model", "dataset"):
        assert key in report
    assert report["method"] == "if" and report["levels"] == 7 and report["model"] == "small_cnn"
    ann, snn = report["ann_accuracy"], {int(t): a for t, a in report["snn_accuracy"].items()}
    assert sorted(snn) == [1, 2, 4, 8, 16, 32]
    assert ann > 75.0, ann  # the QCFS ANN learned something
    assert abs(snn[32] - ann) <= 2.0, (snn, ann)  # the bar: within 2 points at T = 32
    assert snn[32] > snn[1]
    assert all(0.0 < r < 1.0 for r in report["spike_rate"].values())
    printed = capsys.readouterr().out
    assert "SNN acc %" in printed and "spike rate" in printed
    assert out_json.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_analyze_reports_errors_spikes_energy(run, capsys):
    assert main(["analyze", str(run), "--T", "4", "--batches", "1", "--batch-size", "64"]) == 0
    analysis = json.loads((run / "analyze_if_T4.json").read_text())
    assert set(analysis) >= {"errors", "spikes", "energy"}
    printed = capsys.readouterr().out
    assert "unevenness" in printed and "spike_rate=" in printed and "E_ANN / E_SNN" in printed


@pytest.mark.parametrize(("dtype_flag", "max_disagreements"), [(["--float64"], 0), ([], 10)])
def test_bitserial_equals_qann_on_all_test_images(run, tmp_path, dtype_flag, max_disagreements):
    """T = log2(L + 1) = 3: same class as the QANN on all 10,000 images in float64, ≥ 99.9 % in float32."""
    out = tmp_path / "bits.json"
    assert main(["evaluate", str(run), "--method", "bitserial", "--T", "3", "--json", str(out), *dtype_flag]) == 0
    report = json.loads(out.read_text())
    assert report["samples"] == 10_000 and report["exact_T"] == 3
    assert report["disagreements"]["3"] <= max_disagreements, report["disagreements"]
    assert report["snn_accuracy"]["3"] == pytest.approx(report["qann_accuracy"]["3"], abs=0.1)
    # with T = exact bits and steps = T the QANN is the ANN itself
    assert report["qann_accuracy"]["3"] == pytest.approx(report["ann_accuracy"], abs=1e-9)


def test_bitserial_ablations_never_help(run, tmp_path, capsys):
    out = tmp_path / "abl.json"
    argv = ["evaluate", str(run), "--method", "bitserial", "--T", "2,3", "--subset", "1000", "--ablation", "all"]
    assert main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    full = report["snn_accuracy"]["3"]
    assert report["disagreements"]["3"] == 0
    for name, r in report["ablations"].items():  # at T = log2(L+1) each switched-off component costs accuracy
        assert r["disagreements"]["3"] > 0, name
        assert r["snn_accuracy"]["3"] <= full, (name, r["snn_accuracy"]["3"], full)
    assert "ablations (seed 001 Table 4)" in capsys.readouterr().out
