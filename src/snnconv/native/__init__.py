"""Optional native CPU kernels: the fused QCFS activation (``qcfs_cpu.cpp``, op ``torch.ops.snnconv.qcfs``) and
the fused integrate-and-fire scan (``if_cpu.cpp``, op ``torch.ops.snnconv.if_scan_``).

Built on first use with the machine's C++ compiler (``$CXX``, else ``c++``; ~30 s once) against the installed
torch, cached as ``<cache>/snnconv_native-<hash>.so`` (``$SNNCONV_CACHE_DIR``, else ``~/.cache/snnconv/native``;
the hash covers the sources, flags, torch version, compiler and CPU), written atomically, loaded with
``torch.ops.load_library``. The QCFS forward and the IF scan are bit-identical to the PyTorch paths; QCFS's
gradients follow the same Eq. 17 (θ sums rounded differently). Measured in benchmarks/README.md (issue 8).

``SNNCONV_NATIVE``: ``auto`` (default: use them where they build, else warn once and use the PyTorch paths),
``0`` (never), ``1`` (required: raise if they cannot be built). ``use_native(False)`` switches them off
in-process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from snnconv.errors import SnnconvError

__all__ = ["available", "build_library", "fits", "use_native"]

HERE = Path(__file__).parent
SOURCES = (HERE / "qcfs_cpu.cpp", HERE / "if_cpu.cpp")
HEADERS = (HERE / "layout.h",)
FLAGS = ("-O3", "-std=c++20", "-shared", "-fPIC", "-fopenmp", "-ffp-contract=off", "-fno-trapping-math")
_state: dict[str, bool | None] = {"loaded": None, "enabled": True}


def _mode() -> str:
    mode = os.environ.get("SNNCONV_NATIVE", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        raise SnnconvError(f"SNNCONV_NATIVE must be auto, 0 or 1, got {mode!r}")
    return mode


def _arch_flags() -> list[str]:
    """AVX2 where the CPU has it (x86-64's baseline SSE2 has no vector floor); AVX-512 measured no faster here."""
    if platform.machine() in ("x86_64", "AMD64"):
        with contextlib.suppress(OSError):
            if " avx2" in Path("/proc/cpuinfo").read_text():
                return ["-mavx2"]
    return []


def _command(cxx: str, out: Path) -> list[str]:
    torch_dir = Path(torch.__file__).resolve().parent
    lib = torch_dir / "lib"
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
    includes = ["-isystem", str(torch_dir / "include"), "-isystem", str(torch_dir / "include/torch/csrc/api/include")]
    return [cxx, *FLAGS, *_arch_flags(), abi, *includes, *map(str, SOURCES), "-o", str(out),
            f"-L{lib}", "-lc10", "-ltorch_cpu", "-ltorch", f"-Wl,-rpath,{lib}"]  # fmt: skip


def _cache_dir() -> Path:
    return Path(os.environ.get("SNNCONV_CACHE_DIR") or Path.home() / ".cache/snnconv/native")


def build_library(cache_dir: Path | None = None, cxx: str | None = None) -> Path:
    """Compile the kernels (once per sources/flags/torch/compiler/CPU) and return the shared library's path."""
    cxx = cxx or os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not cxx:
        raise SnnconvError("snnconv native kernels: no C++ compiler found (install g++ or set CXX)")
    cache_dir = Path(cache_dir) if cache_dir is not None else _cache_dir()
    key = hashlib.sha256(b"".join(f.read_bytes() for f in (*SOURCES, *HEADERS)))
    key.update(repr((_command(cxx, Path("x")), torch.__version__, platform.machine())).encode())
    target = cache_dir / f"snnconv_native-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    print("snnconv: building the native CPU kernels (once per machine, ~30 s)", file=sys.stderr, flush=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache_dir)
    os.close(fd)
    try:
        res = subprocess.run(_command(cxx, Path(tmp)), capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SnnconvError(f"snnconv native kernels: {cxx} failed ({res.returncode}): {res.stderr[-2000:]}")
        os.replace(tmp, target)  # atomic: a concurrent builder or reader never sees a partial library
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target


def _registered() -> bool:
    try:
        torch.ops.snnconv.qcfs  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


def available() -> bool:
    """Whether the native kernels can be used now (builds and loads them on the first call)."""
    if not _state["enabled"]:
        return False
    if _state["loaded"] is None:
        mode = _mode()
        if mode == "0":
            _state["loaded"] = False
        elif _registered():
            _state["loaded"] = True
        else:
            try:
                torch.ops.load_library(str(build_library()))
                _state["loaded"] = True
            except (SnnconvError, OSError, RuntimeError) as exc:
                if mode == "1":
                    raise SnnconvError(f"SNNCONV_NATIVE=1 but the native kernels are unavailable: {exc}") from exc
                warnings.warn(f"{exc}; snnconv uses its PyTorch paths (same values, slower on the CPU). "
                              "SNNCONV_NATIVE=0 silences this.", RuntimeWarning, stacklevel=3)  # fmt: skip
                _state["loaded"] = False
    return bool(_state["loaded"])


_DTYPES = (torch.float32, torch.float64)


def fits(x: Tensor, param: Tensor) -> bool:
    """Whether a kernel covers ``x`` with its per-layer or per-channel ``param`` (a threshold): CPU float32/float64
    in one dtype, a row-major or channels-last x, one value or one per channel of x's dim 1 (broadcast over the
    trailing dims), and no compiler tracing (torch.compile traces the PyTorch path instead)."""
    if not (x.is_cpu and param.is_cpu) or x.dtype not in _DTYPES or param.dtype != x.dtype:
        return False
    if param.dim() > x.dim() or torch.compiler.is_compiling():
        return False
    if not x.is_contiguous() and not (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)):
        return False
    if param.numel() == 1:
        return True
    axis = 1 - (x.dim() - param.dim())  # the param's axis that faces x's dim 1; all others must be 1
    return x.dim() >= 2 and 0 <= axis and param.shape[axis] == x.shape[1] == param.numel()


@contextlib.contextmanager
def use_native(enabled: bool) -> Iterator[None]:
    """Switch the native kernels on or off inside a ``with`` block (e.g. to compare both paths)."""
    before = _state["enabled"]
    _state["enabled"] = bool(enabled)
    try:
        yield
    finally:
        _state["enabled"] = before
