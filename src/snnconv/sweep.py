"""Sweeps over levels L and regularizer weight w_q: train + evaluate every cell, resumable (seed 000 tables).

Every cell trains into ``OUT/cells/L{L}_wq{w}/`` (itself resumable from ``last.pt``) and, once evaluated, writes
``result.json`` there atomically; a restarted sweep skips finished cells and resumes unfinished ones. The sweep
writes ``results.csv`` (one row per cell and T), ``results.json`` and ``tables.md`` (the L×T table per w_q and
the w_q×T table per L, as in seed 000 Tables 3.1 and 4.1).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from snnconv import jsonio
from snnconv._deps import tqdm
from snnconv.errors import SnnconvError
from snnconv.rundir import RUNTIME_KEYS
from snnconv.train import TrainConfig


@dataclass
class SweepSpec:
    """What to sweep; the TrainConfig fields shared by every cell come from ``base``."""

    levels: list[int]
    qcfs_reg: list[float]
    T: list[int]
    base: dict = field(default_factory=dict)  #: TrainConfig fields (model, dataset, epochs, width, ...)
    eval_subset: int | None = None
    method: str = "if"

    def cells(self) -> list[tuple[int, float]]:
        return [(L, w) for L in self.levels for w in self.qcfs_reg]


def cell_name(levels: int, wq: float) -> str:
    return f"L{levels}_wq{wq:g}"


def _write_json(path: Path, data: object) -> None:
    jsonio.write(path, data)


def _comparable(spec: dict) -> dict:
    """A sweep record without the run-time keys, its base filled with today's TrainConfig defaults.

    So a sweep resumes after snnconv gained a config field (with a default) or when only device/log/workers change.
    """
    base = {k: v for k, v in spec.get("base", {}).items() if k not in RUNTIME_KEYS}
    defaults = {k: v for k, v in TrainConfig(model="", dataset="").to_dict().items() if k not in RUNTIME_KEYS}
    return {**spec, "base": {**defaults, **base}}


def run_sweep(spec: SweepSpec, out: str | os.PathLike, *, root: str | None = None, progress: bool = True) -> list[dict]:
    """Train and evaluate every (L, w_q) cell not finished yet; returns all cells' results."""
    from snnconv.runs import evaluate_run, train_run

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "sweep.json"
    if spec_path.exists():
        saved = json.loads(spec_path.read_text())
        if _comparable(saved) != _comparable(dataclasses.asdict(spec)):
            raise SnnconvError(
                f"{out} holds a different sweep ({spec_path}); use the same arguments to resume, or another --out"
            )
    else:
        _write_json(spec_path, dataclasses.asdict(spec))
    results = []
    bar = tqdm(spec.cells(), desc="sweep cells", disable=not progress)
    for levels, wq in bar:
        cell = out / "cells" / cell_name(levels, wq)
        done = cell / "result.json"
        bar.set_postfix(cell=cell.name)
        if done.is_file():
            results.append(json.loads(done.read_text()))
            continue
        config = TrainConfig(**{**spec.base, "levels": levels, "qcfs_reg": wq, "out": str(cell)})
        train_run(config, resume=(cell / "last.pt").is_file(), root=root)
        report = evaluate_run(cell, spec.T, method=spec.method, subset=spec.eval_subset, root=root, progress=False)
        report.update(levels=levels, qcfs_reg=wq)
        _write_json(done, report)
        results.append(report)
    write_outputs(results, spec, out)
    return results


def write_outputs(results: Sequence[dict], spec: SweepSpec, out: Path) -> None:
    rows = [
        {"model": r["model"], "dataset": r["dataset"], "levels": r["levels"], "qcfs_reg": r["qcfs_reg"], "T": t,
         "ann_accuracy": r["ann_accuracy"], "snn_accuracy": r["snn_accuracy"][str(t)],
         "spike_rate": r["total_spike_rate"][str(t)]}
        for r in results for t in r["T"]
    ]  # fmt: skip
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["levels"])
        writer.writeheader()
        writer.writerows(rows)
    _write_json(out / "results.json", list(results))
    (out / "tables.md").write_text(tables(results, spec.T) + "\n")


def tables(results: Sequence[dict], T: Sequence[int]) -> str:
    """Seed 000's shapes: SNN accuracy with L in rows and T in columns (one table per w_q), and w_q × T per L."""
    by = {(r["levels"], r["qcfs_reg"]): r for r in results}
    levels = sorted({k[0] for k in by})
    wqs = sorted({k[1] for k in by})
    parts = []
    for wq in wqs:
        rows = [[f"L={L}", f"{by[L, wq]['ann_accuracy']:.2f}", *(f"{by[L, wq]['snn_accuracy'][str(t)]:.2f}" for t in T)]
                for L in levels if (L, wq) in by]  # fmt: skip
        parts.append(f"SNN accuracy (%), w_q = {wq:g}: L × T\n\n" + _md(["L", "ANN", *(f"T={t}" for t in T)], rows))
    for L in levels:
        if len(wqs) < 2:
            break
        rows = [[f"w_q={wq:g}", f"{by[L, wq]['ann_accuracy']:.2f}",
                 *(f"{by[L, wq]['snn_accuracy'][str(t)]:.2f}" for t in T)] for wq in wqs if (L, wq) in by]  # fmt: skip
        parts.append(f"SNN accuracy (%), L = {L}: w_q × T\n\n" + _md(["w_q", "ANN", *(f"T={t}" for t in T)], rows))
    return "\n\n".join(parts)


def _md(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])
