"""What ``fit(..., resume=True)`` checks before it continues a run, and the advice it gives when it cannot (issue 20).

* ``last.pt`` missing or damaged: the advice never ends in deleting a run's files (an earlier "delete last.pt, then
  start fresh" replaced an 8-epoch ``best.pt`` with an epoch-1 one): ``--overwrite`` moves them aside instead.
* ``best.pt`` must belong to the same run as ``last.pt`` (same ``run_id``, an epoch not after it), or resuming could
  replace a better ``best.pt`` of another run.
* The epoch history comes from ``last.pt`` itself (``history``, written with every checkpoint) or, for checkpoints
  written before it was, from ``metrics.jsonl``, whose unreadable lines (a line torn by a kill) are dropped with a
  warning; the caller rewrites the metrics files from it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

from snnconv.checkpoint import KIND_TRAIN, load_checkpoint
from snnconv.errors import CheckpointError
from snnconv.rundir import RUNTIME_KEYS

_AFTER = ("best.pt", "metrics.jsonl", "metrics.csv", "config.json")
_START_OVER = ("start over with --overwrite (overwrite=True), which moves the run's files to a replaced-<time>/ "
               "folder (best.pt there keeps the best weights so far), or choose another out dir")  # fmt: skip


def load_last(out: Path, cfg: dict, saved_config: Callable[[dict], dict] = dict) -> dict:
    """``out/last.pt`` as a training checkpoint of the config ``cfg``, or a ``CheckpointError`` with safe advice.
    ``saved_config`` fills in the keys an older checkpoint's config lacks before the two are compared."""
    last = out / "last.pt"
    if not last.is_file():
        others = [n for n in _AFTER if (out / n).exists()]
        if others:
            raise CheckpointError(f"cannot resume: {last} does not exist, but {out} holds {', '.join(others)} of "
                                  f"an earlier run; {_START_OVER}")  # fmt: skip
        raise CheckpointError(f"cannot resume: {last} does not exist; run without resume to start fresh")
    try:
        ckpt = load_checkpoint(last, kind=KIND_TRAIN)
    except CheckpointError as e:
        reason = getattr(e, "detail", None)
        if reason is None:
            raise
        raise CheckpointError(f"cannot resume: {last} is corrupted or truncated ({reason}); keep it and "
                              f"{_START_OVER}") from None  # fmt: skip
    saved = ckpt.get("config")
    if not isinstance(saved, dict) or not isinstance(ckpt.get("epoch"), int):
        raise CheckpointError(f"cannot resume: {last} has no config/epoch entries; {_START_OVER}")
    saved = saved_config(saved)
    diff = [f"{k}: {saved.get(k)!r} -> {cfg.get(k)!r}" for k in sorted(set(cfg) | set(saved))
            if k not in RUNTIME_KEYS and saved.get(k) != cfg.get(k)]  # fmt: skip
    if diff:
        raise CheckpointError(
            f"cannot resume {last}: the config differs ({'; '.join(diff)}); "
            "resume with the same settings or start a new run directory"
        )
    return ckpt


def check_best(out: Path, ckpt: dict) -> None:
    """Refuse to continue where ``best.pt`` is not this run's (another run id, or an epoch after ``last.pt``'s)."""
    best = out / "best.pt"
    if not best.is_file():
        return
    try:
        record = load_checkpoint(best)
    except CheckpointError:
        return  # damaged: this run writes its own at its next best epoch (or heals it now)
    run_id, epoch = ckpt.get("run_id"), ckpt["epoch"]
    other_run = run_id is not None and record.get("run_id") != run_id
    later = isinstance(record.get("epoch"), int) and record["epoch"] > epoch
    if other_run or later:
        acc = record.get("best_acc")
        what = f"epoch {record.get('epoch')}" + (f", test accuracy {100 * acc:.2f}%" if isinstance(acc, float) else "")
        why = "another run" if other_run else f"a later epoch than last.pt (epoch {epoch})"
        raise CheckpointError(
            f"cannot resume {out}: {best} ({what}) belongs to {why}, and continuing could replace it; move it aside "
            f"(e.g. mv {best} {out / 'best-other.pt'}) and resume again"
        )


def read_metrics(path: Path) -> list[dict]:
    """The epoch records of a ``metrics.jsonl``; unreadable lines (torn by a kill) are dropped with a warning."""
    records, bad = [], []
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            m = json.loads(line)
        except ValueError:
            m = None
        if isinstance(m, dict) and isinstance(m.get("epoch"), int):
            records.append(m)
        else:
            bad.append(i)
    if bad:
        warnings.warn(
            f"{path}: dropped {len(bad)} unreadable line(s) (line {', '.join(map(str, bad[:5]))}; a line torn by a "
            "kill?); the file is rewritten from the checkpoint's history",
            RuntimeWarning,
            stacklevel=3,
        )
    return records


def restore_history(out: Path, ckpt: dict) -> list[dict]:
    """The metrics of epochs 1..``ckpt["epoch"]``: from the checkpoint, else from ``metrics.jsonl``."""
    start = ckpt["epoch"]
    if isinstance(ckpt.get("history"), list):
        history = [m for m in ckpt["history"] if m["epoch"] <= start]
    else:
        path = out / "metrics.jsonl"
        history = [m for m in read_metrics(path) if m["epoch"] <= start] if path.exists() else []
    if ckpt.get("metrics") and (not history or history[-1]["epoch"] < start):
        history.append(ckpt["metrics"])  # crash between last.pt and the metrics line
    return history
