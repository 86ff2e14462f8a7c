"""``snnconv report DIR``: one self-contained HTML page (plots embedded as PNG) from the JSON a run or sweep wrote.

It reads, below DIR: ``eval_*.json`` (accuracy vs T per method; bit-serial SNN vs QANN tables),
``analyze_*.json`` (spike rates, conversion-error decomposition, energy) and a sweep's ``results.json`` (L × T
heatmaps and seed 000's tables). Plots are also written as PNG files next to the page (``DIR/report/``).
"""

from __future__ import annotations

import base64
import html
import json
import warnings
from collections.abc import Callable
from pathlib import Path

from snnconv.analysis import plots
from snnconv.report import table


def _rel(path: Path, root: Path) -> str:
    rel = str(path.parent.relative_to(root))
    return "." if rel == "." else rel


def write_report(directory: str | Path) -> Path:
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"report: {root} is not a directory (pass a run or sweep directory)")
    out = root / "report"
    out.mkdir(exist_ok=True)
    sections: list[tuple[str, list[Path], str]] = []

    evals = _readable(root, out, "eval_*.json", _check_eval)
    rate_coded = {f"{_rel(p, root)} ({r['method']})": r for p, r in evals.items() if r.get("method") != "bitserial"}
    curves = {k: {int(t): a for t, a in r["snn_accuracy"].items()} for k, r in rate_coded.items()}
    if curves:
        ann = {k: r["ann_accuracy"] for k, r in rate_coded.items()}
        png = plots.plot_accuracy_vs_T(curves, out / "accuracy_vs_T.png", ann_accuracy=ann)
        rows = [[k, f"{ann[k]:.2f}", *(f"{v[t]:.2f}" for t in sorted(v))] for k, v in curves.items()]
        Ts = sorted({t for v in curves.values() for t in v})
        sections.append(("Accuracy vs T", [png], table(["run (method)", "ANN", *(f"T={t}" for t in Ts)], rows)))
    for p, r in evals.items():
        if r.get("method") == "bitserial":
            rows = [
                [t, r["qann_accuracy"][str(t)], r["snn_accuracy"][str(t)], r["disagreements"][str(t)]] for t in r["T"]
            ]
            text = table(["T", "QANN %", "SNN %", "SNN≠QANN"], rows)
            sections.append(
                (f"Bit-serial SNN vs QANN: {_rel(p, root)} ({r['samples']} images, {r['dtype']})", [], text)
            )

    for p, a in _readable(root, out, "analyze_*.json", _check_analyze).items():
        rel = _rel(p, root)
        stem = p.stem if rel == "." else f"{rel.replace('/', '_')}_{p.stem}"
        pngs = [plots.plot_spike_rates(a["spikes"]["spike_rate"], out / f"{stem}_spikes.png")]
        if "errors" in a:  # rate-coded methods only
            pngs.append(plots.plot_error_decomposition(a["errors"], out / f"{stem}_errors.png"))
        pngs.append(plots.plot_energy(a["energy"], out / f"{stem}_energy.png"))
        e = a["energy"]
        text = (f"energy per sample: SNN {e['snn_total']:.4g} pJ, ANN {e.get('ann_total') or float('nan'):.4g} pJ, "
                f"ANN/SNN = {e.get('ann_over_snn') or float('nan'):.3f}")  # fmt: skip
        sections.append((f"Analysis {_rel(p, root)} at T={a['T']} ({a['method']})", pngs, text))

    sweep = root / "results.json"
    if sweep.is_file():
        from snnconv.sweep import tables

        results = json.loads(sweep.read_text())
        pngs = []
        for wq in sorted({r["qcfs_reg"] for r in results}):
            grid = {
                r["levels"]: {int(t): a for t, a in r["snn_accuracy"].items()} for r in results if r["qcfs_reg"] == wq
            }
            pngs.append(plots.plot_heatmap(grid, out / f"heatmap_wq{wq:g}.png", title=f"SNN accuracy (%), w_q={wq:g}"))
        Ts = sorted({int(t) for r in results for t in r["snn_accuracy"]})
        sections.append(("Sweep: levels × time steps", pngs, tables(results, Ts)))

    if not sections:
        raise FileNotFoundError(f"report: nothing to report under {root}; run 'snnconv evaluate' or 'analyze' first")
    page = root / "report.html"
    page.write_text(_html(root.name, sections))
    return page


def _need(data: dict, **kinds: type | tuple[type, ...]) -> None:
    bad = [k for k, kind in kinds.items() if not isinstance(data.get(k), kind)]
    if bad:
        raise KeyError(", ".join(bad))


def _check_eval(r: dict) -> None:
    """What the page reads from an ``eval_*.json`` (raises KeyError/ValueError/TypeError where it is not there)."""
    _need(r, snn_accuracy=dict, method=str)
    if r["method"] == "bitserial":
        _need(r, T=list, qann_accuracy=dict, disagreements=dict, samples=int, dtype=str)
        for t in r["T"]:
            float(r["qann_accuracy"][str(t)]), float(r["snn_accuracy"][str(t)]), int(r["disagreements"][str(t)])
    else:
        _need(r, ann_accuracy=(int, float))
        for t, a in r["snn_accuracy"].items():
            int(t), float(a)


def _check_analyze(a: dict) -> None:
    _need(a, T=int, method=str, spikes=dict, energy=dict)
    _need(a["spikes"], spike_rate=dict)
    _need(a["energy"], snn_total=(int, float))


def _readable(root: Path, out: Path, pattern: str, check: Callable[[dict], None]) -> dict[Path, dict]:
    """The JSON files matching ``pattern`` under ``root`` that hold what the page needs; any other (truncated, edited,
    written by something else) is skipped with a warning naming it, so one bad file does not lose the page."""
    found = {}
    for p in sorted(root.rglob(pattern)):
        if out in p.parents:
            continue
        try:
            data = json.loads(p.read_text())
            check(data)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            warnings.warn(f"report: skipped {p} ({type(e).__name__}: {e}; missing, malformed or not JSON)",
                          RuntimeWarning, stacklevel=2)  # fmt: skip
            continue
        found[p] = data
    return found


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}" style="max-width:100%">'


def _html(title: str, sections: list[tuple[str, list[Path], str]]) -> str:
    body = []
    for heading, pngs, text in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        body += [_img(p) for p in pngs]
        if text:
            body.append(f"<pre>{html.escape(text)}</pre>")
    style = "body{font-family:sans-serif;max-width:1100px;margin:2em auto}pre{background:#f6f6f6;padding:.6em}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>snnconv report: {html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>snnconv report: {html.escape(title)}</h1>"
            + "\n".join(body) + "</body></html>\n")  # fmt: skip
