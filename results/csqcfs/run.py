"""Seed 002 Table 1 in miniature on Fashion-MNIST: QCFS vs SRP vs COS vs CS-QCFS vs CS-QCFS+COS over T.

Small budget (thin small_cnn, a training subset, a few epochs, a test subset), so absolute numbers are far from
the paper's; the point is the shape of the table. Run from the repository root:

    .venv/bin/python results/csqcfs/run.py [--out runs/csqcfs_fmnist] [--subset 8000] [--epochs 4] \
        [--finetune-epochs 3] [--test-subset 1000] [--lr 0.1]

Writes results/csqcfs/table.md and results/csqcfs/results.json (accuracies in %, the command, timings).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from snnconv import convert
from snnconv.analysis.thresholds import threshold_stats
from snnconv.convert.calibration import calibrated_sweep
from snnconv.runs import load_run, test_loader
from snnconv.train import TrainConfig, evaluate
from snnconv.twostage import load_two_stage, two_stage

HERE = Path(__file__).resolve().parent
TS = [1, 2, 4, 8, 16, 32]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/csqcfs_fmnist")
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--subset", type=int, default=8000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--test-subset", type=int, default=1000)
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--rho", type=int, default=2)
    p.add_argument("--tau", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    cfg = TrainConfig(model=args.model, dataset="fashion-mnist", act="qcfs", levels=args.levels, epochs=args.epochs,
                      batch_size=128, lr=args.lr, threshold_init=4.0, width=args.width, subset=args.subset,
                      device="cpu", augment=False, out=args.out)  # fmt: skip
    two_stage(cfg, args.finetune_epochs)
    t_train = time.time() - t0
    qcfs_ann, _ = load_run(Path(args.out) / "stage1", "last")
    cs_ann, _ = load_two_stage(Path(args.out) / "stage2", "last")
    loader = test_loader(cfg, subset=args.test_subset)
    rows = [
        ("QCFS", qcfs_ann, "if", {}),
        (f"SRP (QCFS, tau={args.tau})", qcfs_ann, "srp", {"tau": args.tau}),
        (f"COS (QCFS, rho={args.rho})", qcfs_ann, "cos", {"rho": args.rho}),
        ("CS-QCFS", cs_ann, "if", {}),
        (f"CS-QCFS + COS (rho={args.rho})", cs_ann, "cos", {"rho": args.rho}),
    ]
    results = {}
    for name, ann, method, kw in rows:
        r = calibrated_sweep(convert(ann, method=method, **kw), loader, TS, progress=False)
        results[name] = {"ann": 100 * evaluate(ann, loader)["acc"], "snn": r.snn_accuracy}
        print(name, results[name], flush=True)
    stats = threshold_stats(cs_ann)
    head = "| Method | ANN | " + " | ".join(f"T = {t}" for t in TS) + " |"
    lines = [head, "|" + "---|" * (len(TS) + 2)]
    for name, r in results.items():
        lines.append(f"| {name} | {r['ann']:.2f}% | " + " | ".join(f"{r['snn'][t]:.2f}%" for t in TS) + " |")
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "results/csqcfs/run.py", *sys.argv[1:]])
    text = (
        f"# CS-QCFS on Fashion-MNIST, small budget (seed 002 Table 1 shape)\n\n"
        f"Command: `{command}`\n\n"
        f"{args.model} (width {args.width}), L = {args.levels}, {args.subset} training images, {args.epochs} epochs "
        f"layer-wise QCFS + {args.finetune_epochs} fine-tuning epoch(s) of CS-QCFS at lr/10; "
        f"{args.test_subset} test images. COS/SRP calibration steps are not counted in T.\n\n"
        + "\n".join(lines)
        + f"\n\nCS-QCFS thresholds: MaxDiff {100 * stats.max_diff:.1f}%, AvgDiff {100 * stats.avg_diff:.1f}%\n\n"
        + "```\n" + stats.table() + "\n```\n"
        + f"\nTraining {t_train:.0f} s, total {time.time() - t0:.0f} s.\n"
    )  # fmt: skip
    (HERE / "table.md").write_text(text)
    payload = {"command": command, "T": TS, "results": results, "thresholds": stats.to_dict(),
               "train_s": t_train, "total_s": time.time() - t0}  # fmt: skip
    (HERE / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
