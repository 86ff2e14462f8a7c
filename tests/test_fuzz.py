"""Property-based fuzzing (issue #10): convert + simulate never crash on valid input and raise the documented
``SnnconvError`` on invalid input; the CLI parser either parses or exits with status 2.

Architectures come from the model registry (small widths and inputs keep each example in the tens of ms); the
transformer models (``snnconv.models.transformer``) have their own conversion tests and are left out here.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from helpers import randomize
from snnconv import QCFS, convert, simulate
from snnconv.cli import build_parser, main
from snnconv.errors import ConversionError, SimulationError, SnnconvError
from snnconv.layers.act import make_act
from snnconv.models import create, get_builder, list_models

CNN_MODULES = {"snnconv.models.small", "snnconv.models.vgg", "snnconv.models.resnet", "snnconv.models.zoo",
               "snnconv.models.seed003"}  # fmt: skip
MODELS = [n for n in list_models() if get_builder(n).__module__ in CNN_MODULES]
QCFS_METHODS = ("if", "cos", "srp", "bitserial")  # the methods that convert QCFS ANNs (ratenorm: ReLU ANNs)
#: one_thread/capsys are safe to share between examples (a thread count; output read after every call)
SHARED_FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=SHARED_FIXTURES)


def test_registry_is_fuzzed():
    assert {"mlp", "small_cnn", "vgg11", "resnet20", "lenet5"} <= set(MODELS)


@st.composite
def architectures(draw: st.DrawFn, act_kinds: tuple[str, ...] = ("qcfs", "qcfs-softplus", "csqcfs")) -> dict:
    return {
        "name": draw(st.sampled_from(MODELS)),
        "classes": draw(st.integers(2, 5)),
        "channels": draw(st.integers(1, 3)),
        "size": draw(st.sampled_from([8, 12, 16])),
        "width": draw(st.sampled_from([0.0625, 0.125])),
        "act": draw(st.sampled_from(act_kinds)),
        "levels": draw(st.integers(1, 8)),
        "threshold": draw(st.floats(0.25, 4.0)),
        "batch": draw(st.integers(1, 3)),
        "seed": draw(st.integers(0, 2**16)),
    }


def build(a: dict) -> nn.Module:
    torch.manual_seed(a["seed"])
    act = make_act(a["act"], levels=a["levels"], threshold=a["threshold"])
    model = create(a["name"], num_classes=a["classes"], in_channels=a["channels"], input_size=a["size"], act=act,
                   width=a["width"])  # fmt: skip
    return randomize(model, seed=a["seed"], threshold=a["threshold"])


def inputs(a: dict) -> torch.Tensor:
    g = torch.Generator().manual_seed(a["seed"])
    return torch.randn(a["batch"], a["channels"], a["size"], a["size"], generator=g)


def check_result(result, T: int, a: dict) -> None:
    assert result.logits.shape == (T, a["batch"], a["classes"])
    assert bool(torch.isfinite(result.logits).all())
    for name, counts in result.spike_counts.items():
        assert counts.shape == (T,) and bool((counts >= 0).all())
        assert bool((counts <= result.neurons[name] * a["batch"]).all())  # at most one spike per neuron and step


@SETTINGS
@given(a=architectures(), T=st.integers(1, 6), method=st.sampled_from(("if", "cos", "srp")),
       schedule=st.sampled_from(("layer", "step")), chunk=st.sampled_from((None, "auto", 1, 2)))  # fmt: skip
def test_rate_coded_conversion_never_crashes_on_valid_input(one_thread, a, T, method, schedule, chunk):
    snn = convert(build(a), method=method)
    x = inputs(a)
    causal = all(n.causal for n in snn.neurons().values())
    steps = max(T, snn.meta.get("rho", 0)) if method == "cos" else T  # COS pre-simulates rho steps
    if not causal and (schedule == "step" or (isinstance(chunk, int) and chunk < steps)):
        with pytest.raises(SimulationError, match="accumulate-then-fire"):
            simulate(snn, x, steps, schedule=schedule, chunk=chunk)
        return
    result = simulate(snn, x, steps, schedule=schedule, chunk=chunk)
    check_result(result, steps, a)
    if method == "if" and schedule == "step":  # the two schedules agree
        other = simulate(snn, x, steps, schedule="layer", chunk=chunk)
        torch.testing.assert_close(result.logits, other.logits, rtol=1e-4, atol=1e-4)


@SETTINGS
@given(a=architectures(), bits=st.one_of(st.none(), st.integers(1, 5)), steps_back=st.integers(0, 2),
       exact=st.booleans(), T_offset=st.sampled_from([0, 0, -1, 1, 3]))  # fmt: skip
def test_bitserial_converts_exactly_when_it_can_and_says_why_not(one_thread, a, bits, steps_back, exact, T_offset):
    model = build(a)
    need = a["levels"].bit_length()  # smallest T with 2^T - 1 >= L
    steps = None if bits is None else max(1, bits - steps_back)
    if bits is not None and exact and bits < need:
        with pytest.raises(ConversionError, match=rf"L={a['levels']} quantization levels.*T >= {need}"):
            convert(model, method="bitserial", T=bits, steps=steps, exact=exact)
        return
    snn = convert(model, method="bitserial", T=bits, steps=steps, exact=exact)
    assert snn.meta["T"] == (need if bits is None else bits)
    fired = snn.meta["steps"]
    assert fired == (snn.meta["T"] if steps is None else steps)
    T = fired + T_offset
    x = inputs(a)
    if T != fired:
        with pytest.raises(SimulationError, match=rf"fires {fired} steps per layer|T must be a positive"):
            simulate(snn, x, T)
        return
    check_result(simulate(snn, x, T), T, a)


@pytest.mark.filterwarnings("ignore:ratenorm. ReLU .* was never active:RuntimeWarning")
@settings(SETTINGS, max_examples=12)
@given(a=architectures(act_kinds=("relu",)), T=st.integers(1, 4), mode=st.sampled_from(("max", "percentile")))
def test_ratenorm_on_relu_models(one_thread, a, T, mode):
    x = inputs(a)
    snn = convert(build(a), method="ratenorm", calibration=x, mode=mode)
    check_result(simulate(snn, x, T), T, a)


BAD_T = st.sampled_from([0, -1, -7, 2.5, True, None, "4", float("nan")])


@SETTINGS
@given(a=architectures(), method=st.sampled_from(QCFS_METHODS), bad=st.sampled_from(["T", "nan", "inf", "channels",
       "no-batch", "int", "double"]), T=BAD_T, where=st.integers(0, 10**6))  # fmt: skip
def test_invalid_simulation_input_raises_simulation_error(one_thread, a, method, bad, T, where):
    snn = convert(build(a), method=method)
    x = inputs(a)
    good_T = snn.meta.get("steps", max(4, snn.meta.get("rho", 0)))
    pattern = {
        "T": "T must be a positive integer",
        "nan": "non-finite",
        "inf": "non-finite",
        "channels": "failed: ",
        "no-batch": r"non-empty batch \[B, \.\.\.\]",
        "int": "floating-point",
        "double": "torch.float64",
    }[bad]
    if bad == "T":
        good_T = T
    elif bad in ("nan", "inf"):
        x.view(-1)[where % x.numel()] = math.nan if bad == "nan" else -math.inf
    elif bad == "channels":
        x = torch.randn(a["batch"], a["channels"] + 1, a["size"], a["size"])
    elif bad == "no-batch":
        x = x[0, 0, 0]
    elif bad == "int":
        x = x.round().to(torch.int64)
    else:
        x = x.double()
    with pytest.raises(SimulationError, match=pattern):
        simulate(snn, x, good_T)


@SETTINGS
@given(a=architectures(act_kinds=("qcfs",)), method=st.sampled_from(QCFS_METHODS),
       value=st.sampled_from([0.0, -0.5, -3.0, math.nan, math.inf, -math.inf]), which=st.integers(0, 100))  # fmt: skip
def test_a_non_positive_threshold_is_named(one_thread, a, method, value, which):
    model = build(a)
    names = [n for n, m in model.named_modules() if isinstance(m, QCFS)]
    name = names[which % len(names)]
    with torch.no_grad():
        model.get_submodule(name).threshold.fill_(value)
    with pytest.raises(ConversionError, match=rf"layer '{name}' \(QCFS\) .*not finite and > 0"):
        convert(model, method=method)


# --- the command line ---------------------------------------------------------------------------------------

COMMANDS = ["train", "evaluate", "demo", "analyze", "sweep", "report", "inspect", "list"]
OPTIONS = ["--model", "--dataset", "--act", "--levels", "--epochs", "--batch-size", "--lr", "--seed", "--width",
           "--threshold-init", "--subset", "--out", "--resume", "--T", "--method", "--schedule", "--chunk",
           "--checkpoint", "--calibration", "--rho", "--tau", "--ablation", "--bias-split", "--rounding",
           "--float64", "--L", "--wq", "--levels-list", "--eval-subset", "--energy-table", "--batches", "--json",
           "--data-root", "--two-stage", "--optimizer", "--device", "--no-augment", "--binary-spikes"]  # fmt: skip
VALUES = ["1", "0", "-1", "2.5", "nan", "inf", "1,2,4", "1,x", ",", "", "mlp", "vgg16", "digits", "if", "bitserial",
          "auto", "best", "all", "relu", "qcfs", "--", "=", "\x00", "é"]  # fmt: skip


def _not_help(token: str) -> bool:
    """Tokens argparse would read as -h/--help (exit status 0) are not fuzzed."""
    return not (token.startswith("-") and token.lstrip("-").startswith("h"))


TOKENS = st.one_of(
    st.sampled_from(COMMANDS + OPTIONS + VALUES),
    st.builds(lambda o, v: f"{o}={v}", st.sampled_from(OPTIONS), st.sampled_from(VALUES)),
    st.text(max_size=8).filter(_not_help),
)


PARSER = build_parser()  # argparse parsers are reusable; building one takes ~30 ms


@settings(max_examples=300, deadline=None, suppress_health_check=SHARED_FIXTURES)
@given(argv=st.lists(TOKENS, max_size=8))
def test_parser_parses_or_exits_with_status_2(argv, capsys):
    capsys.readouterr()
    try:
        args = PARSER.parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 2, (argv, exc.code)
        assert "error:" in capsys.readouterr().err
        return
    assert isinstance(args.command, str) and callable(args.func)


@settings(max_examples=60, deadline=None, suppress_health_check=SHARED_FIXTURES)
@given(command=st.sampled_from(["evaluate", "analyze", "inspect", "report", "list"]),
       extra=st.lists(st.one_of(st.sampled_from(OPTIONS + VALUES), st.text(max_size=6).filter(_not_help)),
                      max_size=6))  # fmt: skip
def test_cli_fails_fast_with_status_2_never_a_traceback(tmp_path_factory, capsys, command, extra):
    missing = str(tmp_path_factory.getbasetemp() / "no-such-run")
    argv = [command] if command == "list" else [command, missing]
    capsys.readouterr()
    try:
        code = main([*argv, *extra])
    except SystemExit as exc:  # argparse rejected the arguments
        assert exc.code == 2, (argv, extra)
        return
    except SnnconvError as exc:  # pragma: no cover - main must catch these
        pytest.fail(f"main() let {type(exc).__name__} escape: {exc}")
    err = capsys.readouterr().err
    if command == "list":
        assert code == 0, extra
        return
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"snnconv {command}: error: ") and len(err.strip().splitlines()) == 1, err


# --- every value of every train flag (issue 20): refused in one line, or a run that trains ----------------------

BAD_NUMBERS = ["nan", "inf", "-inf", "-1", "0", "1e30", "-1e-30", "200", "99999999999999999999999", "", "x", "1,2"]
#: flag -> values to try besides BAD_NUMBERS (valid values kept cheap: tiny runs of the mlp on 32 digits images)
TRAIN_FLAGS = {
    "--levels": ["1", "2", "65536"], "--epochs": ["1"], "--batch-size": ["1", "7", "64"], "--lr": ["0.05", "1e-300"],
    "--weight-decay": ["0", "0.5"], "--optimizer": ["sgd", "adam", "rmsprop"], "--seed": ["0", "7", str(2**63 - 1)],
    "--width": ["0.5", "16", "1e-30"], "--threshold-init": ["4", "1e-30", "1e30"], "--qcfs-reg": ["0.1"],
    "--sparsity": ["1e-8"], "--init-percentile": ["50", "100"], "--subset": ["16", "40"],
    "--device": ["auto", "cpu", "cuda", "cuda:7", "bogus", "mps"], "--num-workers": ["0"],
    "--act": ["relu", "qcfs", "qcfs-softplus", "csqcfs", "csqcfs-plain"], "--log": ["csv", "none"],
    "--data-root": ["nowhere"], "--init-from": ["nowhere"], "--finetune-epochs": ["0"], "--bits": ["8", "9"],
    "--freeze-bn": ["0", "1"], "--freeze-observer": ["0"],
}  # fmt: skip
SWITCHES = ["--resume", "--overwrite", "--no-augment", "--cutout", "--two-stage", "--no-channel"]


@settings(max_examples=30, deadline=None, suppress_health_check=SHARED_FIXTURES)
@given(flags=st.dictionaries(st.sampled_from(sorted(TRAIN_FLAGS)), st.just(None), min_size=1, max_size=3),
       values=st.data(), switches=st.lists(st.sampled_from(SWITCHES), max_size=2, unique=True),
       method=st.sampled_from(["qcfs", "qcfs", "qcfs", "qat"]))  # fmt: skip
def test_no_value_of_any_train_flag_gives_a_traceback(tmp_path_factory, capsys, one_thread, flags, values, switches,
                                                       method):  # fmt: skip
    argv = ["train", "--model", "mlp", "--dataset", "digits", "--epochs", "1", "--subset", "32", "--batch-size", "16",
            "--lr", "0.05", "--threshold-init", "4", "--method", method, *switches]  # fmt: skip
    for flag in flags:
        argv += [flag, values.draw(st.sampled_from(TRAIN_FLAGS[flag] + BAD_NUMBERS), label=flag)]
    argv += ["--out", str(tmp_path_factory.mktemp("fuzz") / "run")]
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse rejected the syntax: its usage line and "error:", status 2
        assert exc.code == 2, argv
        assert "error:" in capsys.readouterr().err
        return
    err = capsys.readouterr().err
    assert "Traceback" not in err, (argv, err)
    if code != 0:
        assert code == 2, (argv, err)
        lines = [line for line in err.splitlines() if line.strip() and "Warning" not in line]
        assert lines[-1].startswith("snnconv train: error: ") and len(lines[-1]) > 30, (argv, err)


#: evaluate/analyze/inspect/export-nir flags -> values to try besides BAD_NUMBERS (valid ones keep each run small)
EVAL_FLAGS = {
    "--T": ["1", "2,4", "1,3"], "--method": ["if", "cos", "srp", "bitserial", "ratenorm", "calif", "magic"],
    "--schedule": ["layer", "step"], "--chunk": ["auto", "1", "3"], "--checkpoint": ["best", "last", "worst"],
    "--calibration": ["none", "cos", "srp"], "--rho": ["1", "3"], "--tau": ["1", "2"], "--subset": ["8", "20"],
    "--batch-size": ["4", "8"], "--ablation": ["all", "left_shift", "bogus"], "--bias-split": ["first", "uniform"],
    "--rounding": ["unbiased", "truncate"], "--data-root": ["nowhere"], "--input-coding": ["codes", "isi", "rate"],
    "--order": ["even", "random"], "--energy-table": ["45nm", "seed001"], "--batches": ["1"], "--json": ["out.json"],
}  # fmt: skip
EVAL_COMMANDS = {"evaluate": set(EVAL_FLAGS) - {"--energy-table", "--batches"},
                 "analyze": {"--T", "--method", "--batches", "--batch-size", "--energy-table", "--calibration", "--rho",
                             "--tau", "--checkpoint", "--data-root"},
                 "inspect": {"--checkpoint"}, "export-nir": {"--checkpoint"}}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz-run") / "run"
    torch.set_num_threads(1)
    argv = ["train", "--model", "mlp", "--dataset", "digits", "--epochs", "1", "--subset", "64", "--lr", "0.05",
            "--threshold-init", "4", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=SHARED_FIXTURES)
@given(command=st.sampled_from(sorted(EVAL_COMMANDS)), data=st.data(), switches=st.lists(
       st.sampled_from(["--float64", "--binary-spikes", "--fold-scales"]), max_size=1))  # fmt: skip
def test_no_value_of_any_evaluate_flag_gives_a_traceback(tiny_run, tmp_path_factory, capsys, one_thread, command, data,
                                                         switches):  # fmt: skip
    flags = data.draw(st.lists(st.sampled_from(sorted(EVAL_COMMANDS[command])), max_size=3, unique=True), label="flags")
    argv = [command, str(tiny_run)]
    if command == "export-nir":
        argv.append(str(tmp_path_factory.mktemp("nir") / "net.nir"))
    for flag in flags:
        value = data.draw(st.sampled_from(EVAL_FLAGS[flag] + BAD_NUMBERS), label=flag)
        argv += [flag, str(tmp_path_factory.mktemp("json") / value) if flag == "--json" and value else value]
    argv += [s for s in switches if command in ("evaluate", "analyze") or s == "--fold-scales"]
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        assert exc.code == 2, argv
        return
    err = capsys.readouterr().err
    assert "Traceback" not in err and code in (0, 2), (argv, code, err)
    if code == 2:
        assert err.strip().splitlines()[-1].startswith(f"snnconv {command}: error: "), (argv, err)
