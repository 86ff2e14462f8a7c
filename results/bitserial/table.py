"""Collect the JSON reports `run.sh` wrote into results/bitserial/table.md (seed 001 Tables 4 and 5 shapes).

.venv/bin/python results/bitserial/table.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _load(name: str) -> dict | None:
    path = HERE / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _table5(model: str) -> list[str]:
    rows = []
    for T in (2, 3, 4):
        L = (1 << T) - 1
        r = _load(f"{model}_L{L}_T{T}")
        if r is None:
            continue
        t = str(T)
        rows.append(
            f"| {T} | {L} | {r['ann_accuracy']:.2f} | {r['qann_accuracy'][t]:.2f} | {r['snn_accuracy'][t]:.2f} "
            f"| {r['disagreements'][t]} / {r['samples']} | {r['dtype']} | {r['spiking_activity'][t]:.4f} |"
        )
    if not rows:
        return []
    return ["| T (bits) | L | ANN % | QANN % | SNN % | SNN ≠ QANN | dtype | spiking activity |",
            "|---|---|---|---|---|---|---|---|", *rows]  # fmt: skip


def _table4(model: str) -> list[str]:
    r = _load(f"{model}_ablation")
    if r is None:
        return []
    Ts = [str(t) for t in r["T"]]
    variants = {"full": r} | r["ablations"]
    lines = ["| variant | " + " | ".join(f"T = {t}" for t in Ts) + " |", "|---|" + "---|" * len(Ts)]
    for name, v in variants.items():
        cells = " | ".join(f"{v['snn_accuracy'][t]:.2f} ({v['disagreements'][t]})" for t in Ts)
        lines.append(f"| {name} | {cells} |")
    return [f"L = {r['levels']}, {r['samples']} test images; cells: SNN accuracy % (images whose prediction differs "
            "from the QANN at that T).", "", *lines]  # fmt: skip


def _sparsity(model: str) -> list[str]:
    rows = []
    for coef in ("0", "1e-6", "1e-5"):
        r = _load(f"{model}_L7_T3" if coef == "0" else f"{model}_L7_sparsity{coef}")
        if r is not None:
            rows.append(f"| {coef} | {r['snn_accuracy']['3']:.2f} | {r['disagreements']['3']} | "
                        f"{r['spiking_activity']['3']:.4f} |")  # fmt: skip
    if len(rows) < 2:
        return []
    return ["| sparsity coefficient | SNN % (T = 3) | SNN ≠ QANN | spiking activity |", "|---|---|---|---|", *rows]


def _extra_steps(model: str) -> list[str]:
    rows = []
    for T in (2, 3, 4):
        L = (1 << T) - 1
        refine, pad = _load(f"{model}_L{L}_extra_refine"), _load(f"{model}_L{L}_extra_pad")
        if refine is None or pad is None:
            continue
        for t in refine["T"]:
            k = str(t)
            extra = "exact" if t == T else f"exact + {t - T}"
            rows.append(
                f"| {L} | {t} ({extra}) | {refine['ann_accuracy']:.2f} | {refine['snn_accuracy'][k]:.2f} "
                f"({refine['disagreements'][k]}) | {pad['snn_accuracy'][k]:.2f} ({pad['disagreements'][k]}) "
                f"| {refine['spiking_activity'][k]:.4f} / {pad['spiking_activity'][k]:.4f} |"
            )
    if not rows:
        return []
    return ["Made by `bash results/bitserial/extra_steps.sh` (the same training as above, on this machine). "
            "`refine` (the seed's reading, SPEC §3; the default for T above the exact T) fires θ·2^-t below the "
            "LSB, so the SNN is a finer quantizer of clip(z, 0, λ) than the ANN; `pad` adds silent leading bits, so "
            "the SNN equals the QANN (= the ANN). In brackets: test images whose SNN prediction differs from its "
            "reference QANN (the refined one for `refine`).", "",
            "| L | T (steps) | ANN % | SNN % refine | SNN % pad | spiking activity refine / pad |",
            "|---|---|---|---|---|---|", *rows]  # fmt: skip


def main() -> None:
    out = ["# Error-free bit-serial conversion on Fashion-MNIST (seed 001), small CPU budget", "",
           "Made by `MODELS=\"small_cnn vgg16\" bash results/bitserial/run.sh` (3 epochs on 20,000 training images, "
           "Adam; QCFS with L = 2^T − 1 levels so T bits are exact), then `python results/bitserial/table.py`. "
           "Spiking activity: spikes / (neurons · T) over the hidden layers.", ""]  # fmt: skip
    for model in ("small_cnn", "vgg16"):
        sections = [
            ("QANN vs bit-serial SNN (Table 5 shape)", _table5(model)),
            ("Ablations (Table 4 shape): each component switched off", _table4(model)),
            ("Bit-level ℓ1 sparsity regularizer: activity falls as the coefficient grows", _sparsity(model)),
            ("More steps than bits (Tables 1-2 shape): refine vs pad", _extra_steps(model)),
        ]
        sections = [(title, lines) for title, lines in sections if lines]
        if not sections:
            continue
        out += [f"## {model}" + (" (width 0.25)" if model == "vgg16" else ""), ""]
        for title, lines in sections:
            out += [f"### {title}", "", *lines, ""]
    (HERE / "table.md").write_text("\n".join(out))
    print("\n".join(out))


if __name__ == "__main__":
    main()
