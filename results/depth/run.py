"""Depth study (issue 28): train, evaluate and analyse each arm with the public CLI; resumable.

    python results/depth/run.py ARM [ARM ...] [--runs DIR]      # or: --list

Each arm trains into DIR/ARM (checkpoints stay out of the repository), then writes to results/depth/ARM/:
``command.txt`` (every command it ran and the code commit), ``metrics.jsonl`` (the training curve),
``eval_if.json`` (ANN vs SNN on all 10,000 test images, **last** epoch's weights: no selection by test accuracy)
and ``analyze_if_T{1,2,4}.json`` (per-layer error decomposition on 1,024 test images). Killed? Run it again: a
finished step is skipped, a half-trained run resumes from DIR/ARM/last.pt.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BASE = ["--dataset", "fashion-mnist", "--act", "qcfs"]
# name -> extra `snnconv train` arguments (defaults otherwise: L = 4, SGD 0.1, cosine, wd 5e-4, crop + flip, dropout 0)
MODELS = {"v16": "vgg16", "v11": "vgg11", "r20": "resnet20"}


def _arm(model: str, width: str, epochs: int, *extra: str) -> list[str]:
    return ["--model", MODELS[model], "--width", width, "--epochs", str(epochs), *extra]


ARMS: dict[str, list[str]] = {
    "v16-w025-e30": _arm("v16", "0.25", 30),
    "v16-w025-e30-drop05": _arm("v16", "0.25", 30, "--dropout", "0.5"),  # the classifier dropout before issue 28
    "v16-w025-e60": _arm("v16", "0.25", 60),
    "v16-w025-e120": _arm("v16", "0.25", 120),
    "v16-w050-e30": _arm("v16", "0.5", 30),
    "v16-w025-e30-L8": _arm("v16", "0.25", 30, "--levels", "8"),
    "v16-w025-e30-reg01": _arm("v16", "0.25", 30, "--qcfs-reg", "0.1"),
    "v11-w025-e30": _arm("v11", "0.25", 30),
    "r20-w050-e30": _arm("r20", "0.5", 30),
}
for _name, _args in list(ARMS.items()):  # seeds 1 and 2 of every arm, for differences under one point
    for _seed in (1, 2):
        ARMS[f"{_name}-s{_seed}"] = [*_args, "--seed", str(_seed)]
EVAL_T = "1,2,4,8,16,32"
ANALYZE_T = (1, 2, 4)


def portable(text: str, runs: Path) -> str:
    """``text`` without this machine's paths: the run folder as ``RUNS``, the repository relative, ``snnconv``."""
    text = text.replace(str(Path(sys.executable).with_name("snnconv")), "snnconv")
    return text.replace(str(runs.resolve()), "RUNS").replace(str(runs), "RUNS").replace(str(ROOT) + "/", "")


def _run(cmd: list[str], log: Path, runs: Path) -> None:
    with log.open("a") as f:
        f.write(portable(" ".join(cmd), runs) + "\n")
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def run_arm(name: str, runs: Path, snnconv: str) -> None:
    out, res = runs / name, HERE / name
    res.mkdir(parents=True, exist_ok=True)
    log = res / "command.txt"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
    with log.open("a") as f:
        f.write(f"# code {commit}\n")
    done = out / "last.pt"
    config = json.loads((out / "config.json").read_text()) if (out / "config.json").is_file() else None
    history = (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").is_file() else []
    if not (config and len(history) >= config["epochs"]):
        train = [snnconv, "train", *BASE, *ARMS[name], "--out", str(out)] + (["--resume"] if done.is_file() else [])
        _run(train, log, runs)
    shutil.copy(out / "metrics.jsonl", res / "metrics.jsonl")
    (res / "config.json").write_text(portable((out / "config.json").read_text(), runs))
    if not (res / "eval_if.json").is_file():
        _run([snnconv, "evaluate", str(out), "--checkpoint", "last", "--T", EVAL_T,
              "--json", str(res / "eval_if.json")], log, runs)  # fmt: skip
    for T in ANALYZE_T:
        target = res / f"analyze_if_T{T}.json"
        if not target.is_file():
            _run([snnconv, "analyze", str(out), "--checkpoint", "last", "--T", str(T), "--batches", "8"], log, runs)
            shutil.copy(out / f"analyze_if_T{T}.json", target)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("arms", nargs="*")
    p.add_argument("--runs", default="runs/depth", help="where checkpoints go (outside the repository)")
    p.add_argument("--list", action="store_true")
    args = p.parse_args()
    if args.list or not args.arms:
        for k, v in ARMS.items():
            print(f"{k:28s} {' '.join(v)}")
        return 0
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arms {unknown}; --list shows them")
    snnconv = str(Path(sys.executable).with_name("snnconv"))
    for name in args.arms:
        run_arm(name, Path(args.runs), snnconv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
