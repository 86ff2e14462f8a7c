"""The command line: listing, argument validation, clear one-line errors."""

from __future__ import annotations

import json

import pytest

from snnconv.cli import build_parser, main


def test_list_shows_registries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "vgg16" in out and "fashion-mnist" in out and "if" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "run", "--T", "1,x"], "--T must be comma-separated integers"),
        (["evaluate", "run", "--T", "0,4"], "positive integers"),
        (["train", "--model", "nope", "--out", "r"], "invalid choice: 'nope'"),
        (["train", "--dataset", "imagenet21k", "--out", "r"], "invalid choice"),
        (["train", "--levels", "0", "--out", "r"], "expected a positive integer"),
        (["evaluate", "run", "--method", "magic"], "invalid choice: 'magic'"),
    ],
)
def test_bad_arguments_are_rejected_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_run_directory_is_one_clear_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "last.pt not found" in err and "snnconv train" in err and "Traceback" not in err


def test_train_with_qcfs_regularizer_on_digits(tmp_path, capsys):
    run = tmp_path / "reg"
    argv = ["train", "--model", "mlp", "--dataset", "digits", "--epochs", "1", "--lr", "0.05", "--levels", "4",
            "--threshold-init", "4", "--qcfs-reg", "0.1", "--out", str(run)]  # fmt: skip
    assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["qcfs_reg"] == 0.1
    assert "best test accuracy" in capsys.readouterr().out


def test_two_stage_then_calibrated_methods(tmp_path):
    """train --two-stage (seed 002 Algorithm 1), then evaluate with COS, SRP and binary spikes."""
    out = tmp_path / "cs"
    argv = ["train", "--model", "mlp", "--dataset", "digits", "--epochs", "1", "--lr", "0.05", "--two-stage",
            "--finetune-epochs", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    stage2 = out / "stage2"
    assert json.loads((stage2 / "config.json").read_text())["act"] == "csqcfs"
    for extra in (["--method", "cos", "--rho", "2"], ["--method", "srp", "--tau", "2"], ["--binary-spikes"]):
        report_path = tmp_path / "r.json"
        assert main(["evaluate", str(stage2), "--T", "2,4", "--json", str(report_path), *extra]) == 0
        report = json.loads(report_path.read_text())
        assert report["method"] == (extra[1] if extra[0] == "--method" else "if")
        assert set(report["snn_accuracy"]) == {"2", "4"}
    assert json.loads(report_path.read_text())["options"] == {"binary_spikes": True}


def test_qat_train_then_calif_evaluate_and_refusals(tmp_path, capsys):
    """train --method qat (seed 003) → evaluate --method calif; QCFS-only commands refuse the QAT run clearly."""
    run = tmp_path / "qat"
    argv = ["train", "--method", "qat", "--bits", "8", "--model", "mlp", "--dataset", "digits", "--epochs", "2",
            "--lr", "0.05", "--no-augment", "--freeze-observer", "1", "--out", str(run)]  # fmt: skip
    assert main(argv) == 0
    assert "--method calif" in capsys.readouterr().out
    assert json.loads((run / "qat.json").read_text())["bits"] == 8
    report_path = tmp_path / "calif.json"
    argv = ["evaluate", str(run), "--method", "calif", "--T", "8,128", "--subset", "100", "--json", str(report_path),
            "--max-spikes-per-step", "burst"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["method"] == "calif" and report["samples"] == 100 and "QAT (fake-quantized) ANN" in out
    assert report["disagreements"]["128"] == 0  # exact input codes, T ≥ every code: SNN = QAT model
    assert report_path.with_suffix(".png").stat().st_size > 0
    for cmd in (["evaluate", str(run)], ["analyze", str(run)], ["export-nir", str(run), str(tmp_path / "x.nir")]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert "QAT run" in err and "--method calif" in err and "Traceback" not in err


def test_export_nir_round_trips(tmp_path, capsys):
    pytest.importorskip("nir")
    import torch

    from snnconv import convert, simulate
    from snnconv.nir_io import import_nir
    from snnconv.runs import load_run

    run = tmp_path / "r"
    argv = ["train", "--model", "small_cnn", "--dataset", "digits", "--epochs", "1", "--width", "0.25",
            "--lr", "0.05", "--out", str(run)]  # fmt: skip
    assert main(argv) == 0
    path = tmp_path / "net.nir"
    assert main(["export-nir", str(run), str(path)]) == 0
    assert "IF" in capsys.readouterr().out
    ann, _ = load_run(run)
    x = torch.rand(5, 1, 8, 8)
    a, b = simulate(convert(ann), x, 4), simulate(import_nir(path), x, 4)
    assert torch.equal(a.logits, b.logits)
