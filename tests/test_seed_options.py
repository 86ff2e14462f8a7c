"""Issue 19's options on the command line: validated, recorded in the run, old runs evaluated as before."""

from __future__ import annotations

import json

import pytest

from snnconv.cli import build_parser, main


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["train", "--qcfs-reg-form", "exact", "--out", "r"], ["--qcfs-reg-form", "seed", "clipped", "raw"]),
        (["evaluate", "r", "--method", "bitserial", "--extra-steps", "zeros"], ["--extra-steps", "refine", "pad"]),
        (["evaluate", "r", "--method", "cos", "--cos-shift", "huge"], ["--cos-shift", "reference", "theta"]),
        (["evaluate", "r", "--method", "calif", "--max-spikes-per-step", "0"], ["--max-spikes-per-step", "burst"]),
        (["analyze", "r", "--prices", "7nm"], ["--prices", "45nm", "seed001", "seed004"]),
    ],
)
def test_new_options_name_the_argument_and_allowed_values(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert all(w in err for w in words), err


def test_parser_defaults_defer_to_the_run_and_keep_the_old_flag():
    p = build_parser()
    ev = p.parse_args(["evaluate", "r"])
    assert ev.extra_steps is None and ev.cos_shift is None and ev.max_spikes_per_step == "run"
    assert p.parse_args(["evaluate", "r", "--max-spikes-per-step", "burst"]).max_spikes_per_step is None
    assert p.parse_args(["analyze", "r", "--energy-table", "seed001"]).prices == "seed001"  # the old name still works
    assert p.parse_args(["train", "--out", "r"]).qcfs_reg_form == "raw"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("seedopts") / "run"
    argv = ["train", "--model", "mlp", "--dataset", "digits", "--epochs", "1", "--lr", "0.05", "--levels", "3",
            "--threshold-init", "4", "--qcfs-reg", "0.1", "--qcfs-reg-form", "seed", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    return out


def test_run_records_the_seed_options(run):
    config = json.loads((run / "config.json").read_text())
    assert config["qcfs_reg"] == 0.1 and config["qcfs_reg_form"] == "seed"
    assert (config["extra_steps"], config["cos_shift"], config["max_spikes_per_step"]) == ("refine", "reference", 1)


def test_bitserial_extra_steps_from_the_run_or_the_flag(run, tmp_path, capsys):
    path = tmp_path / "b.json"
    base = ["evaluate", str(run), "--method", "bitserial", "--T", "2,4", "--subset", "64", "--json", str(path)]
    assert main(base) == 0  # L = 3: exact T = 2; the run records "refine"
    report = json.loads(path.read_text())
    assert report["extra_steps"] == "refine" and report["exact_T"] == 2
    assert report["disagreements"]["4"] == 0  # the refined SNN equals its refined QANN
    assert main([*base, "--extra-steps", "pad"]) == 0
    pad = json.loads(path.read_text())
    assert pad["extra_steps"] == "pad" and pad["snn_accuracy"]["4"] == pad["ann_accuracy"]  # SNN == QANN == ANN
    assert "extra steps: pad" in capsys.readouterr().out


def test_cos_shift_and_prices(run, tmp_path, capsys):
    path = tmp_path / "c.json"
    assert main(["evaluate", str(run), "--method", "cos", "--rho", "2", "--T", "2", "--subset", "32",
                 "--json", str(path)]) == 0  # fmt: skip
    assert json.loads(path.read_text())["options"] == {"rho": 2, "cos_shift": "reference"}
    assert main(["evaluate", str(run), "--method", "cos", "--rho", "2", "--T", "2", "--subset", "32",
                 "--cos-shift", "theta", "--json", str(path)]) == 0  # fmt: skip
    assert json.loads(path.read_text())["options"]["cos_shift"] == "theta"
    for argv, message in (
        (["--cos-shift", "theta"], "--cos-shift applies to COS calibration"),
        (["--extra-steps", "pad"], "--extra-steps applies to --method bitserial, not 'if'"),
        (["--max-spikes-per-step", "1"], "--max-spikes-per-step applies to --method calif"),
    ):
        assert main(["evaluate", str(run), "--T", "2", *argv]) == 2
        assert message in capsys.readouterr().err
    assert main(["analyze", str(run), "--T", "2", "--batches", "1", "--batch-size", "8", "--prices", "seed004"]) == 0
    out = capsys.readouterr().out
    assert "seed004 table" in out and "GSOP" in out
    assert json.loads((run / "analyze_if_T2.json").read_text())["energy"]["prices_pJ"]["ac"] == 0.077
