"""``snnconv report``: plots and one self-contained HTML page from what evaluate/analyze/sweep wrote."""

from __future__ import annotations

import pytest

from snnconv.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_of_a_run_and_of_a_sweep(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--model", "small_cnn", "--dataset", "digits", "--lr", "0.05", "--threshold-init", "4"]
    assert main(["train", *common, "--epochs", "2", "--out", str(run)]) == 0
    assert main(["evaluate", str(run), "--T", "1,2,4,8"]) == 0
    assert main(["evaluate", str(run), "--method", "bitserial", "--T", "2,3"]) == 0
    assert main(["analyze", str(run), "--T", "4", "--batches", "1", "--batch-size", "32"]) == 0
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # accuracy, spike rates, errors, energy
    assert "Bit-serial SNN vs QANN" in page and "Accuracy vs T" in page
    pngs = sorted((run / "report").glob("*.png"))
    assert len(pngs) == 4 and all(p.read_bytes()[:8] == PNG and p.stat().st_size > 5000 for p in pngs)

    sweep = tmp_path / "sweep"
    argv = ["sweep", *common, "--epochs", "1", "--L", "2,4", "--wq", "0,0.1", "--T", "1,2,4", "--out", str(sweep)]
    assert main(argv) == 0
    assert main(["report", str(sweep)]) == 0
    page = (sweep / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "L × T" in page  # one heatmap per w_q


def test_report_of_an_empty_directory_is_one_clear_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "nothing to report" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["nope"])
def test_report_of_a_missing_directory(tmp_path, capsys, missing):
    assert main(["report", str(tmp_path / missing)]) == 2
    assert "is not a directory" in capsys.readouterr().err
