"""Simulation speed: SNN time over T BN-folded ANN passes, both schedules, img/s and peak RSS.

    .venv/bin/python benchmarks/simulate.py [--model vgg16] [--batch 32] [--T 1,4,8,32] [--threads 2]
    .venv/bin/python benchmarks/simulate.py --method bitserial --T 2,3,4,8   # vs T passes of its QANN

For ``--method if`` both schedules are timed (layer by layer with time folded into the batch, and step by
step); ``--method bitserial`` runs layer by layer only (its neurons fire after integrating all T inputs;
seed 001 A.3) and its baseline is the quantized ANN it equals.

All times come from this one process after a warm-up. Each ratio is a median over repeats of a *paired*
measurement: T baseline passes timed right before the SNN run they are compared with, so slow drifts of a shared
machine cancel. Peak RSS is measured per setup in a fresh subprocess (ru_maxrss). Results: a table on stdout and
benchmarks/results/simulate_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def build(model: str, batch: int, seed: int = 0, method: str = "if", T: int | None = None):
    """(baseline ANN callable, SNN, input): the BN-folded ANN for "if", the QANN for "bitserial"."""
    from snnconv import QCFS, convert, fold_bn
    from snnconv.convert import quantized_reference
    from snnconv.models import create

    torch.manual_seed(seed)
    ann = create(model, num_classes=10, in_channels=3, input_size=32).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # BN statistics and thresholds of a plausible trained net (random weights)
        for m in ann.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
            elif isinstance(m, QCFS):
                m.threshold.fill_(1.0)
    x = torch.randn(batch, 3, 32, 32, generator=g)
    if method == "bitserial":
        exact = convert(ann, method="bitserial").meta["T"]
        kw = {"T": exact, "steps": T} if T is not None and T <= exact else {"T": T}
        qann = fold_bn(quantized_reference(ann, kw["T"], steps=kw.get("steps")).graph)  # BN folded, like the ANN
        return qann, convert(ann, "bitserial", **kw), x
    return fold_bn(ann), convert(ann), x


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def paired_ratio(baseline, snn_run, T: int, repeats: int) -> tuple[float, float]:
    """Median of (SNN time / time of T baseline passes) over repeats, and the median SNN time."""

    def once(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    snn_run()  # warm-up
    ratios, times = [], []
    for _ in range(repeats):
        base = sum(once(baseline) for _ in range(T))
        t = once(snn_run)
        ratios.append(t / base)
        times.append(t)
    return statistics.median(ratios), statistics.median(times)


def one(model: str, batch: int, what: str, T: int, schedule: str, repeats: int, method: str) -> dict:
    from snnconv import simulate

    folded, snn, x = build(model, batch, method=method, T=T)
    with torch.no_grad():
        if what == "ann":
            t = median_time(lambda: folded(x), repeats)
        else:
            t = median_time(lambda: simulate(snn, x, T, schedule=schedule), repeats)
    return {"seconds": t, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def rss_subprocess(args, what: str, T: int, schedule: str) -> float:
    cmd = [sys.executable, __file__, "--one", what, str(T), schedule, "--model", args.model, "--method", args.method,
           "--batch", str(args.batch), "--threads", str(args.threads), "--repeats", "1"]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_mb"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vgg16")
    p.add_argument("--method", default="if", choices=("if", "bitserial"))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--T", default="1,4,8,32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-rss", action="store_true", help="skip the per-setup peak-RSS subprocesses")
    p.add_argument("--one", nargs=3, metavar=("WHAT", "T", "SCHEDULE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        what, T, schedule = args.one
        print(json.dumps(one(args.model, args.batch, what, int(T), schedule, args.repeats, args.method)))
        return

    from snnconv import simulate
    from snnconv.report import table

    Ts = [int(t) for t in args.T.split(",")]
    schedules = ("layer", "step") if args.method == "if" else ("layer",)
    base = "ANN (BN folded)" if args.method == "if" else "QANN"
    rows, records = [], []
    with torch.no_grad():
        folded, snn, x = build(args.model, args.batch, method=args.method, T=Ts[0])
        t_ann = median_time(lambda: folded(x), args.repeats)
        rss = None if args.no_rss else rss_subprocess(args, "ann", Ts[0], "layer")
        rows.append([base, "-", f"{args.batch / t_ann:.1f}", "1.000", rss and f"{rss:.0f}"])
        records.append({"setup": "ann", "seconds": t_ann, "peak_rss_mb": rss})
        for T in Ts:
            if args.method == "bitserial":
                _, snn, _ = build(args.model, args.batch, method="bitserial", T=T)
            for schedule in schedules:
                reps = max(2, args.repeats if T <= 8 else args.repeats // 2)
                ratio, t = paired_ratio(lambda: folded(x), lambda T=T, s=schedule, n=snn: simulate(n, x, T, schedule=s),
                                        T, reps)  # fmt: skip
                rss = None if args.no_rss else rss_subprocess(args, "snn", T, schedule)
                rows.append([f"SNN {args.method} {schedule}", T, f"{args.batch / t:.1f}", f"{ratio:.3f}",
                             rss and f"{rss:.0f}"])  # fmt: skip
                records.append({"setup": f"snn-{args.method}-{schedule}", "T": T, "seconds": t,
                                "ratio_to_T_baseline": ratio, "peak_rss_mb": rss})  # fmt: skip
    print(f"{args.model}, batch {args.batch}, {args.threads} threads, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}")  # fmt: skip
    print(table(["setup", "T", "img/s", f"time / (T x {base})", "peak RSS MB"], rows))
    out = HERE / "results" / f"simulate_{args.method}_{args.model}.json"
    out.parent.mkdir(exist_ok=True)
    meta = {"model": args.model, "method": args.method, "batch": args.batch, "threads": args.threads,
            "torch": torch.__version__, "command": " ".join(sys.argv)}  # fmt: skip
    out.write_text(json.dumps({"meta": meta, "results": records}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
