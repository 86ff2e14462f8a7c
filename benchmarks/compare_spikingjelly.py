"""snnconv vs SpikingJelly 2.0 on the same machine, in one run: img/s, time / (T ANN passes), speed-up, peak RSS.

    .venv/bin/python benchmarks/compare_spikingjelly.py                      # VGG-16 and ResNet-20, T = 1,4,8,32
    .venv/bin/python benchmarks/compare_spikingjelly.py --model resnet20 --T 4,8 --repeats 7 --no-rss
    .venv/bin/python benchmarks/compare_spikingjelly.py --device cuda        # where a GPU is present

SpikingJelly is not a dependency of snnconv and this script installs nothing. Install SpikingJelly 2.0 beside
snnconv without letting pip replace the torch build you have (its requirements pin other torch versions)::

    .venv/bin/pip install --no-deps spikingjelly==2.0.0
    .venv/bin/pip install numpy loguru packaging tqdm scipy requests   # what its ann2snn path imports

The same network is converted twice, at CIFAR shape 3×32×32 with random weights and BN running statistics:

* **snnconv**: the QCFS ANN (``make_act("qcfs", levels=L)``, θ = 1) → ``convert(ann, method="if")`` (BN folded,
  IF neurons with θ = λ and v(0) = θ/2) → ``simulate(snn, x, T, schedule="layer" | "step")``; "snnconv-tuned" is
  the layer schedule with the fold budget ``snnconv.tune_fold_bytes`` picks on this machine (recorded in the JSON).
* **SpikingJelly**: the same weights with every QCFS replaced by ``nn.ReLU`` (its rate-coding recipe converts
  ReLUs) → ``ann2snn.FXConverter(recipe=ann2snn.RateCodingRecipe(...)).convert(relu_ann)``: Conv-BN fused,
  each ReLU becomes ``VoltageScaler(1/s) → IFNode(v_threshold=1, v_reset=None) → VoltageScaler(s)`` with s the
  calibrated activation maximum; we then set s = θ (the QCFS threshold), so both SNNs have the same thresholds.
  SpikingJelly's network runs in its two modes: **single-step** (``step_mode="s"``: T calls on [B, ...], state
  in the modules, ``reset_net`` between batches) and **multi-step** (``step_mode="m"``: one call on the input
  repeated to [T, B, ...]; convs fold T into the batch, the IF neuron runs its registered CPU/CUDA op). Its
  fastest mode at each T is "SJ best".

Differences found (checked on every run, see ``equivalence`` in the JSON): SpikingJelly's rate-coding IFNode
starts from v(0) = 0 (no half-threshold initialisation), so its outputs differ from snnconv's v(0) = θ/2 (it is
the biased φ = 0 variant, seed 004 Thm. 2). Its ``HalfThresholdIFNode`` (v(0) = θ/2, soft reset, fires at
v ≥ θ) makes the two SNNs identical: with it, SpikingJelly's logits equal snnconv's to float rounding in both
modes, which this script asserts. The timed SpikingJelly network is its default IFNode (the half-threshold
node has no fused multi-step path and is slower); the neuron initialisation does not change the work.

Per T, all setups are timed interleaved in every repeat after a warm-up (see ``_timing.py``); ratios are medians
of per-repeat ratios, printed with their quartiles over the repeats (``0.871 [0.85-0.90]``: half the repeats
fell inside the brackets; the JSON keeps them as ``*_quartiles``). "ANN" is the BN-folded QCFS ANN, T passes on
the batch, as PyTorch runs it by default (NCHW); "ann-cl" is the same ANN with channels-last weights and input,
timed for reference (snnconv's engine picks channels-last convolutions where they are faster, and this row shows
how much of its lead over T ANN passes that layout alone would give the ANN). The bit-serial section times
``convert(ann, method="bitserial")`` at its exact T against T passes of the quantized ANN it equals. Peak RSS
(``--rss-T``) is measured per setup in a fresh subprocess. Results: tables on stdout and
``benchmarks/results/compare_spikingjelly_<model>.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import (  # noqa: E402
    interleaved,
    machine,
    peak_rss_mb,
    random_ann,
    random_input,
    repeated,
    rss_subprocess,
    spread,
    sync,
    write_json,
)

SJ_MODES = ("sj-single", "sj-multi")
SNN_SETUPS = ("snnconv-layer", "snnconv-step", "snnconv-tuned")


def require_spikingjelly() -> Any:
    try:
        import spikingjelly  # noqa: F401
        from spikingjelly.activation_based import ann2snn
    except ImportError as exc:
        raise SystemExit(
            f"SpikingJelly is not importable ({exc}). Install it beside snnconv without replacing torch:\n"
            "  .venv/bin/pip install --no-deps spikingjelly==2.0.0\n"
            "  .venv/bin/pip install numpy loguru packaging tqdm scipy requests"
        ) from exc
    return ann2snn


def relu_copy(ann: nn.Module) -> nn.Module:
    """The same network with every QCFS activation replaced by ``nn.ReLU`` (what SpikingJelly converts)."""
    from snnconv import QCFS

    relu = copy.deepcopy(ann)
    for parent in list(relu.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, QCFS):
                setattr(parent, name, nn.ReLU())
    return relu.eval()


def qcfs_thresholds(ann: nn.Module) -> list[float]:
    """θ of every QCFS activation in graph order (the order of SpikingJelly's voltage scalers)."""
    from snnconv import QCFS
    from snnconv.convert import trace

    gm = trace(ann)  # shares ann's modules, copies no weights
    qcfs = [gm.get_submodule(n.target) for n in gm.graph.nodes if n.op == "call_module"]
    return [float(q.theta().detach()) for q in qcfs if isinstance(q, QCFS)]


def sj_convert(ann: nn.Module, thetas: list[float], calib: torch.Tensor, device: str, half: bool = False) -> nn.Module:
    """SpikingJelly 2.0 rate-coding conversion of ``ann``'s ReLU twin, with the scalers set to the QCFS θ."""
    ann2snn = require_spikingjelly()
    from spikingjelly.activation_based import neuron
    from spikingjelly.activation_based.ann2snn.modules import VoltageScaler

    factory = (lambda scale: neuron.HalfThresholdIFNode(v_threshold=1.0)) if half else None
    recipe = ann2snn.RateCodingRecipe(dataloader=[calib], mode="Max", neuron_factory=factory)
    net = ann2snn.FXConverter(recipe=recipe, device=device).convert(relu_copy(ann).to(device))
    scalers = [net.get_submodule(n.target) for n in net.graph.nodes if n.op == "call_module"
               and isinstance(net.get_submodule(n.target), VoltageScaler)]  # fmt: skip
    if len(scalers) != 2 * len(thetas):
        raise RuntimeError(f"SpikingJelly made {len(scalers)} voltage scalers for {len(thetas)} activations")
    with torch.no_grad():
        for (pre, post), theta in zip(zip(scalers[::2], scalers[1::2], strict=True), thetas, strict=True):
            pre.scale.fill_(1.0 / theta)  # current / θ into a threshold-1 neuron, spikes × θ out
            post.scale.fill_(theta)
    return net.eval()


def sj_runner(net: nn.Module, x: torch.Tensor, T: int, mode: str) -> Callable[[], torch.Tensor]:
    """One batch through SpikingJelly's network for T steps; (T, B, K) running means like ``simulate``."""
    from spikingjelly.activation_based import functional

    functional.set_step_mode(net, "s" if mode == "sj-single" else "m")
    steps = torch.arange(1, T + 1, dtype=x.dtype, device=x.device).view(T, 1, 1)

    @torch.no_grad()
    def run() -> torch.Tensor:
        functional.reset_net(net)
        if mode == "sj-single":
            out = torch.stack([net(x) for _ in range(T)])
        else:
            out = net(x.unsqueeze(0).repeat(T, *([1] * x.dim())))
        functional.reset_net(net)
        return out.cumsum(0) / steps

    return run


class Setup:
    """The networks of one model, built once: ANN (BN folded), snnconv SNN, SpikingJelly's, the QANN."""

    def __init__(self, model: str, batch: int, levels: int, device: str, need: set[str]) -> None:
        from snnconv import convert, fold_bn, simulate

        self.simulate = simulate
        self.ann = random_ann(model, levels=levels)
        self.x = random_input(batch).to(device)
        self.device = device
        self.folded = fold_bn(self.ann).to(device)
        self.folded_cl: nn.Module | None = None  # the channels-last copy, made on first use ("ann-cl")
        self.tuned: dict[int, int] = {}  # T -> fold budget ``snnconv.tune_fold_bytes`` chose ("snnconv-tuned")
        self.snn = convert(self.ann).to(device) if need & {*SNN_SETUPS, "check"} else None
        self.sj: dict[str, nn.Module] = {}
        if need & {*SJ_MODES, "check"}:
            thetas = qcfs_thresholds(self.ann)
            for mode in SJ_MODES:
                if mode in need or "check" in need:
                    self.sj[mode] = sj_convert(self.ann, thetas, self.x[:8], device)
            if "check" in need:
                self.half = {m: sj_convert(self.ann, thetas, self.x[:8], device, half=True) for m in SJ_MODES}

    def runner(self, what: str, T: int) -> Callable[[], Any]:
        x = self.x
        if what == "ann":
            return torch.no_grad()(repeated(lambda: self.folded(x), T))
        if what == "ann-cl":  # for reference: the same ANN with channels-last weights and input
            if self.folded_cl is None:
                self.folded_cl = copy.deepcopy(self.folded).to(memory_format=torch.channels_last)
            cl, x_cl = self.folded_cl, x.contiguous(memory_format=torch.channels_last)
            return torch.no_grad()(repeated(lambda: cl(x_cl), T))
        if what == "snnconv-tuned":  # tuned in this process: the peak-RSS subprocess counts the tuning runs too
            from snnconv import tune_fold_bytes

            budget = self.tuned[T] = tune_fold_bytes(self.snn, x, T)
            return lambda: self.simulate(self.snn, x, T, fold_bytes=budget)
        if what in SNN_SETUPS:
            schedule = what.split("-")[1]
            return lambda: self.simulate(self.snn, x, T, schedule=schedule)
        return sj_runner(self.sj[what], x, T, what)

    def equivalence(self, T: int = 8, n: int = 8) -> dict[str, Any]:
        """snnconv vs SpikingJelly on ``n`` images: identical with its half-threshold IF node, φ = 0 otherwise.

        The identity is asserted against snnconv with NCHW convolutions (``layout="nchw"``, SpikingJelly's
        layout): same weights, thresholds and v(0) give the same spikes. snnconv's default channels-last
        convolutions round differently in the last bit, which can move a spike that sat exactly on a threshold;
        that difference is reported, not asserted.
        """
        x = self.x[:n]
        report: dict[str, Any] = {"T": T, "images": n}
        for layout in ("nchw", "auto"):
            ref = self.simulate(self.snn, x, T, layout=layout).logits
            report["max_abs_logit"] = scale = float(ref.abs().max())
            for label, nets in (("half_threshold", self.half), ("default_v0_zero", self.sj)):
                for mode, net in nets.items():
                    out = sj_runner(net, x, T, mode)()
                    report[f"snnconv {layout} vs SJ {label}/{mode}"] = {
                        "max_abs_diff": float((out - ref).abs().max()),
                        "prediction_agreement": float((out[-1].argmax(-1) == ref[-1].argmax(-1)).float().mean()),
                    }
        for mode in SJ_MODES:  # same thresholds, same v(0), same layout: the same SNN up to float rounding
            r = report[f"snnconv nchw vs SJ half_threshold/{mode}"]
            if not (r["max_abs_diff"] <= 1e-4 * max(scale, 1.0) and r["prediction_agreement"] == 1.0):
                raise AssertionError(f"SpikingJelly ({mode}, half-threshold IF) disagrees with snnconv: {r}")
        return report


def bitserial_rows(model: str, args: argparse.Namespace, sj_best: dict[int, tuple[str, float]]) -> list[dict]:
    """snnconv's bit-serial SNN at its exact T vs T passes of the quantized ANN it equals."""
    from snnconv import convert, fold_bn, simulate
    from snnconv.convert import quantized_reference

    ann = random_ann(model, levels=args.levels)
    x = random_input(args.batch).to(args.device)
    T = convert(ann, method="bitserial").meta["T"]
    snn = convert(ann, "bitserial", T=T).to(args.device)
    qann = fold_bn(quantized_reference(ann, T).graph).to(args.device)
    setups: dict[str, Callable[[], Any]] = {
        "qann": torch.no_grad()(repeated(lambda: qann(x), T)),
        "snnconv-bitserial": lambda: simulate(snn, x, T),
    }
    if T in sj_best:
        setups[sj_best[T][0]] = Setup(model, args.batch, args.levels, args.device, {sj_best[T][0]}).runner(
            sj_best[T][0], T
        )
    res = interleaved(setups, args.repeats, args.device)
    row = {"setup": "snnconv-bitserial", "T": T, "seconds": res["seconds"]["snnconv-bitserial"],
           "img_per_s": args.batch / res["seconds"]["snnconv-bitserial"],
           "ratio_to_T_qann": res["ratio"]["snnconv-bitserial"]["qann"],
           "ratio_to_T_qann_quartiles": res["quartiles"]["snnconv-bitserial"]["qann"],
           "qann_img_per_s": args.batch * T / res["seconds"]["qann"]}  # fmt: skip
    if T in sj_best:
        row["speedup_over_sj_best"] = res["ratio"][sj_best[T][0]]["snnconv-bitserial"]
        row["speedup_over_sj_best_quartiles"] = res["quartiles"][sj_best[T][0]]["snnconv-bitserial"]
        row["sj_best_mode"] = sj_best[T][0]
    return [row]


def one(args: argparse.Namespace) -> None:
    """Subprocess entry: run one setup once (after building it) and print its peak RSS."""
    what, T = args.one[0], int(args.one[1])
    setup = Setup(args.model[0], args.batch, args.levels, args.device, {what})
    run = setup.runner(what, T)
    run()
    sync(args.device)
    out = {"peak_rss_mb": peak_rss_mb()}
    if torch.device(args.device).type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


def bench_model(model: str, args: argparse.Namespace) -> None:
    from snnconv.report import table

    Ts = [int(t) for t in args.T.split(",")]
    setup = Setup(model, args.batch, args.levels, args.device, {"ann", *SNN_SETUPS, *SJ_MODES, "check"})
    check = setup.equivalence()
    print(f"\n{model}: equivalence on {check['images']} images, T = {check['T']} (max |logit| "
          f"{check['max_abs_logit']:.3g})")  # fmt: skip
    for key, r in check.items():
        if isinstance(r, dict):
            print(f"  {key}: max |diff| {r['max_abs_diff']:.3g}, "
                  f"prediction agreement {r['prediction_agreement']:.2f}")  # fmt: skip
    records: list[dict[str, Any]] = []
    rows: list[list[Any]] = []
    sj_best: dict[int, tuple[str, float]] = {}
    for T in Ts:
        names = ("ann", "ann-cl", *SNN_SETUPS, *SJ_MODES)
        reps = args.repeats if T <= 8 else max(3, args.repeats // 2)
        res = interleaved({k: setup.runner(k, T) for k in names}, reps, args.device)
        best = min(SJ_MODES, key=lambda m: res["seconds"][m])
        sj_best[T] = (best, res["seconds"][best])
        print(f"  T = {T}: " + ", ".join(f"{k} {args.batch / res['seconds'][k]:.1f} img/s" for k in names), flush=True)
        for k in names:
            rss = None
            if not args.no_rss and str(T) in args.rss_T.split(","):
                rss = rss_subprocess(__file__, ["--one", k, str(T), "--model", model, "--batch", str(args.batch),
                                                "--levels", str(args.levels), "--threads", str(args.threads),
                                                "--device", args.device])  # fmt: skip
            rec = {"setup": k, "T": T, "seconds": res["seconds"][k], "img_per_s": args.batch / res["seconds"][k],
                   "ratio_to_T_ann": res["ratio"][k]["ann"], "ratio_to_T_ann_quartiles": res["quartiles"][k]["ann"],
                   "repeats": reps, "peak_rss_mb": rss}  # fmt: skip
            if k == "snnconv-tuned":
                rec["fold_bytes"] = setup.tuned[T]
            if k in SNN_SETUPS:
                rec["speedup_over_sj_best"] = res["ratio"][best][k]
                rec["speedup_over_sj_best_quartiles"] = res["quartiles"][best][k]
                rec["speedup_over_sj_single"] = res["ratio"]["sj-single"][k]
            records.append(rec)
            speed = spread(rec["speedup_over_sj_best"], rec["speedup_over_sj_best_quartiles"], 2) if (
                k in SNN_SETUPS) else ("best" if k == best else "")  # fmt: skip
            ratio = spread(rec["ratio_to_T_ann"], rec["ratio_to_T_ann_quartiles"], 3)
            rows.append([k, T, f"{rec['img_per_s']:.1f}", ratio, speed, "" if rss is None else f"{rss:.0f}"])
    load = ", ".join(f"{v:.1f}" for v in machine(args.threads)["load_average"])
    print(f"{model}, batch {args.batch}, {args.threads} threads, {args.device}, load average {load}")
    print(table(["setup", "T", "img/s", "time / (T x ANN) [quartiles]", "speed-up over SJ best [quartiles]",
                 "peak RSS MB"], rows))  # fmt: skip
    if not args.no_bitserial:
        bits = bitserial_rows(model, args, sj_best)
        records += bits
        for b in bits:
            extra = f", {b['speedup_over_sj_best']:.2f}x faster than SJ best ({b['sj_best_mode']}) at that T" if (
                "speedup_over_sj_best" in b) else ""  # fmt: skip
            print(f"bit-serial (exact T = {b['T']}): {b['img_per_s']:.1f} img/s, {b['ratio_to_T_qann']:.3f} x "
                  f"T QANN passes{extra}")  # fmt: skip
    meta = {"model": model, "batch": args.batch, "levels": args.levels, "machine": machine(args.threads, args.device),
            "equivalence": check}  # fmt: skip
    print(f"wrote {write_json(f'compare_spikingjelly_{model}.json', meta, records)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="+", default=["vgg16", "resnet20"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--levels", type=int, default=8, help="QCFS quantization levels L (sets the bit-serial T)")
    p.add_argument("--T", default="1,4,8,32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per T (halved, at least 3, for T > 8)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (used only where present)")
    p.add_argument("--no-rss", action="store_true", help="skip the per-setup peak-RSS subprocesses")
    p.add_argument("--rss-T", default="32", help="comma-separated T at which peak RSS is measured per setup")
    p.add_argument("--no-bitserial", action="store_true")
    p.add_argument("--one", nargs=2, metavar=("SETUP", "T"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    torch.set_num_threads(args.threads)
    if args.one:
        one(args)
        return
    require_spikingjelly()
    for model in args.model:
        bench_model(model, args)


if __name__ == "__main__":
    main()
