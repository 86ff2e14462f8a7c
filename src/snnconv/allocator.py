"""CPU allocator settings: keep freed activation buffers in the process instead of handing them back to the OS.

PyTorch's CPU tensors come from the C allocator. glibc serves requests above ``M_MMAP_THRESHOLD`` (128 KiB at
start, adapted at run time) with fresh ``mmap`` pages and gives freed heap tops above ``M_TRIM_THRESHOLD`` back
to the kernel, so a forward pass whose activations are a few MB each page-faults its memory in again on every
pass. On the 2-core reference VM that doubled the time of a ResNet-20 forward pass, and how much depended on
what had run before in the process (issue 8: 8 ANN passes took 411 ms in a fresh process, 207 ms after an SNN
simulation had raised glibc's adaptive threshold). Fixing both thresholds makes every setup run at its
fast, steady speed, which the benchmarks need to compare fairly and users want anyway.

``tune_cpu_allocator`` calls glibc's ``mallopt`` (Linux with glibc only; elsewhere it does nothing and returns
False). It is process-wide: the CLI and the benchmarks call it at start; library code never does it behind a
user's back. ``SNNCONV_MALLOC=default`` in the environment turns it off for the CLI (``tune_from_env``).
Cost: up to ``trim_threshold`` of freed memory stays resident (peak memory is unchanged).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from snnconv.errors import SnnconvError

__all__ = ["DEFAULT_MMAP_THRESHOLD", "DEFAULT_TRIM_THRESHOLD", "tune_cpu_allocator", "tune_from_env"]

#: glibc's own ceiling for M_MMAP_THRESHOLD on 64-bit systems (HEAP_MAX_SIZE / 2)
DEFAULT_MMAP_THRESHOLD = 32 * 2**20
DEFAULT_TRIM_THRESHOLD = 2**30
_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1  # mallopt(int param, int value)
ENV = "SNNCONV_MALLOC"


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "mallopt"):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]  # no silent truncation of Python ints
    libc.mallopt.restype = ctypes.c_int
    return libc


def tune_cpu_allocator(
    mmap_threshold: int = DEFAULT_MMAP_THRESHOLD, trim_threshold: int = DEFAULT_TRIM_THRESHOLD
) -> bool:
    """Serve allocations up to ``mmap_threshold`` bytes from the heap and keep up to ``trim_threshold`` bytes of
    freed heap; True if glibc took both settings, False where there is no glibc (nothing changed)."""
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SnnconvError(f"tune_cpu_allocator: {name} must be a non-negative number of bytes, got {value!r}")
    if trim_threshold > _INT_MAX:
        raise SnnconvError(
            f"tune_cpu_allocator: trim_threshold={trim_threshold} does not fit mallopt's int (at most {_INT_MAX} bytes)"
        )
    if mmap_threshold > DEFAULT_MMAP_THRESHOLD:
        raise SnnconvError(
            f"tune_cpu_allocator: mmap_threshold={mmap_threshold} is above glibc's limit of {DEFAULT_MMAP_THRESHOLD} "
            "bytes (32 MiB), which mallopt would refuse"
        )
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    return libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1 and ok


def tune_from_env() -> bool:
    """``tune_cpu_allocator()`` unless ``SNNCONV_MALLOC=default``; any other value of it is an error."""
    mode = os.environ.get(ENV, "tuned")
    if mode not in ("tuned", "default"):
        raise SnnconvError(f"{ENV} must be 'tuned' or 'default' (glibc's own settings), got {mode!r}")
    return mode == "tuned" and tune_cpu_allocator()
