"""Safe, atomic checkpoints.

* ``save_checkpoint`` writes to a temporary file in the target's directory, fsyncs it and ``os.replace``-s
  it onto the target: a crash mid-write leaves the previous checkpoint intact.
* ``load_checkpoint`` only ever uses ``torch.load(..., weights_only=True)``; a file that needs arbitrary
  Python objects is refused, never executed. Payloads must therefore hold only tensors, dicts, lists,
  tuples, ints, floats, str, bool and None (store dataclass configs via ``dataclasses.asdict``).

Every checkpoint carries ``format_version`` and ``kind`` (``"snnconv-train"``: full training state,
``"snnconv-model"``: weights + config).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import random
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from snnconv.errors import CheckpointError

FORMAT_VERSION = 1
KIND_TRAIN = "snnconv-train"
KIND_MODEL = "snnconv-model"

_SAFE_SCALARS = (int, float, str, bool, bytes, type(None), torch.dtype, torch.device, torch.Size)
# Markers of torch's weights_only unpickler refusing a global/class (as opposed to a damaged stream).
_REFUSED_MARKERS = ("not an allowed global", "Unsupported global", "Unsupported class", "is blocked")


def _check_safe(obj: Any, where: str) -> None:
    """Raise if ``obj`` could not be read back with ``weights_only=True``."""
    if isinstance(obj, (torch.Tensor, *_SAFE_SCALARS)):
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, str | int):
                raise CheckpointError(f"checkpoint payload key {where}[{k!r}] must be a str or int")
            _check_safe(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _check_safe(v, f"{where}[{i}]")
        return
    raise CheckpointError(
        f"checkpoint payload {where} is a {type(obj).__qualname__}, which weights_only loading refuses; "
        "store tensors, dicts, lists, numbers, str, bool or None (dataclasses via dataclasses.asdict)"
    )


@functools.cache
def _default_mode() -> int:
    """0o666 minus the process umask: the mode a plain ``open(path, "w")`` would give (temp files get 0o600)."""
    if os.name != "posix":
        return 0o666
    old = os.umask(0o022)
    os.umask(old)
    return 0o666 & ~old


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Run ``write(f)`` on a temp file beside ``path``, fsync it, then atomically rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below, kept on disk for os.replace)
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with tmp:
            write(tmp)
            tmp.flush()
            with contextlib.suppress(OSError):
                os.chmod(tmp.name, _default_mode())
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise
    _fsync_dir(path.parent)
    return path


def save_checkpoint(path: str | os.PathLike, payload: dict, *, kind: str = KIND_TRAIN) -> Path:
    """Atomically write ``payload`` (+ ``format_version``, and ``kind`` unless present) to ``path``."""
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"save_checkpoint: payload must be a dict, got {type(payload).__qualname__}")
    record = {"format_version": FORMAT_VERSION, "kind": kind, **payload}
    record["format_version"] = FORMAT_VERSION
    _check_safe(record, "payload")
    return atomic_write(path, lambda f: torch.save(record, f))


def load_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu", *, kind: str | Iterable[str] | None = None
) -> dict:
    """Load a checkpoint with ``weights_only=True``; check its format version and (optionally) its kind."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (or is not a file)")
    try:
        record = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if any(m in msg for m in _REFUSED_MARKERS):
            raise _refused(path, e) from None
        raise _corrupted(path, e) from None
    except Exception as e:  # zip/pickle/storage errors of every kind: the bytes are not a valid checkpoint
        raise _corrupted(path, e) from None
    if not isinstance(record, dict) or "format_version" not in record or "kind" not in record:
        raise CheckpointError(
            f"checkpoint {path} is not an snnconv checkpoint (no format_version/kind keys); "
            "was it written by another tool?"
        )
    version = record["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version {version!r}, this snnconv reads up to {FORMAT_VERSION}; "
            "upgrade snnconv"
        )
    if kind is not None:
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        if record["kind"] not in kinds:
            raise CheckpointError(
                f"checkpoint {path} is of kind {record['kind']!r}, expected {' or '.join(map(repr, kinds))}"
            )
    return record


def _detail(e: BaseException) -> str:
    """The informative line of torch.load's (long, advice-laden) error message."""
    msg = str(e)
    if "WeightsUnpickler error:" in msg:
        msg = msg.split("WeightsUnpickler error:", 1)[1]
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    return lines[0].split(". This is an internal miniz error")[0].split(". Please use")[0][:160]


def _corrupted(path: Path, e: BaseException) -> CheckpointError:
    detail = f"{type(e).__name__}: {_detail(e)}"
    err = CheckpointError(
        f"checkpoint {path} is corrupted or truncated ({detail}); delete it or resume from an earlier one"
    )
    err.detail = detail  # for callers that give their own advice (resume)
    return err


def _refused_global(e: BaseException) -> str:
    """The global (``module.name``) that torch's weights_only unpickler refused, or ``""``."""
    msg = str(e)
    for pattern in (r"GLOBAL ([\w.]+)", r"([\w.]+) (?:is|was) not an allowed global", r"Unsupported class ([\w.]+)"):
        m = re.search(pattern, msg)
        if m:
            return m.group(1)
    return ""


def _refused(path: Path, e: BaseException) -> CheckpointError:
    name = _refused_global(e)
    what = f"the Python global {name}" if name else f"a Python object torch refused ({_detail(e)})"
    return CheckpointError(
        f"checkpoint {path} contains arbitrary Python objects and was refused (not loaded): unpickling it would "
        f"call {what}, which could run any code. If you trust the file, re-save it as plain data in a separate "
        "Python session: obj = torch.load(path, weights_only=False); keep its tensors and plain values (e.g. "
        "{'model': obj['model'], 'config': obj['config']}) and write them with snnconv.checkpoint.save_checkpoint"
    )


def load_model_state(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str = "checkpoint",
    saved_model: str | None = None,
    model_name: str | None = None,
    check_only: bool = False,
) -> None:
    """``model.load_state_dict(state)`` with a readable error when the checkpoint is from another model.

    ``check_only``: compare keys and shapes only (``model`` may live on the meta device: nothing is allocated)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: {tuple(state[k].shape)} in checkpoint vs {tuple(v.shape)} in model"
        for k, v in own.items()
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        name = model_name or type(model).__name__
        if saved_model == name:
            parts = [f"{source} holds weights of another {name!r} variant than the one built (width, act, levels, "
                     "classes or input channels differ)"]  # fmt: skip
        else:
            parts = [f"{source} was saved from model {saved_model or '<unknown>'!r}, which does not match {name!r}"]
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape", shapes)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{label}: {', '.join(items[:5])}{more}")
        parts.append("build the same model (name, width, act, classes) that wrote the checkpoint")
        raise CheckpointError("; ".join(parts))
    if not check_only:
        model.load_state_dict(state)


def rng_state() -> dict:
    """Global RNG states (torch CPU/CUDA, numpy, python) as weights_only-safe plain data."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "state": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the global RNG states written by ``rng_state``."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        for i, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s.cpu(), i)
