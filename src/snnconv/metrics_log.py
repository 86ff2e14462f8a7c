"""Per-epoch scalar logs of a training run: ``RUN/metrics.csv`` and (optional) TensorBoard under ``RUN/tb``.

Each row holds the epoch's metrics (``epoch, lr, train_loss, train_acc, test_loss, test_acc, best_acc, time_s``)
and the mean effective threshold θ = λ (softplus(λ) for softplus QCFS) of every QCFS layer as ``lambda/<layer>``.
``metrics.jsonl`` stays the record that resume relies on; these logs are rebuilt from it on resume.
TensorBoard needs the ``tensorboard`` package, which is optional: without it that part is skipped with a
one-time warning.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from snnconv.checkpoint import atomic_write
from snnconv.layers.qcfs import QCFS

LOG_KINDS = ("csv", "tensorboard", "none")
_TB_NOTED = False


def threshold_means(model: nn.Module) -> dict[str, float]:
    """``{"lambda/<layer>": mean θ}`` of every QCFS layer of ``model`` (θ = λ, or softplus(λ))."""
    return {
        f"lambda/{name or 'act'}": float(m.theta().detach().float().mean())
        for name, m in model.named_modules()
        if isinstance(m, QCFS)
    }


def _tensorboard_writer(log_dir: Path, purge_step: int | None):
    """A SummaryWriter, or None (with a one-time warning) when tensorboard is not installed."""
    global _TB_NOTED
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        if not _TB_NOTED:
            _TB_NOTED = True
            warnings.warn(
                f"log='tensorboard': TensorBoard logging skipped ({exc}); pip install tensorboard to enable it. "
                "metrics.csv is still written",
                RuntimeWarning,
                stacklevel=3,
            )
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step)


def _complete_rows(path: Path) -> dict[int, dict]:
    """The rows of an existing ``metrics.csv`` by epoch, leaving out any row a kill tore (missing cells, an epoch
    that does not parse): those are rebuilt from the checkpoint's history."""
    rows = {}
    with open(path, newline="", errors="replace") as f:
        for r in csv.DictReader(f):
            if None in r or any(v is None for v in r.values()):
                continue
            try:
                rows[int(float(r["epoch"]))] = r
            except (KeyError, TypeError, ValueError):
                continue
    return rows


class RunLog:
    """CSV (+ TensorBoard) scalar logger of one run directory; only the writing rank creates one.

    ``kind``: ``"csv"`` writes ``metrics.csv``; ``"tensorboard"`` writes it and TensorBoard events in ``tb/``;
    ``"none"`` writes nothing.
    """

    def __init__(self, out: str | Path, kind: str = "csv") -> None:
        if kind not in LOG_KINDS:
            raise ValueError(f"log must be one of {LOG_KINDS}, got {kind!r}")
        self.out, self.kind = Path(out), kind
        self.path = self.out / "metrics.csv"
        self.fields: list[str] | None = None
        self._tb = None

    def start(self, history: Sequence[dict], model: nn.Module, *, resume: bool) -> None:
        """Begin a fresh log, or (resume) rewrite ``metrics.csv`` to the epochs of ``history``.

        Rows kept from the old file keep their thresholds; a missing row of the last epoch takes ``model``'s
        (the restored state of that epoch); older missing rows get empty threshold cells.
        """
        if self.kind == "none":
            return
        if not resume:
            self.path.unlink(missing_ok=True)
        else:
            old = _complete_rows(self.path) if self.path.is_file() else {}
            rows = []
            for i, m in enumerate(history):
                row = old.get(m["epoch"])
                if row is None:
                    row = {**m, **(threshold_means(model) if i == len(history) - 1 else {})}
                rows.append(row)
            self.fields = None
            if rows:
                self.fields = self._fieldnames(history[-1], model)
                self._write(rows, mode="w")
            else:
                self.path.unlink(missing_ok=True)
        if self.kind == "tensorboard":
            start = history[-1]["epoch"] if resume and history else 0
            self._tb = _tensorboard_writer(self.out / "tb", purge_step=start + 1 if resume else None)

    @staticmethod
    def _fieldnames(metrics: dict, model: nn.Module) -> list[str]:
        return [*metrics, *threshold_means(model)]

    def _write(self, rows: Sequence[dict], mode: str) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fields, restval="", extrasaction="ignore", lineterminator="\n")
        if mode == "w":
            writer.writeheader()
        writer.writerows(rows)
        if mode == "w":
            atomic_write(self.path, lambda f: f.write(buf.getvalue().encode()))
        else:
            with open(self.path, "a", newline="") as f:
                f.write(buf.getvalue())

    def log(self, metrics: dict, model: nn.Module) -> None:
        """Append the epoch's ``metrics`` and ``model``'s QCFS threshold means."""
        if self.kind == "none":
            return
        lam = threshold_means(model)
        row = {**metrics, **lam}
        if self.fields is None or not self.path.is_file():
            self.fields = self._fieldnames(metrics, model)
            self._write([row], mode="w")
        else:
            self._write([row], mode="a")
        if self._tb is not None:
            step = metrics["epoch"]
            for key, value in row.items():
                if key != "epoch" and isinstance(value, int | float):
                    tag = key if key.startswith("lambda/") else key.replace("_", "/", 1)
                    self._tb.add_scalar(tag, value, step)
            self._tb.flush()

    def close(self) -> None:
        """Close the TensorBoard writer (if any)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
