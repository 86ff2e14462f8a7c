"""Sanity bounds on sizes that come from users or files (issue 20): beyond them a value is a typo or an attack.

They bound what is *built*, not what is useful: the largest networks and step counts of the seeds sit far below
them (QCFS L <= 32, T <= 1024 for rate coding, widths <= 2, inputs <= 224 pixels). A value past a bound is refused
with an ``SnnconvError`` naming it, before any tensor of that size is allocated.
"""

from __future__ import annotations

import math
from typing import Any

from snnconv.errors import SnnconvError

#: time steps a simulation may run (``simulate``, ``--T``, COS ρ / SRP τ pre-runs)
MAX_T = 2**16
#: QCFS quantization levels L (bit-serial conversion needs log2(L) + 1 bits: 17 at most)
MAX_LEVELS = 2**16
#: model width multiplier (VGG-16 at width 16 already holds 2.4 G weights)
MAX_WIDTH = 16.0
#: input side, input channels and classes of a model built by the registry
MAX_INPUT_SIZE = 4096
MAX_CHANNELS = 4096
MAX_CLASSES = 100_000
#: epochs, batch size and sample counts (a subset, a number of batches)
MAX_EPOCHS = 10**6
MAX_BATCH = 2**24
MAX_SAMPLES = 2**40
#: a seed must fit torch's generator (unsigned 64 bit); numpy and Python take it modulo their own ranges
MAX_SEED = 2**63 - 1


def check_int(name: str, value: Any, low: int, high: int, where: str = "") -> int:
    """``value`` as an int in ``low..high`` (bools refused), else an ``SnnconvError`` naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SnnconvError(f"{where}{name} must be an integer in {low}..{high}, got {value!r}")
    return value


def check_float(name: str, value: Any, low: float, high: float = math.inf, *, open_low: bool = False,
                where: str = "") -> float:  # fmt: skip
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` with ``open_low``), else an ``SnnconvError``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and value <= high
    if not ok:
        lo = f"> {low:g}" if open_low else f">= {low:g}"
        hi = "" if high == math.inf else f" and <= {high:g}"
        raise SnnconvError(f"{where}{name} must be a finite number {lo}{hi}, got {value!r}")
    return float(value)


def check_train_bounds(c: Any) -> None:
    """The numbers of a ``TrainConfig`` (typed by hand or read from a checkpoint) within their ranges, before any
    model of that size is built (issue 20: a checkpoint's ``width: 3000`` asked for 165 GB)."""
    where = "TrainConfig: "
    for name in ("model", "dataset", "device", "out"):
        if not isinstance(getattr(c, name), str):
            raise SnnconvError(f"{where}{name} must be a string, got {getattr(c, name)!r}")
    check_int("levels", c.levels, 1, MAX_LEVELS, where)
    check_int("epochs", c.epochs, 1, MAX_EPOCHS, where)
    check_int("batch_size", c.batch_size, 1, MAX_BATCH, where)
    check_int("seed", c.seed, 0, MAX_SEED, where)
    check_int("num_workers", c.num_workers, 0, 256, where)
    if c.subset is not None:
        check_int("subset", c.subset, 1, MAX_SAMPLES, where)
    check_float("width", c.width, 0.0, MAX_WIDTH, open_low=True, where=where)
    check_float("threshold_init", c.threshold_init, 0.0, open_low=True, where=where)
    for name in ("weight_decay", "momentum", "qcfs_reg", "sparsity"):
        check_float(name, getattr(c, name), 0.0, where=where)
    check_float("label_smoothing", c.label_smoothing, 0.0, 1.0, where=where)
    check_float("init_percentile", c.init_percentile, 0.0, 100.0, open_low=True, where=where)
