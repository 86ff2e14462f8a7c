"""Command line: ``snnconv train | evaluate | demo | analyze | sweep | report | inspect | export-nir | list``.

Also ``python -m snnconv``; ``torchrun ... -m snnconv train`` trains on several processes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from snnconv import jsonio
from snnconv._deps import require_cli
from snnconv.allocator import tune_from_env
from snnconv.cli_args import (
    T_list,
    ablations,
    add_calibration_args,
    add_checkpoint_arg,
    add_extra_steps_arg,
    add_train_args,
    check_args,
    chunk,
    default_channels_last,
    default_threshold_floor,
    default_warmup,
    float_list,
    levels_list,
    positive_int,
)
from snnconv.errors import SnnconvError


def _config(args: argparse.Namespace):
    from snnconv.train import TrainConfig

    warmup = args.warmup_epochs
    if warmup is None:
        warmup = default_warmup(Path(args.out), args.resume, args.epochs)
    floor = args.threshold_floor
    if floor is None:
        floor = default_threshold_floor(Path(args.out), args.resume)
    layout = args.channels_last
    if layout is None:
        layout = default_channels_last(Path(args.out), args.resume, args.device)
    return TrainConfig(
        model=args.model, dataset=args.dataset, act=args.act, levels=args.levels, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, optimizer=args.optimizer,
        seed=args.seed, width=args.width, warmup_epochs=warmup, threshold_floor=floor, dropout=args.dropout,
        threshold_init=args.threshold_init, subset=args.subset,
        qcfs_reg=args.qcfs_reg, qcfs_reg_form=args.qcfs_reg_form, sparsity=args.sparsity, init_from=args.init_from,
        init_percentile=args.init_percentile, augment=not args.no_augment, autoaugment=args.autoaugment,
        cutout=args.cutout, device=args.device, num_workers=args.num_workers, out=args.out, log=args.log,
        channels_last=layout,
    )  # fmt: skip


def cmd_train(args: argparse.Namespace) -> int:
    from snnconv import distributed
    from snnconv.runs import train_run

    if args.method == "qat":
        from snnconv.cli_qat import cmd_train_qat

        if distributed.requested():
            raise SnnconvError("train --method qat runs in one process; launch it without torchrun")

        return cmd_train_qat(args, _config(args))
    if args.two_stage:
        from snnconv.twostage import two_stage

        out = two_stage(_config(args), args.finetune_epochs, root=args.data_root, channelwise=not args.no_channel,
                        softplus=not args.no_softplus, overwrite=args.overwrite)  # fmt: skip
        final = out["stage2"] or out["stage1"]
        if distributed.is_main():
            print(f"best test accuracy {100 * final['best_acc']:.2f}% -> {out['out']} (evaluate that directory)")
        return 0
    result = train_run(_config(args), resume=args.resume, root=args.data_root, overwrite=args.overwrite)
    if distributed.is_main():  # under torchrun: one final line, from rank 0
        print(
            f"best test accuracy {100 * result['best_acc']:.2f}% (epoch {result['best_epoch']}) -> {result['out_dir']}"
        )
    return 0


def print_report(report: dict) -> None:
    from snnconv.report import accuracy_table, table

    T = report["T"]
    snn = {t: report["snn_accuracy"][str(t)] for t in T}
    rates = {t: report["total_spike_rate"][str(t)] for t in T}
    print(
        f"{report['model']} on {report['dataset']}, {report['act']} L={report['levels']}, method={report['method']}"
        f" ({report['samples']} test images, {report['seconds']} s)"
    )
    print(f"ANN accuracy: {report['ann_accuracy']:.2f}%")
    print(accuracy_table(T, snn, report["ann_accuracy"], rates))
    note = low_T_note(report)
    if note:
        print(note)
    print(f"\nper-layer spike rate (spikes / (neurons · T), T={T[-1]}):")
    print(table(["layer", "spike rate"], [[k, f"{v:.4f}"] for k, v in report["spike_rate"].items()]))


LOW_T_GAP = 3.0  # points of accuracy a plain IF SNN may lose at T <= 4 before the CLI says what to do


def low_T_note(report: dict) -> str | None:
    """One line when a plain IF network loses more than 3 points at some T <= 4 (issue 28, docs/depth.md)."""
    if report.get("method") != "if" or report.get("ann_accuracy") is None:
        return None
    gaps = {t: report["ann_accuracy"] - report["snn_accuracy"][str(t)] for t in report["T"] if t <= 4}
    worst = max(gaps, key=gaps.get, default=None)
    if worst is None or gaps[worst] <= LOW_T_GAP:
        return None
    return (
        f"note: the plain IF SNN is {gaps[worst]:.1f} points below the ANN at T = {worst}; deep plain-QCFS "
        "networks lose accuracy at low T (unevenness error): for T <= 4 use offset-spike calibration "
        "(--method cos --rho 4, latency T + 4) or train longer/wider; docs/depth.md has the measured choices"
    )


def _write_outputs(report: dict, run: Path, json_path: str | None) -> None:
    from snnconv.analysis.plots import plot_accuracy_vs_T

    out = Path(json_path) if json_path else run / f"eval_{report['method']}.json"
    jsonio.write(out, report)
    snn = {int(t): a for t, a in report["snn_accuracy"].items()}
    title = f"{report['model']} / {report['dataset']} / L={report['levels']}"
    png = plot_accuracy_vs_T({f"SNN ({report['method']})": snn}, out.with_suffix(".png"),
                             ann_accuracy=report["ann_accuracy"], title=title)  # fmt: skip
    print(f"\nwrote {out} and {png}")


def _method_options(args: argparse.Namespace) -> dict:
    """Conversion options of the rate-coded methods, from evaluate/analyze flags."""
    options: dict = {}
    calibration = {"cos": "cos", "srp": "srp"}.get(args.method, args.calibration)
    if calibration != "none" and args.method not in ("if", "cos", "srp"):
        raise SnnconvError(f"--calibration {calibration} applies to --method if, not {args.method!r}")
    if args.method == "if" and calibration != "none":
        options["calibration"] = calibration
    if calibration == "cos":
        options["rho"] = args.rho
    elif calibration == "srp":
        options["tau"] = args.tau
    if args.binary_spikes:
        options["binary_spikes"] = True
    if args.cos_shift is not None:
        if calibration != "cos":
            raise SnnconvError(f"--cos-shift applies to COS calibration (--method cos), not {args.method!r}")
        options["cos_shift"] = args.cos_shift
    if args.extra_steps is not None and args.method != "bitserial":
        raise SnnconvError(f"--extra-steps applies to --method bitserial, not {args.method!r}")
    if getattr(args, "max_spikes_per_step", "run") != "run":
        raise SnnconvError(f"--max-spikes-per-step applies to --method calif, not {args.method!r}")
    return options


def evaluate_bitserial(args: argparse.Namespace) -> dict:
    """Bit-serial SNN vs QANN per T, plus (``--ablation``) the same with each component switched off."""
    import torch

    from snnconv.evaluate import sweep_bitserial
    from snnconv.report import table
    from snnconv.runs import load_run, run_options, test_loader

    ann, config = load_run(args.run, args.checkpoint)
    loader = test_loader(config, batch_size=args.batch_size, subset=args.subset, root=args.data_root)
    dtype = torch.float64 if args.float64 else torch.float32
    extra = {} if args.extra_steps is None else {"extra_steps": args.extra_steps}
    opts = run_options(config, "bitserial", {"bias_split": args.bias_split, "rounding": args.rounding, **extra})
    variants = {"full": {}} | {f"without {a}": {"ablation": a} for a in (args.ablation or [])}
    results = {name: sweep_bitserial(ann, loader, args.T, dtype=dtype, **opts, **kw) for name, kw in variants.items()}
    full = results["full"]
    T = full["T"]
    print(f"{config.model} on {config.dataset}, QCFS L={config.levels} → bit-serial SNN (exact at T={full['exact_T']},"
          f" extra steps: {full['extra_steps']}), {full['samples']} test images, {full['dtype']}; ANN accuracy "
          f"{full['ann_accuracy']:.2f}%")  # fmt: skip
    rows = [[t, full["qann_accuracy"][str(t)], full["snn_accuracy"][str(t)], full["disagreements"][str(t)],
             f"{full['spiking_activity'][str(t)]:.4f}"] for t in T]  # fmt: skip
    print(table(["T", "QANN acc %", "SNN acc %", "SNN≠QANN", "spiking activity"], rows))
    if len(results) > 1:
        print("\nablations (seed 001 Table 4): SNN accuracy % (images whose prediction differs from the QANN)")
        rows = [[name, *(f"{r['snn_accuracy'][str(t)]:.2f} ({r['disagreements'][str(t)]})" for t in T)]
                for name, r in results.items()]  # fmt: skip
        print(table(["variant", *(f"T={t}" for t in T)], rows))
    return {"model": config.model, "dataset": config.dataset, "method": "bitserial", "levels": config.levels,
            **full, "ablations": {k: v for k, v in results.items() if k != "full"}}  # fmt: skip


def cmd_evaluate(args: argparse.Namespace) -> int:
    from snnconv.cli_qat import cmd_evaluate_calif
    from snnconv.runs import evaluate_run, output_dir

    if args.method == "calif":
        return cmd_evaluate_calif(args)
    if args.method == "bitserial":
        report = evaluate_bitserial(args)
        out = Path(args.json) if args.json else output_dir(args.run) / "eval_bitserial.json"
        jsonio.write(out, report)
        print(f"\nwrote {out}")
        return 0
    report = evaluate_run(
        args.run, args.T, method=args.method, batch_size=args.batch_size, subset=args.subset,
        schedule=args.schedule, chunk=args.chunk, checkpoint=args.checkpoint, root=args.data_root,
        options=_method_options(args),
    )  # fmt: skip
    print_report(report)
    _write_outputs(report, output_dir(args.run), args.json)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: train a small QCFS VGG on Fashion-MNIST, convert it, print accuracy vs T."""
    from snnconv.runs import train_run
    from snnconv.train import TrainConfig

    out = Path(args.out)
    resume = (out / "last.pt").is_file()
    config = TrainConfig(
        model="vgg11", dataset="fashion-mnist", act="qcfs", levels=4, epochs=args.epochs, batch_size=128,
        lr=0.05, width=0.25, threshold_init=4.0, seed=args.seed, subset=args.subset, out=str(out),
        warmup_epochs=default_warmup(out, resume, args.epochs), threshold_floor=default_threshold_floor(out, resume),
        channels_last=default_channels_last(out, resume, "auto"),
    )  # fmt: skip
    started = time.perf_counter()
    print(f"[1/2] training {config.model} (width {config.width}, QCFS L={config.levels}) on Fashion-MNIST ...")
    if resume:
        print(f"      resuming {out}/last.pt")
    train_run(config, resume=resume, overwrite=args.overwrite)
    from snnconv.runs import evaluate_run

    print(f"[2/2] converting to an IF-neuron SNN and simulating T = 1..{max(args.T)} ...")
    report = evaluate_run(out, args.T, batch_size=256)
    print()
    print_report(report)
    _write_outputs(report, out, None)
    print(f"total time {time.perf_counter() - started:.0f} s")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    """Conversion-error decomposition, spike rates and energy of a run's SNN at one T."""
    from snnconv.analysis import energy, error_decomposition, format_spike_rates, spike_stats
    from snnconv.analysis.plots import plot_error_decomposition, plot_spike_rates
    from snnconv.convert import convert
    from snnconv.evaluate import bitserial_bits, bitserial_plan
    from snnconv.runs import load_run, output_dir, run_options, test_loader
    from snnconv.simulate import simulate

    ann, config = load_run(args.run, args.checkpoint)
    run = output_dir(args.run)
    run.mkdir(parents=True, exist_ok=True)
    options = run_options(config, args.method, _method_options(args))
    if args.method == "bitserial":
        options = bitserial_plan(bitserial_bits(ann), args.T, args.extra_steps or config.extra_steps)
    snn = convert(ann, method=args.method, **options)
    loader = test_loader(config, batch_size=args.batch_size, subset=args.batch_size * args.batches, root=args.data_root)
    # the decomposition compares each neuron's T-step output with the ANN; COS/SRP pre-run extra steps first
    rate_coded = all(m.causal for m in snn.neurons().values()) and snn.meta.get("calibration", "none") == "none"
    errors = error_decomposition(ann, snn, loader, args.T, max_batches=args.batches) if rate_coded else None
    x = next(iter(loader))[0]
    stats = spike_stats(simulate(snn, x, args.T))
    shifts = 1 if args.method == "bitserial" else 0  # one shift per neuron output per step (seed 001 energy model)
    cost = energy(snn, loader, args.T, ann=ann, table=args.prices, max_batches=args.batches,
                  shifts_per_output=shifts)  # fmt: skip
    print(f"{config.model} on {config.dataset}, L={config.levels}, method={args.method}, T={args.T}\n")
    if errors is not None:
        print("conversion error per layer (mean |error| / θ; total = quantization + inherited + unevenness):")
        print(errors.table())
    else:
        print("(no rate-coding error decomposition for this network: bit-serial/Ca-LIF neurons fire after all T"
              " inputs, COS/SRP pre-run extra steps; energy below includes those pre-run steps)")  # fmt: skip
    print("\nspike rates (seed 000 format):")
    print(format_spike_rates(stats))
    print(f"\nenergy per image ({args.prices} table):")
    print(cost.table())
    ops = cost.op_counts()
    print(f"per image: SNN {ops['snn_sop'] / 1e9:.4g} GSOP + {ops['snn_flop'] / 1e9:.4g} GFLOP, ANN "
          f"{ops['ann_flop'] / 1e9:.4g} GFLOP")  # fmt: skip
    stem = run / f"analyze_{args.method}_T{args.T}"
    report = {"T": args.T, "method": args.method, "options": options, "spikes": stats.to_dict(),
              "energy": cost.to_dict()}  # fmt: skip
    written = [stem.with_suffix(".json"), Path(str(stem) + "_spikes.png")]
    if errors is not None:
        report["errors"] = errors.to_dict()
        written.append(plot_error_decomposition(errors, str(stem) + "_errors.png", title=f"{config.model}, T={args.T}"))
    jsonio.write(stem.with_suffix(".json"), report)
    plot_spike_rates(stats, written[1])
    print(f"\nwrote {', '.join(str(w) for w in written)}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Train + evaluate every (levels, w_q) cell; resumable; tables in seed 000's shapes."""
    from snnconv import distributed

    if distributed.requested():
        raise SnnconvError("sweep runs its cells in one process; launch it without torchrun (or one cell per job)")
    if args.overwrite:
        raise SnnconvError("sweep --overwrite: a sweep resumes its own cells; give a new --out to start another one")
    from snnconv.sweep import SweepSpec, run_sweep, tables

    base = {k: v for k, v in _config(args).to_dict().items() if k not in ("levels", "qcfs_reg", "out")}
    spec = SweepSpec(levels=args.levels_list, qcfs_reg=args.qcfs_reg_list, T=args.T, base=base,
                     eval_subset=args.eval_subset)  # fmt: skip
    results = run_sweep(spec, args.out, root=args.data_root)
    print(tables(results, spec.T))
    print(f"\nwrote {args.out}/results.csv, results.json, tables.md")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from snnconv.report_page import write_report

    page = write_report(args.dir)
    print(f"wrote {page} (plots in {page.parent / 'report'})")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Per-layer thresholds (min/max/mean, Diff, non-positive count), MaxDiff and AvgDiff (seed 002 Table 5)."""
    from snnconv.inspect import inspect_run

    print(inspect_run(args.run, args.checkpoint))
    return 0


def cmd_export_nir(args: argparse.Namespace) -> int:
    """Convert a run's ANN with the IF method and write it as a NIR graph (HDF5)."""
    from snnconv.convert import convert
    from snnconv.data import dataset_info
    from snnconv.nir_io import export_nir
    from snnconv.runs import load_run

    ann, config = load_run(args.run, args.checkpoint)
    snn = convert(ann, method="if")
    info = dataset_info(config.dataset)
    shape = (info.in_channels, *info.input_size)
    graph = export_nir(snn, args.out, shape, fold_scales=args.fold_scales)
    kinds: dict[str, int] = {}
    for node in graph.nodes.values():
        kinds[type(node).__name__] = kinds.get(type(node).__name__, 0) + 1
    print(
        f"wrote {args.out}: {config.model} (IF method, L={config.levels}), input {list(shape)}, "
        + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
    )
    print(
        "NIR's IF node resets to v_reset and starts at 0: reset by subtraction, v(0) = θ/2 and firing at v ≥ θ"
        " are in each IF node's metadata (snnconv.nir_io.import_nir restores them exactly"
        + ("; files written with --fold-scales are not imported back)" if args.fold_scales else ")")
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from snnconv.convert import list_methods
    from snnconv.data import list_datasets
    from snnconv.models import list_models

    print("models:   " + ", ".join(list_models()))
    print("datasets: " + ", ".join(list_datasets()))
    print("methods:  " + ", ".join(list_methods()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from snnconv.analysis.energy import PRICE_TABLES
    from snnconv.cli_qat import add_calif_eval_args, add_qat_train_args
    from snnconv.convert import list_methods

    parser = argparse.ArgumentParser(prog="snnconv", description="Convert quantization-aware ANNs into SNNs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train an ANN (QCFS or ReLU) into a run directory")
    add_train_args(p)
    add_qat_train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="ANN and SNN accuracy at each T for a run directory")
    p.add_argument("run", help="run directory written by 'snnconv train'")
    p.add_argument("--T", type=T_list, default=T_list("1,2,4,8,16,32"), help="e.g. 1,2,4,8,16,32")
    p.add_argument("--method", default="if", choices=list_methods())
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--subset", type=positive_int, default=None, help="first N test images only")
    p.add_argument("--schedule", default="layer", choices=("layer", "step"))
    p.add_argument("--chunk", type=chunk, default="auto", help="fold at most this many steps at once (or auto)")
    add_checkpoint_arg(p)
    p.add_argument("--data-root", default=None)
    p.add_argument("--json", default=None, help="write the report here (default RUN/eval_<method>.json)")
    add_calibration_args(p)
    bits = p.add_argument_group("bit-serial (--method bitserial)")
    bits.add_argument("--ablation", type=ablations, default=None, help="left_shift,bias_shift,modified_neuron or all")
    bits.add_argument("--bias-split", default="first", choices=("first", "uniform", "bn_shift"))
    bits.add_argument("--rounding", default="unbiased", choices=("unbiased", "truncate"), help="for T below exact")
    bits.add_argument("--float64", action="store_true", help="simulate in float64 (exact equality with the QANN)")
    add_extra_steps_arg(bits)
    add_calif_eval_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="train + convert + accuracy-vs-T on Fashion-MNIST (the main job)")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--epochs", type=positive_int, default=4)
    p.add_argument("--subset", type=positive_int, default=None, help="train on the first N images only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--T", type=T_list, default=T_list("1,2,4,8,16,32"))
    p.add_argument("--overwrite", action="store_true", help="OUT holds other files: move them aside, train anew")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("analyze", help="error decomposition, spike rates and energy at one T")
    p.add_argument("run")
    p.add_argument("--T", type=positive_int, default=4)
    p.add_argument("--method", default="if", choices=list_methods())
    p.add_argument("--batches", type=positive_int, default=2, help="test batches to analyse")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--prices", "--energy-table", dest="prices", default="45nm", choices=PRICE_TABLES,
                   help="45nm (Horowitz), seed001 (Table 6) or seed004 (77 fJ/SOP, 12.5 pJ/FLOP)")  # fmt: skip
    add_extra_steps_arg(p)
    add_calibration_args(p)
    add_checkpoint_arg(p)
    p.add_argument("--data-root", default=None)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("sweep", help="train + evaluate a grid of levels × QCFS-regularizer weights (resumable)")
    add_train_args(p)
    p.add_argument("--levels-list", "--L", dest="levels_list", type=levels_list, default=levels_list("2,4,8,16"))
    p.add_argument("--qcfs-reg-list", "--wq", dest="qcfs_reg_list", type=float_list, default=[0.0])
    p.add_argument("--T", type=T_list, default=T_list("1,2,4,8,16,32,64,128"))
    p.add_argument("--eval-subset", type=positive_int, default=None, help="first N test images only")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="one HTML page with every plot and table found under a run or sweep dir")
    p.add_argument("dir")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("inspect", help="layers of a run: spiking/analog, threshold statistics")
    p.add_argument("run")
    add_checkpoint_arg(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("export-nir", help="write a run's IF-method SNN as a NIR graph (HDF5)")
    p.add_argument("run")
    p.add_argument("out", help="output file, e.g. net.nir")
    p.add_argument("--fold-scales", action="store_true", help="0/1 spikes: θ folded into the next layer's weights")
    add_checkpoint_arg(p)
    p.set_defaults(func=cmd_export_nir)

    p = sub.add_parser("list", help="registered models, datasets and conversion methods")
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    require_cli()  # snnconv[train]: else one line naming it, exit status 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)  # every number in range, no empty path, a usable device: before any work
        tune_from_env()  # keep freed activation buffers in the process (snnconv.allocator; SNNCONV_MALLOC=default)
        return args.func(args)
    except (SnnconvError, OSError) as exc:  # bad input, a missing or unwritable file: one clear line, no traceback
        print(f"snnconv {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command (train: add --resume) to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
