"""The QAT → Ca-LIF route on the command line (seed 003): ``train --method qat``, ``evaluate --method calif``.

Kept apart from ``snnconv.cli`` (which dispatches here) because its flags and reports differ from the QCFS
methods': a QAT run directory holds a torch.ao fake-quantized ReLU network plus ``qat.json``, and its SNN is
compared with that fake-quantized model (the integer codes), not with a QCFS ANN.
"""

from __future__ import annotations

import argparse

from snnconv.errors import SnnconvError

TRAIN_METHODS = ("qcfs", "qat")


def add_qat_train_args(p: argparse.ArgumentParser) -> None:
    """``--method`` and the QAT flags of ``snnconv train``."""
    p.add_argument("--method", default="qcfs", choices=TRAIN_METHODS,
                   help="qcfs: train the --act network (QCFS/ReLU/CS-QCFS); qat: torch.ao quantization-aware "
                        "training of the ReLU network for Ca-LIF export (seed 003)")  # fmt: skip
    g = p.add_argument_group("quantization-aware training (--method qat)")
    g.add_argument("--bits", type=int, default=8, help="weight/activation bits (2..8)")
    g.add_argument("--unsigned", action="store_true", help="quint8 activations (default: signed symmetric qint8)")
    g.add_argument("--per-channel-weights", action="store_true", help="one weight scale per output channel")
    g.add_argument("--no-pow2", action="store_true", help="do not round activation scales up to powers of two")
    g.add_argument("--freeze-bn", type=int, default=None, help="freeze BN statistics from this epoch on")
    g.add_argument("--freeze-observer", type=int, default=None, help="freeze quantization scales from this epoch on")
    g.add_argument("--qat-inputs", default="unit", choices=("unit", "normalized"),
                   help="unit: [0, 1] pixels (needed for ISI/rate input coding); normalized: standardized")  # fmt: skip


def cmd_train_qat(args: argparse.Namespace, config) -> int:
    """Train a QAT run directory (``snnconv.qat_runs.train_qat_run``)."""
    from snnconv.qat_runs import train_qat_run

    if args.two_stage:
        raise SnnconvError("--two-stage is CS-QCFS training; it does not combine with --method qat")
    if config.act != "relu":  # train_qat_run switches it to ReLU
        print(f"note: --method qat trains the ReLU network (--act {config.act} ignored)")
    result = train_qat_run(
        config, args.bits, resume=args.resume, root=args.data_root, signed=not args.unsigned,
        per_channel=args.per_channel_weights, pow2=not args.no_pow2, freeze_bn=args.freeze_bn,
        freeze_observer=args.freeze_observer, inputs=args.qat_inputs, overwrite=args.overwrite,
    )  # fmt: skip
    print(f"best test accuracy {100 * result['best_acc']:.2f}% (epoch {result['best_epoch']}, {args.bits}-bit QAT) "
          f"-> {result['out_dir']} (evaluate with --method calif)")  # fmt: skip
    return 0


def add_calif_eval_args(p: argparse.ArgumentParser) -> None:
    """The Ca-LIF flags of ``snnconv evaluate``."""
    from snnconv.coding import CODINGS, ORDERS

    g = p.add_argument_group("Ca-LIF (--method calif, on a QAT run)")
    g.add_argument(
        "--input-coding",
        default="codes",
        choices=CODINGS,
        help="codes: the exact input codes; isi: inter-spike-interval (seed 003 §4.1); rate; direct",
    )
    g.add_argument("--order", default="even", choices=ORDERS, help="spike arrival order of the code inputs")
    g.add_argument(
        "--max-spikes-per-step",
        type=_max_spikes,
        default="run",
        help="1: one spike per step, the seed's neuron; burst: one per threshold crossed (SNN == QAT "
        "model); default: what the run's config records (burst for runs saved before issue 19)",
    )


def _max_spikes(text: str) -> int | None:
    """``--max-spikes-per-step``: a positive integer, ``burst`` (no cap) or ``run`` (the run's recorded value)."""
    if text in ("burst", "run"):
        return None if text == "burst" else text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--max-spikes-per-step must be a positive integer (1: the seed's neuron) "
                                         f"or 'burst' (or 'run'), got {text!r}")  # fmt: skip
    return value


def cmd_evaluate_calif(args: argparse.Namespace) -> int:
    """QAT model vs Ca-LIF SNN per T: table, JSON and plot (``snnconv.qat_runs``)."""
    from snnconv.qat_runs import evaluate_calif_run, print_calif_report, write_calif_report

    report = evaluate_calif_run(
        args.run, args.T, subset=args.subset, input_coding=args.input_coding, order=args.order,
        batch_size=args.batch_size, checkpoint=args.checkpoint, root=args.data_root,
        max_spikes_per_step=args.max_spikes_per_step,
    )  # fmt: skip
    print_calif_report(report)
    out = write_calif_report(report, args.run, args.json)
    print(f"\nwrote {out} and {out.with_suffix('.png')}")
    return 0
