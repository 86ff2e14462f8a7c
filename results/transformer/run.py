"""Seed 001 A.6 in miniature: a small ViT with QCFS in place of GELU on Fashion-MNIST, converted two ways (issue 11).

``vit_tiny`` (7×7 patches → 16 tokens, dim 64, depth 2, 4 heads, FFN 128, pre-LN, mean pooling) is trained with
QCFS (L = 7 levels) in the FFNs, then converted with

* the IF method (seed 004; rate coding: attention and LayerNorm are ``RateAnalog`` stages that read the running
  mean of their inputs), and
* the bit-serial method (seed 001, modified neuron; sum coding: attention and LayerNorm are ``SumAnalog`` stages
  that read the sum over all T steps). L = 7 = 2^3 - 1 makes the bit-serial SNN exact at T = 3 bits; at T = 4, 8,
  16 it uses T bits (θ = 2^T·Δ with the clamp u ≤ λ), which is still exact, so it equals the ANN at every T here.

Run from the repository root (``--subset``/``--epochs`` set the training budget; ``--test-subset`` the number of
test images used for the per-epoch evaluation and for the SNN evaluation, default all 10,000)::

    .venv/bin/python results/transformer/run.py [--subset 30000] [--epochs 5] [--test-subset N] [--threads 2]

Writes results/transformer/results.json (accuracies in %, the command, timings) and results/transformer/table.md.
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
from snnconv import convert
from snnconv.evaluate import accuracy, sweep, sweep_bitserial
from snnconv.runs import load_run, test_loader, train_run
from snnconv.train import TrainConfig

HERE = Path(__file__).resolve().parent
TS = [4, 8, 16]


def write_table(r: dict) -> str:
    a, bs, rate = r["args"], r["bitserial"], r["if"]
    head = "| Network | T = " + " | T = ".join(map(str, TS)) + " |"
    rows = [
        head,
        "|---|" + "---|" * len(TS),
        f"| QCFS ANN (L = {a['levels']}) | " + " | ".join(f"{r['ann_accuracy']:.2f}%" for _ in TS) + " |",
        "| QCFS-IF SNN (rate; analog stages read running means) | "
        + " | ".join(f"{rate['snn_accuracy'][str(t)]:.2f}%" for t in TS) + " |",
        "| bit-serial SNN (modified neuron; analog stages read sums) | "
        + " | ".join(f"{bs['snn_accuracy'][str(t)]:.2f}%" for t in TS) + " |",
        "| bit-serial: test images whose prediction differs from the QANN | "
        + " | ".join(str(bs["disagreements"][str(t)]) for t in TS) + " |",
        "| spiking activity IF / bit-serial (spikes per neuron per step) | "
        + " | ".join(f"{rate['total_spike_rate'][str(t)]:.3f} / {bs['spiking_activity'][str(t)]:.3f}" for t in TS)
        + " |",
    ]  # fmt: skip
    exact = r["bitserial_exact"]
    text = (
        "# ViT with QCFS in place of GELU on Fashion-MNIST (seed 001 A.6 shape)\n\n"
        f"Command: `{r['command']}`\n\n"
        f"`vit_tiny`: 7×7 patches (16 tokens), dim 64, depth 2, 4 heads, FFN 128, pre-LN, mean pooling; QCFS with "
        f"L = {a['levels']} levels in the FFNs. Trained {a['epochs']} epoch(s) on {a['subset'] or 60000} training "
        f"images (Adam, lr {a['lr']}); evaluated on {r['test_images']} test images "
        f"({bs['dtype']} for the bit-serial SNN). Only the FFN activations spike; attention and LayerNorm stay "
        "analog (IF: they read the running mean of their input and re-emit t·f(ā(t)) - (t-1)·f(ā(t-1)); "
        "bit-serial: f of the summed input, sent at t = 1).\n\n"
        + "\n".join(rows)
        + f"\n\nBit-serial exact T: L = {a['levels']} needs T = {bs['exact_T']} bits (2^T - 1 ≥ L); at that T the "
        f"SNN scores {exact['snn_accuracy'][str(bs['exact_T'])]:.2f}% (QANN "
        f"{exact['qann_accuracy'][str(bs['exact_T'])]:.2f}%, {exact['disagreements'][str(bs['exact_T'])]} "
        f"disagreements). T = {', '.join(map(str, TS))} use T bits, still exact (equal to the ANN). "
        "The bias of every Linear (and the position embedding) is injected at t = 1: there is no BN to shift "
        "(seed 001 A.6).\n\n"
        f"Training {r['train_s']:.0f} s, IF evaluation {r['if_s']:.0f} s, bit-serial evaluation "
        f"{r['bitserial_s']:.0f} s.\n"
    )
    (HERE / "table.md").write_text(text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/transformer_vit_tiny", help="run directory")
    p.add_argument("--subset", type=int, default=30000, help="training images (0 = all 60,000)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--test-subset", type=int, default=0, help="test images (0 = all 10,000)")
    p.add_argument("--levels", type=int, default=7)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threshold-init", type=float, default=2.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--float32", action="store_true", help="bit-serial evaluation in float32 (default float64)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    test_subset = args.test_subset or None
    snnconv.runs.test_loader = partial(test_loader, subset=test_subset)  # per-epoch evaluation on the same images
    cfg = TrainConfig(model="vit_tiny", dataset="fashion-mnist", act="qcfs", levels=args.levels, epochs=args.epochs,
                      batch_size=args.batch_size, optimizer="adam", lr=args.lr, weight_decay=0.0,
                      threshold_init=args.threshold_init, subset=args.subset or None, device="cpu", augment=False,
                      out=args.out)  # fmt: skip
    t0 = time.time()
    resume = (Path(args.out) / "last.pt").is_file()
    train_run(cfg, resume=resume)
    t_train = time.time() - t0
    ann, _ = load_run(args.out, "last")
    loader = test_loader(cfg, batch_size=256, subset=test_subset)

    t0 = time.time()
    ann_acc = accuracy(ann, loader)
    rate = sweep(convert(ann, method="if"), loader, TS, ann=None, progress=False).to_dict()
    t_if = time.time() - t0
    t0 = time.time()
    dtype = torch.float32 if args.float32 else torch.float64
    bits = sweep_bitserial(ann, loader, TS, dtype=dtype, progress=False)
    t_bits = time.time() - t0
    exact = sweep_bitserial(ann, loader, [bits["exact_T"]], dtype=dtype, progress=False)

    result = {
        "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "results/transformer/run.py", *sys.argv[1:]]),
        "args": vars(args),
        "config": cfg.to_dict(),
        "test_images": bits["samples"],
        "ann_accuracy": ann_acc,
        "if": rate,
        "bitserial": bits,
        "bitserial_exact": exact,
        "train_s": round(t_train, 1),
        "if_s": round(t_if, 1),
        "bitserial_s": round(t_bits, 1),
    }
    (HERE / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(write_table(result))


if __name__ == "__main__":
    main()
