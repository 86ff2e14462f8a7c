"""Optional native CPU kernels: the fused QCFS activation (``qcfs_cpu.cpp``, op ``torch.ops.snnconv.qcfs``).

Built on first use with the machine's C++ compiler (``$CXX``, else ``c++``; ~20 s once) against the installed
torch, cached as ``<cache>/snnconv_native-<hash>.so`` (``$SNNCONV_CACHE_DIR``, else ``~/.cache/snnconv/native``;
the hash covers the source, flags, torch version, compiler and CPU), written atomically, loaded with
``torch.ops.load_library``. Its forward is bit-identical to the PyTorch path and its gradients follow the same
Eq. 17 (θ sums rounded differently); it makes QCFS training on the CPU 1.1-1.2x faster (issue 8).

``SNNCONV_NATIVE``: ``auto`` (default: use it where it builds, else warn once and use the PyTorch path),
``0`` (never), ``1`` (required: raise if it cannot be built). ``use_native(False)`` switches it off in-process.
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

from snnconv.errors import SnnconvError

__all__ = ["build_library", "native_qcfs", "use_native"]

SOURCE = Path(__file__).with_name("qcfs_cpu.cpp")
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
    return [cxx, *FLAGS, *_arch_flags(), abi, *includes, str(SOURCE), "-o", str(out),
            f"-L{lib}", "-lc10", "-ltorch_cpu", "-ltorch", f"-Wl,-rpath,{lib}"]  # fmt: skip


def _cache_dir() -> Path:
    return Path(os.environ.get("SNNCONV_CACHE_DIR") or Path.home() / ".cache/snnconv/native")


def build_library(cache_dir: Path | None = None, cxx: str | None = None) -> Path:
    """Compile ``qcfs_cpu.cpp`` (once per source/flags/torch/compiler/CPU) and return the shared library's path."""
    cxx = cxx or os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not cxx:
        raise SnnconvError("snnconv native kernels: no C++ compiler found (install g++ or set CXX)")
    cache_dir = Path(cache_dir) if cache_dir is not None else _cache_dir()
    key = hashlib.sha256(SOURCE.read_bytes())
    key.update(repr((_command(cxx, Path("x")), torch.__version__, platform.machine())).encode())
    target = cache_dir / f"snnconv_native-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    print("snnconv: building the native QCFS kernel (once per machine, ~20 s)", file=sys.stderr, flush=True)
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


def native_qcfs() -> bool:
    """Whether ``torch.ops.snnconv.qcfs`` can be used now (builds and loads it on the first call)."""
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
                    raise SnnconvError(f"SNNCONV_NATIVE=1 but the native QCFS kernel is unavailable: {exc}") from exc
                warnings.warn(f"{exc}; QCFS uses the PyTorch path (same values, slower training on the CPU). "
                              "SNNCONV_NATIVE=0 silences this.", RuntimeWarning, stacklevel=3)  # fmt: skip
                _state["loaded"] = False
    return bool(_state["loaded"])


@contextlib.contextmanager
def use_native(enabled: bool) -> Iterator[None]:
    """Switch the native kernels on or off inside a ``with`` block (e.g. to compare both paths)."""
    before = _state["enabled"]
    _state["enabled"] = bool(enabled)
    try:
        yield
    finally:
        _state["enabled"] = before
