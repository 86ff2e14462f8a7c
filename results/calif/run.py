"""Seed 003 Table 3 in miniature: 8-bit QAT ANN vs Ca-LIF SNN at T = 8, 16, 32, 64, 128 (Fashion-MNIST, digits).

Small budget (LeNet-5, a Fashion-MNIST training subset, a few epochs, a test subset), so absolute accuracies are far
from the paper's; the point is the shape of the table and the QAT-to-SNN gap. Two input codings are reported:
``codes`` (the QANN's own integer input codes as spike trains: the SNN must reproduce the QAT model) and ``isi``
(the paper's inter-spike-interval pixel coding, N = floor(T·p/255) spikes: coarser input at small T).
Run from the repository root (resumes finished/partial training runs under --out):

    .venv/bin/python results/calif/run.py [--out runs/calif] [--subset 10000] [--epochs 3] [--test-subset 2000]

Writes results/calif/table.md and results/calif/results.json (accuracies in %, the command, timings).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from snnconv.qat_runs import evaluate_calif_run, print_calif_report, train_qat_run
from snnconv.train import TrainConfig

HERE = Path(__file__).resolve().parent
TS = [8, 16, 32, 64, 128]
CODINGS = ("codes", "isi")


def train(cfg: TrainConfig, bits: int, freeze: int) -> float:
    t0 = time.time()
    resume = (Path(cfg.out) / "last.pt").is_file()
    r = train_qat_run(cfg, bits, resume=resume, freeze_bn=freeze, freeze_observer=freeze)
    print(f"{cfg.model}/{cfg.dataset}: best QAT test accuracy {100 * r['best_acc']:.2f}% "
          f"(epoch {r['best_epoch']}), {time.time() - t0:.0f} s", flush=True)  # fmt: skip
    return time.time() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/calif")
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--subset", type=int, default=10000, help="Fashion-MNIST training images")
    p.add_argument("--epochs", type=int, default=3, help="Fashion-MNIST epochs")
    p.add_argument("--digits-epochs", type=int, default=12)
    p.add_argument("--test-subset", type=int, default=2000, help="Fashion-MNIST test images (digits: all 360)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    base = dict(model="lenet5", act="relu", batch_size=64, optimizer="adam", lr=2e-3, weight_decay=0.0, augment=False,
                device="cpu")  # fmt: skip
    fmnist = TrainConfig(**base, dataset="fashion-mnist", epochs=args.epochs, subset=args.subset,
                         out=f"{args.out}/fmnist_lenet5")  # fmt: skip
    digits = TrainConfig(**base, dataset="digits", epochs=args.digits_epochs, out=f"{args.out}/digits_lenet5")
    runs = {"fashion-mnist": (fmnist, args.test_subset), "digits": (digits, None)}
    results, timings = {}, {}
    for name, (cfg, test_subset) in runs.items():
        # freeze BN statistics and quantizer scales for the last epoch (torch.ao QAT recipe)
        timings[f"{name} train_s"] = train(cfg, args.bits, freeze=max(cfg.epochs - 1, 1))
        for coding in CODINGS:
            t = time.time()
            report = evaluate_calif_run(cfg.out, TS, subset=test_subset, input_coding=coding, progress=False)
            print_calif_report(report)
            results[f"{name} / {coding}"] = report
            timings[f"{name} {coding} eval_s"] = time.time() - t
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "results/calif/run.py", *sys.argv[1:]])
    head = "| Dataset / input coding | QAT ANN | " + " | ".join(f"T = {t}" for t in TS) + " | gap at T = 128 |"
    lines = [head, "|" + "---|" * (len(TS) + 3)]
    for name, r in results.items():
        snn = r["snn_accuracy"]
        lines.append(f"| {name} | {r['qat_accuracy']:.2f}% | " + " | ".join(f"{snn[str(t)]:.2f}%" for t in TS)
                     + f" | {r['gap']['128']:+.2f} |")  # fmt: skip
    agree = ["| Dataset / input coding | " + " | ".join(f"T = {t}" for t in TS) + " |", "|" + "---|" * (len(TS) + 1)]
    for name, r in results.items():
        agree.append(f"| {name} | " + " | ".join(f"{100 * r['agreement'][str(t)]:.2f}%" for t in TS) + " |")
    rates = ["| Dataset / input coding | " + " | ".join(f"T = {t}" for t in TS) + " |", "|" + "---|" * (len(TS) + 1)]
    for name, r in results.items():
        rates.append(f"| {name} | " + " | ".join(f"{r['spikes_per_image'][str(t)]:.0f}" for t in TS) + " |")
    fm, dg = runs["fashion-mnist"][0], runs["digits"][0]
    text = (
        f"# {args.bits}-bit QAT ANN vs Ca-LIF SNN (seed 003 Table 3 shape), small budget\n\n"
        f"Command: `{command}`\n\n"
        f"LeNet-5 (average pooling, BN folded by torch.ao QAT, symmetric {args.bits}-bit activations with zero "
        f"point 0, power-of-two activation scales; BN statistics and scales frozen for the last epoch), trained on "
        f"[0, 1] pixels. Fashion-MNIST: {fm.subset} training images, {fm.epochs} epochs, first {args.test_subset} "
        f"test images; digits: all 1437 training images, {dg.epochs} epochs, all 360 test images. Adam (lr 2e-3, "
        f"cosine), batch 64, CPU, {args.threads} thread(s).\n\n"
        "Input coding `codes`: the QAT model's integer input codes as spike trains; `isi`: inter-spike-interval "
        "pixel coding (N = floor(T·p/255) spikes, the n-th at floor(n·255/p)). The Ca-LIF neuron may fire several "
        "spikes in one step (one per threshold crossed) and rounds after T steps, so with `codes` the SNN "
        "reproduces the QAT model at every T; with `isi` small T loses input resolution.\n\n"
        "Accuracy:\n\n" + "\n".join(lines)
        + "\n\nAgreement (test images where the SNN predicts the QAT model's class):\n\n" + "\n".join(agree)
        + "\n\nSpikes per image (hidden neurons, either sign, rounding spikes included):\n\n" + "\n".join(rates)
        + f"\n\nTotal {time.time() - t0:.0f} s ("
        + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + ").\n"
    )  # fmt: skip
    (HERE / "table.md").write_text(text)
    payload = {"command": command, "T": TS, "results": results, "timings_s": timings, "total_s": time.time() - t0}
    (HERE / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
