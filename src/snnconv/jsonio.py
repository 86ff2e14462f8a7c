"""Strict JSON: what snnconv writes is valid JSON that any reader (and ``--resume``) can read back (issue 20).

Python's ``json`` writes NaN and Infinity as bare tokens that are not JSON. Settings (config.json, qat.json,
sweep.json) are validated before they are written, so ``dumps(..., clean=False)`` refuses a non-finite number there
as a bug; measurements (metrics, reports) may legitimately be undefined (a loss that overflowed, a ratio over zero
spikes) and are written with such numbers as ``null``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN/±Inf float (in nested dicts, lists, tuples) replaced by None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return obj


def dumps(obj: Any, *, clean: bool = True, **kwargs: Any) -> str:
    """``json.dumps(obj, allow_nan=False)``; ``clean=True`` first turns non-finite floats into null."""
    return json.dumps(finite_or_none(obj) if clean else obj, allow_nan=False, **kwargs)


def write(path: str | Path, obj: Any, *, clean: bool = True) -> Path:
    """Write ``obj`` as indented strict JSON to ``path`` atomically (a kill leaves the old file or the new one)."""
    from snnconv.checkpoint import atomic_write

    text = dumps(obj, clean=clean, indent=2) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))
