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
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import (  # noqa: E402
    machine,
    median_time,
    paired_ratio,
    peak_rss_mb,
    random_ann,
    random_input,
    write_json,
)
from _timing import rss_subprocess as _rss  # noqa: E402


def build(model: str, batch: int, seed: int = 0, method: str = "if", T: int | None = None):
    """(baseline ANN callable, SNN, input): the BN-folded ANN for "if", the QANN for "bitserial"."""
    from snnconv import convert, fold_bn
    from snnconv.convert import quantized_reference
    from snnconv.evaluate import bitserial_plan

    ann = random_ann(model, levels=4, seed=seed)
    x = random_input(batch, seed)
    if method == "bitserial":
        exact = convert(ann, method="bitserial").meta["T"]
        kw = bitserial_plan(exact, T if T is not None else exact, "pad")  # T > exact: as timed before issue 19
        ref = quantized_reference(ann, kw["T"], steps=kw["steps"], extra_steps=kw["extra_steps"])
        qann = fold_bn(ref.graph)  # BN folded, like the ANN
        return qann, convert(ann, "bitserial", **kw), x
    return fold_bn(ann), convert(ann), x


def one(model: str, batch: int, what: str, T: int, schedule: str, repeats: int, method: str) -> dict:
    from snnconv import simulate

    folded, snn, x = build(model, batch, method=method, T=T)
    with torch.no_grad():
        if what == "ann":
            t = median_time(lambda: folded(x), repeats)
        else:
            t = median_time(lambda: simulate(snn, x, T, schedule=schedule), repeats)
    return {"seconds": t, "peak_rss_mb": peak_rss_mb()}


def rss_subprocess(args, what: str, T: int, schedule: str) -> float | None:
    return _rss(__file__, ["--one", what, str(T), schedule, "--model", args.model, "--method", args.method,
                           "--batch", str(args.batch), "--threads", str(args.threads), "--repeats", "1"])  # fmt: skip


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
    info = machine(args.threads)
    print(f"{args.model}, batch {args.batch}, {args.threads} threads, torch {torch.__version__}, {info['cpu']}, "
          f"load average {', '.join(f'{v:.1f}' for v in info['load_average'])}")  # fmt: skip
    print(table(["setup", "T", "img/s", f"time / (T x {base})", "peak RSS MB"], rows))
    meta = {"model": args.model, "method": args.method, "batch": args.batch, "threads": args.threads,
            "machine": info}  # fmt: skip
    print(f"wrote {write_json(f'simulate_{args.method}_{args.model}.json', meta, records)}")


if __name__ == "__main__":
    main()
