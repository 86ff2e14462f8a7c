"""Shared pieces of the benchmarks: random-but-plausible models, paired timing, peak RSS in a subprocess, JSON.

Timing rules (the reference machine is a shared 2-core VM whose load drifts): every setup is warmed up first,
setups are *interleaved* within each repeat (so a slow minute hits all of them), and what is reported is the
median over repeats of per-repeat times and per-repeat ratios. Ratios are therefore paired measurements: the
baseline (e.g. T ANN passes) is timed in the same repeat as the run it is compared with.

Allocator: importing this module applies ``snnconv.allocator.tune_from_env()`` to the whole benchmark process
(and, through the environment, to its peak-RSS subprocesses), as the ``snnconv`` CLI does: every setup (ANN,
snnconv, SpikingJelly) runs with glibc keeping freed buffers, instead of a speed that depends on what ran before
it in the process. ``SNNCONV_MALLOC=default`` measures with glibc's own settings; the JSON records which.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"


def _allocator() -> str:
    from snnconv.allocator import tune_from_env

    return "glibc mallopt (snnconv.allocator)" if tune_from_env() else "default"


ALLOCATOR = _allocator()


def random_ann(
    model: str, *, levels: int = 8, act: str = "qcfs", seed: int = 0, num_classes: int = 10, input_size: int = 32
) -> nn.Module:
    """``model`` from the snnconv registry (eval mode) with random weights, BN running statistics of a plausible
    trained network and QCFS thresholds θ = 1 (the conversion then has something non-trivial to do)."""
    from snnconv import QCFS, make_act
    from snnconv.models import create

    torch.manual_seed(seed)
    ann = create(model, num_classes=num_classes, in_channels=3, input_size=input_size, act=make_act(act, levels=levels))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in ann.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
            elif isinstance(m, QCFS):
                m.threshold.fill_(1.0)
    return ann.eval()


def random_input(batch: int, seed: int = 0, input_size: int = 32) -> torch.Tensor:
    return torch.randn(batch, 3, input_size, input_size, generator=torch.Generator().manual_seed(seed))


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def once(fn: Callable[[], Any], device: str = "cpu") -> float:
    """Wall time of one call (synchronising CUDA before and after)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def median_time(fn: Callable[[], Any], repeats: int, device: str = "cpu") -> float:
    fn()  # warm-up
    return statistics.median(once(fn, device) for _ in range(repeats))


def repeated(fn: Callable[[], Any], n: int) -> Callable[[], None]:
    """``fn`` called ``n`` times (T baseline passes)."""

    def run() -> None:
        for _ in range(n):
            fn()

    return run


def paired_ratio(
    baseline: Callable[[], Any], snn_run: Callable[[], Any], T: int, repeats: int, device: str = "cpu"
) -> tuple[float, float]:
    """Median of (SNN time / time of T baseline passes) over repeats, and the median SNN time."""
    res = interleaved({"base": repeated(baseline, T), "snn": snn_run}, repeats, device)
    return res["ratio"]["snn"]["base"], res["seconds"]["snn"]


def interleaved(setups: Mapping[str, Callable[[], Any]], repeats: int, device: str = "cpu") -> dict[str, Any]:
    """Time every setup once per repeat, in turn (after one warm-up call each).

    Returns ``{"seconds": {name: median}, "ratio": {a: {b: median over repeats of t_a / t_b}}, "quartiles": {a:
    {b: (25th, 75th percentile of those ratios)}}, "raw": ...}``; the ratios are paired (same repeat), which
    cancels drifts of a loaded machine much better than a ratio of medians, and the quartiles say how far a
    single repeat strays (a target is met robustly where the unfavourable quartile meets it too).
    """
    for fn in setups.values():
        fn()
    raw: dict[str, list[float]] = {k: [] for k in setups}
    for _ in range(repeats):
        for k, fn in setups.items():
            raw[k].append(once(fn, device))
    seconds = {k: statistics.median(v) for k, v in raw.items()}
    pairs = {a: {b: [x / y for x, y in zip(raw[a], raw[b], strict=True)] for b in raw} for a in raw}
    ratio = {a: {b: statistics.median(r) for b, r in row.items()} for a, row in pairs.items()}
    return {"seconds": seconds, "ratio": ratio, "quartiles": {a: {b: quartiles(r) for b, r in row.items()}
            for a, row in pairs.items()}, "raw": raw}  # fmt: skip


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """25th and 75th percentile (the values themselves for fewer than two)."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def spread(median: float, q: tuple[float, float], digits: int, q_digits: int = 2) -> str:
    """A paired ratio with its quartiles over the repeats, e.g. ``0.871 [0.85-0.90]``."""
    return f"{median:.{digits}f} [{q[0]:.{q_digits}f}-{q[1]:.{q_digits}f}]"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux's VmHWM (/proc/self/status) where available: ``ru_maxrss`` survives fork and exec, so a subprocess
    started by a large parent would report at least the parent's size at the fork.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_subprocess(script: str | Path, args: Sequence[str]) -> float | None:
    """Run ``script args`` in a fresh interpreter; it prints a JSON line with ``peak_rss_mb`` last."""
    cmd = [sys.executable, str(script), *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"peak-RSS subprocess failed ({' '.join(args)}): {done.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def _native_kernels() -> str:
    """Which implementation the CPU runs used for QCFS and the IF scan: the fused C++ kernels of
    ``snnconv.native`` or the PyTorch paths (``SNNCONV_NATIVE=0``, or no compiler)."""
    from snnconv.native import available

    return "native C++ (snnconv.native)" if available() else "PyTorch ops"


def machine(threads: int, device: str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on, including the load average at the time."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": threads,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "device": device,
        "allocator": ALLOCATOR,
        "native_kernels": _native_kernels(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def write_json(name: str, meta: dict[str, Any], results: list[dict[str, Any]]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / name
    meta = {**meta, "command": " ".join([Path(sys.executable).name, *sys.argv])}
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return out
