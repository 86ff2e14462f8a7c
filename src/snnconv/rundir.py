"""Run directories that cannot be mixed or silently overwritten (issue 20).

``open_run_dir(out, config, resume=..., overwrite=...)`` is entered by every writer of a run directory (``fit``, and
the QAT and two-stage wrappers around it, which write a marker file first). It

* refuses an empty path (it would mean the current directory), a path that is a file, a directory it cannot write;
* takes an exclusive advisory lock, ``fcntl.flock`` on ``OUT/.snnconv.lock``, which holds the writer's pid: a second
  writer is refused with a message naming that pid (the kernel drops the lock of a killed process, so a lock file
  left by a crash is stale and is taken over; where ``flock`` is unsupported the pid alone decides, by whether that
  process still runs). Reentrant within a process; the lock file is removed on exit;
* removes the temporary files of interrupted atomic writes (``.last.pt.*.tmp`` ...);
* for a fresh start, refuses a non-empty directory unless it holds the remains of a run of the same config that
  never finished an epoch; ``overwrite=True`` first moves every entry to ``OUT/replaced-<time>/`` (names printed),
  so nothing is deleted. A directory with ``last.pt`` asks for ``resume=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from snnconv.errors import CheckpointError, SnnconvError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the pid file alone decides
    fcntl = None

LOCK_NAME = ".snnconv.lock"
REPLACED = "replaced-"  # prefix of the folders --overwrite moves a directory's old entries to
#: files a run writes or rewrites (their stale temporaries are removed on start)
RUN_FILES = ("config.json", "last.pt", "best.pt", "metrics.jsonl", "metrics.csv")
#: marker files of the QAT and two-stage wrappers, written (after the checks) before ``fit`` runs
MARKERS = ("qat.json", "twostage.json")
#: conversion defaults a run records for its evaluation (issue 19); training ignores them, so they may differ
CONVERSION_KEYS = frozenset({"extra_steps", "cos_shift", "max_spikes_per_step"})
#: settings that may change between resumes (the same run on another device, with other logging ...)
RUNTIME_KEYS = frozenset({"out", "device", "num_workers", "amp", "log"}) | CONVERSION_KEYS
_HELD: dict[str, int] = {}  # resolved path -> fd of each lock this process holds
_TMP = re.compile(r"^\.(" + "|".join(re.escape(n) for n in RUN_FILES + MARKERS) + r")\..+\.tmp$")


class RunDirBusy(SnnconvError):
    """Another process is writing the run directory."""


def _pid_of(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _busy(out: Path, pid: int | None) -> RunDirBusy:
    who = f"pid {pid}" if pid else "a process whose pid is unknown"
    return RunDirBusy(f"{out} is being written by another snnconv process ({who}); wait for it to finish, stop it, "
                      "or choose another out dir (two writers would mix their checkpoints and metrics)")  # fmt: skip


def _lock(out: Path) -> int:
    """An fd holding the exclusive lock of ``out`` (retried if the lock file was replaced meanwhile)."""
    path = out / LOCK_NAME
    for _ in range(10):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise SnnconvError(
                f"cannot write to the run directory {out} ({e.strerror}); choose a writable out dir"
            ) from None
        try:
            if fcntl is None:
                raise OSError("no flock")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_of(fd)
            os.close(fd)
            raise _busy(out, pid) from None
        except OSError:  # flock unsupported here (some network file systems): the pid decides
            pid = _pid_of(fd)
            if pid and pid != os.getpid() and _alive(pid):
                os.close(fd)
                raise _busy(out, pid) from None
        try:  # the holder before us may have removed the file between our open and our lock: then retry
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            stale = _pid_of(fd)
            if stale and stale != os.getpid() and not _alive(stale):
                print(f"note: took over the lock of {out} left by pid {stale}, which is no longer running",
                      file=sys.stderr, flush=True)  # fmt: skip
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)
    raise _busy(out, None)


def _unlock(out: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        (out / LOCK_NAME).unlink()  # while still locked: a waiting opener re-checks the inode (see _lock)
    os.close(fd)


def remove_stale_temporaries(out: Path) -> list[str]:
    """Delete ``.<run file>.*.tmp`` left by writes that a kill interrupted (call with the lock held)."""
    removed = []
    for p in out.iterdir():
        if _TMP.match(p.name) and p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p.name)
    return removed


def _same_config(saved: dict, config: dict) -> bool:
    keys = (set(saved) | set(config)) - RUNTIME_KEYS
    return all(saved.get(k) == config.get(k) for k in keys)


def _unfinished_same_run(out: Path, names: set[str], config: dict | None) -> bool:
    """Only what a run of ``config`` writes before its first checkpoint (config.json, empty metrics, tb/)."""
    early = {"config.json", "metrics.jsonl", "metrics.csv", "tb", *MARKERS}
    if config is None or "config.json" not in names or not names <= early:
        return False
    try:
        saved = json.loads((out / "config.json").read_text())
        metrics = out / "metrics.jsonl"
        done = metrics.is_file() and metrics.read_text().strip()
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and _same_config(saved, config) and not done


def move_aside(out: Path, entries: list[Path]) -> Path:
    """Move ``entries`` of ``out`` into a new ``out/replaced-<time>/`` and print what went where."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = out / f"{REPLACED}{stamp}"
    n = 1
    while dest.exists():
        n += 1
        dest = out / f"{REPLACED}{stamp}-{n}"
    dest.mkdir()
    for p in entries:
        p.rename(dest / p.name)
    print(f"--overwrite: moved {', '.join(sorted(p.name for p in entries))} from {out} to {dest}", flush=True)
    return dest


def check_fresh_start(out: Path, config: dict | None, *, overwrite: bool, markers: tuple[str, ...] = MARKERS) -> None:
    """Refuse to start a new run in ``out`` over another run's files (``overwrite``: move them aside first)."""
    entries = [p for p in sorted(out.iterdir()) if p.name != LOCK_NAME and p.name not in markers
               and not p.name.startswith(REPLACED)]  # fmt: skip
    if not entries:
        return
    names = {p.name for p in entries}
    if not overwrite and _unfinished_same_run(out, names, config):
        return
    if overwrite:
        move_aside(out, [p for p in out.iterdir() if p.name != LOCK_NAME and not p.name.startswith(REPLACED)])
        return
    listed = ", ".join(sorted(names)[:6]) + (f" (+{len(names) - 6} more)" if len(names) > 6 else "")
    if "last.pt" in names:
        raise CheckpointError(
            f"{out} already holds a run ({out / 'last.pt'}); resume it (--resume / resume=True), start a new run "
            "there with --overwrite (moves the old files to a replaced-<time>/ folder) or choose another out dir"
        )
    raise CheckpointError(
        f"{out} is not empty ({listed}) and holds no resumable run of this config; choose a new or empty out dir, "
        "or pass --overwrite (overwrite=True) to move these entries to a replaced-<time>/ folder there first"
    )


def _prepare(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SnnconvError(f"the run directory {out} is a file; choose a directory (new or empty) for the run")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SnnconvError(f"cannot create the run directory {out} ({e.strerror}); choose a writable out dir") from None


@contextlib.contextmanager
def open_run_dir(out: str | os.PathLike, config: dict | None, *, resume: bool, overwrite: bool = False,
                 writer: bool = True, markers: tuple[str, ...] = MARKERS) -> Iterator[Path]:  # fmt: skip
    """Hold ``out`` exclusively for a run (module docstring); ``writer=False`` (ranks > 0) only checks the path."""
    if not os.fspath(out).strip():
        raise SnnconvError("the run directory is empty (it would be the current directory); name one, e.g. runs/NAME")
    out = Path(out)
    held = _HELD.get(os.path.realpath(out)) if out.is_dir() else None
    if held is not None or not writer:  # a wrapper (QAT, two-stage) already checked it and holds it / rank > 0
        yield out
        return
    _prepare(out)
    key = os.path.realpath(out)
    fd = _lock(out)
    _HELD[key] = fd
    try:
        remove_stale_temporaries(out)
        if not resume:
            check_fresh_start(out, config, overwrite=overwrite, markers=markers)
        yield out
    finally:
        del _HELD[key]
        _unlock(out, fd)


@contextlib.contextmanager
def claim_run_dir(out: str | os.PathLike, config: dict | None, *, resume: bool, overwrite: bool = False,
                  markers: tuple[str, ...] = MARKERS) -> Iterator[Path]:  # fmt: skip
    """``open_run_dir`` by rank 0 of a torchrun job (every rank learns whether it refused: none waits forever)."""
    from snnconv import distributed

    with contextlib.ExitStack() as stack:
        error = None
        try:
            stack.enter_context(open_run_dir(out, config, resume=resume, overwrite=overwrite, markers=markers,
                                             writer=distributed.is_main()))  # fmt: skip
        except SnnconvError as e:
            error = e
        if distributed.any_true(error is not None):
            raise error or SnnconvError(f"rank 0 refused the run directory {out} (see its message)")
        yield Path(out)
