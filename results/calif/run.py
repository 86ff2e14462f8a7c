"""Seed 003 Table 3 in miniature: 8-bit QAT ANN vs Ca-LIF SNN at T = 8, 16, 32, 64, 128 (Fashion-MNIST).

LeNet-5 and VGG-9 (width 0.25), each trained briefly (a Fashion-MNIST training subset, a few epochs) and evaluated
on a test subset, so absolute accuracies are far from the paper's; the point is the shape of the table. Two
neurons: the seed's (one spike per step, ``max_spikes_per_step=1``: a neuron sends at most T + 1 spikes, so accuracy
rises with T as in seed 003 Table 3) and the burst extension (``None``: the SNN reproduces the QAT model at every
T). Input codings: ``codes`` (the QANN's own integer input codes as spike trains) and, for LeNet-5, ``isi`` (the
paper's inter-spike-interval pixel coding, N = floor(T·p/255) spikes). Run from the repository root (resumes finished or
partial training runs under --out):

    .venv/bin/python results/calif/run.py [--out runs/calif] [--subset 10000] [--epochs 3] [--test-subset 500]

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
MODELS = {"lenet5": 1.0, "vgg9": 0.25}  # model: width
CODINGS = {"lenet5": ("codes", "isi"), "vgg9": ("codes",)}  # VGG-9 with ISI too would double its 2-core time
NEURONS = {"one spike per step (seed)": 1, "burst": None}  # label: max_spikes_per_step


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
    p.add_argument("--test-subset", type=int, default=500, help="Fashion-MNIST test images")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    base = dict(model="lenet5", act="relu", batch_size=64, optimizer="adam", lr=2e-3, weight_decay=0.0, augment=False,
                device="cpu")  # fmt: skip
    runs = {m: TrainConfig(**{**base, "model": m}, width=w, dataset="fashion-mnist", epochs=args.epochs,
                           subset=args.subset, out=f"{args.out}/fmnist_{m}") for m, w in MODELS.items()}  # fmt: skip
    results, timings = {}, {}
    for model, cfg in runs.items():
        # freeze BN statistics and quantizer scales for the last epoch (torch.ao QAT recipe)
        timings[f"{model} train_s"] = train(cfg, args.bits, freeze=max(cfg.epochs - 1, 1))
        for coding in CODINGS[model]:
            for neuron, cap in NEURONS.items():
                t = time.time()
                report = evaluate_calif_run(cfg.out, TS, subset=args.test_subset, input_coding=coding, progress=False,
                                            max_spikes_per_step=cap)  # fmt: skip
                print_calif_report(report)
                name = f"{model} / {coding} / {neuron}"
                results[name] = report
                timings[f"{name} eval_s"] = time.time() - t
                partial = {"command": "partial", "T": TS, "results": results, "timings_s": timings}
                (HERE / "results.json").write_text(json.dumps(partial, indent=2) + "\n")
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "results/calif/run.py", *sys.argv[1:]])
    head = "| Model / input coding / neuron | QAT ANN | " + " | ".join(f"T = {t}" for t in TS) + " | gap at T = 128 |"
    lines = [head, "|" + "---|" * (len(TS) + 3)]
    for name, r in results.items():
        snn = r["snn_accuracy"]
        lines.append(f"| {name} | {r['qat_accuracy']:.2f}% | " + " | ".join(f"{snn[str(t)]:.2f}%" for t in TS)
                     + f" | {r['gap']['128']:+.2f} |")  # fmt: skip
    agree = ["| Model / input coding / neuron | " + " | ".join(f"T = {t}" for t in TS) + " |",
             "|" + "---|" * (len(TS) + 1)]  # fmt: skip
    for name, r in results.items():
        agree.append(f"| {name} | " + " | ".join(f"{100 * r['agreement'][str(t)]:.2f}%" for t in TS) + " |")
    rates = ["| Model / input coding / neuron | " + " | ".join(f"T = {t}" for t in TS) + " |",
             "|" + "---|" * (len(TS) + 1)]  # fmt: skip
    for name, r in results.items():
        rates.append(f"| {name} | " + " | ".join(f"{r['spikes_per_image'][str(t)]:.0f}" for t in TS) + " |")
    cfg = runs["lenet5"]
    text = (
        f"# {args.bits}-bit QAT ANN vs Ca-LIF SNN (seed 003 Table 3 shape): short training budget ({cfg.epochs} "
        f"epochs on {cfg.subset} images), first {args.test_subset} test images\n\n"
        f"Command: `{command}`\n\n"
        f"LeNet-5 (width 1) and VGG-9 (width {MODELS['vgg9']}), average pooling, BN folded by torch.ao QAT, symmetric "
        f"{args.bits}-bit activations with zero point 0, power-of-two activation scales (BN statistics and scales "
        f"frozen for the last epoch), trained on [0, 1] pixels of {cfg.subset} Fashion-MNIST training images for "
        f"{cfg.epochs} epochs; Adam (lr 2e-3, cosine), batch 64, CPU, {args.threads} thread(s).\n\n"
        "Neurons: *one spike per step (seed)* is seed 003's Ca-LIF neuron (§3.2, Fig. 3; `max_spikes_per_step=1`, "
        "the default): at most one spike per step, the residual potential carried over, one rounding spike after "
        "step T, so a neuron sends at most T + 1 spikes and large codes need long windows; *burst* "
        "(`max_spikes_per_step=None`, snnconv's extension) fires one spike per threshold crossed and reproduces the "
        "QAT model at every T with exact input codes. Input coding `codes`: the QAT model's integer input codes as "
        "spike trains; `isi` (LeNet-5 only, for time): inter-spike-interval pixel coding (N = floor(T·p/255) spikes, "
        "the n-th at floor(n·255/p)), the paper's.\n\n"
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
