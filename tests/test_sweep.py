"""Sweeps: every cell trained and evaluated once, tidy outputs, and a killed sweep resumes without redoing cells."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import snnconv.runs
from snnconv.cli import main

ARGS = ["--model", "mlp", "--dataset", "digits", "--epochs", "3", "--lr", "0.05", "--threshold-init", "4",
        "--T", "1,2,4"]  # fmt: skip


def test_sweep_writes_tables_and_skips_finished_cells(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", *ARGS, "--L", "2,4", "--wq", "0,0.1", "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert len(rows) == 2 * 2 * 3  # cells × T
    assert {(r["levels"], r["qcfs_reg"]) for r in rows} == {("2", "0.0"), ("2", "0.1"), ("4", "0.0"), ("4", "0.1")}
    tables = (out / "tables.md").read_text()
    assert "L × T" in tables and "w_q × T" in tables
    assert "| L=4 |" in capsys.readouterr().out
    before = (out / "results.json").read_text()

    def refuse(*a, **k):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(snnconv.runs, "train_run", refuse)
    assert main(["sweep", *ARGS, "--L", "2,4", "--wq", "0,0.1", "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text()) == json.loads(before)


def test_different_arguments_do_not_mix_into_an_existing_sweep(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", *ARGS, "--L", "2", "--out", str(out)]) == 0
    assert main(["sweep", *ARGS, "--L", "2,8", "--out", str(out)]) == 2
    assert "holds a different sweep" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_sweep_resumes_without_redoing_finished_cells(tmp_path):
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "snnconv", "sweep", *ARGS, "--L", "2,4,8", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "cells" / "L2_wq0" / "result.json"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists(), "the first cell never finished"
    finished = {p: (p.stat().st_mtime_ns, p.read_text()) for p in out.glob("cells/*/result.json")}
    assert main(["sweep", *ARGS, "--L", "2,4,8", "--out", str(out)]) == 0
    for p, (mtime, text) in finished.items():  # cells finished before the kill were not redone
        assert p.stat().st_mtime_ns == mtime and p.read_text() == text
    results = json.loads((out / "results.json").read_text())
    assert sorted(r["levels"] for r in results) == [2, 4, 8]


def test_a_sweep_record_matches_across_new_config_fields_and_runtime_keys():
    """A sweep saved before TrainConfig gained a (defaulted) field, or run on another device, still resumes."""
    import dataclasses

    from snnconv.sweep import SweepSpec, _comparable
    from snnconv.train import TrainConfig

    base = {k: v for k, v in TrainConfig(model="mlp", dataset="digits").to_dict().items() if k not in ("out", "log")}
    spec = dataclasses.asdict(SweepSpec(levels=[2, 4], qcfs_reg=[0.0], T=[1, 2], base=base))
    older = {**spec, "base": {k: v for k, v in base.items() if k != "label_smoothing"} | {"device": "cuda"}}
    assert _comparable(older) == _comparable(spec)
    changed = {**spec, "base": {**base, "lr": base["lr"] * 2}}
    assert _comparable(changed) != _comparable(spec)
