"""Tables and plots of the depth study from results/depth/*/ (written by run.py): ``python results/depth/report.py``.

Writes results/depth/table.md (accuracy vs T per arm, seed 004's VGG-16 beside it), accuracy_vs_T.png,
error_by_layer.png (mean |total error| / θ against the spiking layer's index, VGG-11 and VGG-16 at T = 1 / 2 / 4)
and curves.png (test accuracy per epoch). Arms without an eval_if.json yet are listed as unfinished.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
# seed 004, CIFAR-10, L = 4, 300 epochs: ANN from Table 2, SNN at T = 1 ... 32 from Table S2 (the same runs)
SEED004 = {
    "seed 004 VGG-16, CIFAR-10": {"ann": 95.52, 1: 88.41, 2: 91.18, 4: 93.96, 8: 94.95, 16: 95.40, 32: 95.54},
    "seed 004 ResNet-20, CIFAR-10": {"ann": 91.77, 1: 62.43, 2: 73.20, 4: 83.75, 8: 89.55, 16: 91.62, 32: 92.24},
}


def arms() -> dict[str, dict]:
    found = {}
    for d in sorted(p for p in HERE.iterdir() if p.is_dir()):
        arm: dict = {"config": _json(d / "config.json"), "eval": _json(d / "eval_if.json"), "analyze": {}}
        for f in sorted(d.glob("analyze_if_T*.json")):
            arm["analyze"][int(f.stem.removeprefix("analyze_if_T"))] = _json(f)
        lines = (d / "metrics.jsonl").read_text().splitlines() if (d / "metrics.jsonl").is_file() else []
        arm["curve"] = [json.loads(s) for s in lines if s.strip()]
        found[d.name] = arm
    return found


def _json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def table(found: dict[str, dict]) -> str:
    Ts = [1, 2, 4, 8, 16, 32]
    head = "| arm | epochs | ANN | " + " | ".join(f"T={t}" for t in Ts) + " | T=4 − ANN |"
    rows = [head, "|" + "---|" * (len(Ts) + 4)]
    for label, ref in SEED004.items():
        rows.append(f"| {label} (Tables 2, S2) | 300 | {ref['ann']:.2f} | "
                    + " | ".join(f"{ref[t]:.2f}" for t in Ts) + f" | {ref[4] - ref['ann']:+.2f} |")  # fmt: skip
    for name, arm in found.items():
        ev, epochs = arm["eval"], len(arm["curve"])
        if ev is None:
            rows.append(f"| {name} | {epochs} (unfinished) | | " + " | ".join("" for _ in Ts) + " | |")
            continue
        snn = {int(t): a for t, a in ev["snn_accuracy"].items()}
        cells = " | ".join(f"{snn[t]:.2f}" if t in snn else "" for t in Ts)
        gap = f"{snn[4] - ev['ann_accuracy']:+.2f}" if 4 in snn else ""
        rows.append(f"| {name} | {epochs} | {ev['ann_accuracy']:.2f} | {cells} | {gap} |")
    return "\n".join(rows)


def plots(found: dict[str, dict]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, arm in found.items():
        if arm["eval"]:
            snn = sorted((int(t), a) for t, a in arm["eval"]["snn_accuracy"].items())
            ax.plot([t for t, _ in snn], [a for _, a in snn], marker="o", label=name)
    ax.set(
        xscale="log",
        xlabel="T (time steps)",
        ylabel="SNN test accuracy %",
        title="Fashion-MNIST, all 10,000 test images",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    written.append(_save(fig, HERE / "accuracy_vs_T.png"))

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
    for ax, T in zip(axes, (1, 2, 4), strict=True):
        for name, arm in found.items():
            errors = (arm["analyze"].get(T) or {}).get("errors")
            if errors and name.startswith(("vgg11", "vgg16")):
                mae = [errors["mean_abs"][k]["total"] for k in errors["layers"]]
                ax.plot(range(1, len(mae) + 1), mae, marker=".", label=name)
        ax.set(title=f"T = {T}", xlabel="spiking layer index")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean |SNN − ANN| / θ (total error)")
    axes[-1].legend(fontsize=7)
    written.append(_save(fig, HERE / "error_by_layer.png"))

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, arm in found.items():
        if arm["curve"]:
            ax.plot([m["epoch"] for m in arm["curve"]], [100 * m["test_acc"] for m in arm["curve"]], label=name)
    ax.set(xlabel="epoch", ylabel="ANN test accuracy %", title="training curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    written.append(_save(fig, HERE / "curves.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main() -> None:
    found = arms()
    text = ("Depth study (issue 28): last-epoch weights, all 10,000 Fashion-MNIST test images; commands in each "
            "arm's command.txt.\n\n" + table(found) + "\n")  # fmt: skip
    (HERE / "table.md").write_text(text)
    print(text)
    for p in plots(found):
        print("wrote", p.relative_to(HERE.parent.parent))


if __name__ == "__main__":
    main()
