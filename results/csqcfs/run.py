"""Seed 002 Table 1 in miniature on Fashion-MNIST: QCFS vs SRP vs CS-QCFS vs CS-QCFS+COS over T (L = 4).

Small budget (thin networks, a training subset, a few epochs, a test subset; during training the per-epoch test
evaluation also uses the test subset), so absolute numbers are far from the paper's; the point is the shape of the
table. COS and SRP run ρ / τ pre-simulation steps before the T result steps: every row reports ρ/τ, T and the
latency ρ + T (τ + T). Run from the repository root, one model per call:

    .venv/bin/python results/csqcfs/run.py --model vgg16 --width 0.25 [--subset 2000] [--epochs 3] \\
        [--finetune-epochs 2] [--test-subset 200] [--rho 4] [--tau 4] [--lr 0.1]

Each call adds (or replaces) its model's entry in results/csqcfs/results.json (accuracies in %, the command,
timings) and rewrites results/csqcfs/table.md from all entries.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from functools import partial
from pathlib import Path

import torch

import snnconv.runs
import snnconv.twostage
from snnconv import convert
from snnconv.analysis.thresholds import threshold_stats
from snnconv.convert.calibration import calibrated_sweep
from snnconv.runs import load_run, test_loader
from snnconv.train import TrainConfig, evaluate
from snnconv.twostage import load_two_stage, two_stage

HERE = Path(__file__).resolve().parent
TS = [1, 2, 4, 8, 16, 32]


def _cell(acc: float, latency: int) -> str:
    return f"{acc:.2f}% ({latency})"


def _section(entry: dict) -> str:
    a = entry["args"]
    head = "| Method | ANN | ρ/τ | " + " | ".join(f"T = {t}" for t in TS) + " |"
    lines = [head, "|" + "---|" * (len(TS) + 3)]
    for name, r in entry["results"].items():
        pre = r.get("rho", r.get("tau", 0))
        cells = " | ".join(_cell(r["snn"][str(t)], r["latency"][str(t)]) for t in TS)
        lines.append(f"| {name} | {r['ann']:.2f}% | {pre} | {cells} |")
    th = entry["thresholds"]
    return (
        f"## {a['model']} (width {a['width']})\n\n"
        f"Command: `{entry['command']}`\n\n"
        f"L = {a['levels']}, {a['subset']} training images, {a['epochs']} epochs layer-wise QCFS + "
        f"{a['finetune_epochs']} fine-tuning epoch(s) of CS-QCFS at lr/10 ({a.get('optimizer', 'sgd')}, lr {a['lr']}); "
        f"{a['test_subset']} test "
        f"images. Cells: SNN accuracy after T result steps (latency ρ + T or τ + T in parentheses).\n\n"
        + "\n".join(lines)
        + f"\n\nCS-QCFS thresholds: MaxDiff {100 * th['max_diff']:.1f}%, AvgDiff {100 * th['avg_diff']:.1f}%. "
        f"Training {entry['train_s']:.0f} s, total {entry['total_s']:.0f} s.\n"
    )


def write_table(payload: dict) -> str:
    text = (
        "# CS-QCFS on Fashion-MNIST, small budget (seed 002 Table 1 shape)\n\n"
        "QCFS: plain IF conversion of layer-wise QCFS. SRP: QCFS + residual-membrane-potential masking (τ pre-run "
        "steps in sync, mask v(τ) > 1e-3·θ, reset to θ/2, T masked steps). CS-QCFS: channel-wise softplus "
        "thresholds after two-stage training. COS: offset-spike calibration (ρ pre-simulation steps layer by layer, "
        "shift v0 by ≥ θ when v(ρ) < 0 after firing or v(ρ) ≥ θ, replay T steps). Numbers in parentheses: total "
        "latency ρ + T / τ + T; the reference paper reports T without ρ.\n\n"
        + "\n".join(_section(e) for e in payload["models"].values())
    )
    (HERE / "table.md").write_text(text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vgg16")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--out", default=None, help="run directory (default runs/csqcfs_<model>)")
    p.add_argument("--subset", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--test-subset", type=int, default=200)
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--rho", type=int, default=4)
    p.add_argument("--tau", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"), help="adam: weight decay 0")
    args = p.parse_args()
    out = args.out or f"runs/csqcfs_{args.model}"
    torch.set_num_threads(args.threads)
    # per-epoch test evaluation during training on the test subset only (the budget is small)
    small_test = partial(test_loader, subset=args.test_subset)
    snnconv.runs.test_loader = small_test
    snnconv.twostage.test_loader = small_test
    t0 = time.time()
    cfg = TrainConfig(model=args.model, dataset="fashion-mnist", act="qcfs", levels=args.levels, epochs=args.epochs,
                      batch_size=128, lr=args.lr, threshold_init=4.0, width=args.width, subset=args.subset,
                      device="cpu", augment=False, out=out, optimizer=args.optimizer,
                      weight_decay=0.0 if args.optimizer == "adam" else 5e-4)  # fmt: skip
    two_stage(cfg, args.finetune_epochs)
    t_train = time.time() - t0
    qcfs_ann, _ = load_run(Path(out) / "stage1", "last")
    cs_ann, _ = load_two_stage(Path(out) / "stage2", "last")
    loader = small_test(cfg)
    rows = [
        ("QCFS", qcfs_ann, {}),
        (f"SRP (QCFS, τ = {args.tau})", qcfs_ann, {"calibration": "srp", "tau": args.tau}),
        ("CS-QCFS", cs_ann, {}),
        (f"CS-QCFS + COS (ρ = {args.rho})", cs_ann, {"calibration": "cos", "rho": args.rho}),
    ]
    results = {}
    for name, ann, kw in rows:
        r = calibrated_sweep(convert(ann, method="if", **kw), loader, TS, progress=False).to_dict()
        results[name] = {"ann": 100 * evaluate(ann, loader)["acc"], "snn": r["snn_accuracy"], "T": r["T"],
                         "latency": r["latency"], "calibration": r["calibration"],
                         **{k: r[k] for k in ("rho", "tau") if k in r}}  # fmt: skip
        print(name, results[name], f"{time.time() - t0:.0f} s", flush=True)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "results/csqcfs/run.py", *sys.argv[1:]])
    path = HERE / "results.json"
    payload = json.loads(path.read_text()) if path.is_file() else {}
    if "models" not in payload:
        payload = {"T": TS, "models": {}}
    payload["models"][args.model] = {
        "command": command, "args": {**vars(args), "out": out}, "results": results,
        "thresholds": threshold_stats(cs_ann).to_dict(), "train_s": t_train, "total_s": time.time() - t0,
    }  # fmt: skip
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(write_table(payload))


if __name__ == "__main__":
    main()
