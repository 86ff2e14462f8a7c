"""The simulation engine: runs a ``SpikingNetwork`` for T steps in one of two schedules with identical results.

* ``"layer"`` (layer by layer): each conv/linear runs once on a [T·B, ...] tensor (time folded into the batch),
  each neuron scans over T. ``chunk`` bounds memory by folding at most ``chunk`` steps at a time (neuron state
  carries over between chunks); ``chunk=None`` folds all T steps at once. ``chunk="auto"`` (default) splits the
  graph into stages (``snnconv.fold_plan``) from every value's size per step (measured on step 1 alone the first
  time the network sees an input shape): early layers with large activations fold few steps (``fold_bytes`` per
  activation: 4 MB on CPU, 256 MB on GPUs, which want large batches; ``tune_fold_bytes`` times other budgets on
  the caller's machine, see ``snnconv.fold_plan``), late layers with small activations and large
  weights (VGG's 512-channel convs and its classifier) fold many, reading their weights once per chunk instead
  of once per step.
* ``"step"`` (step by step): every layer advances one step at a time; memory O(layers), not O(T).

Values that do not depend on time (the analog input and everything computed from it before the first neuron,
i.e. the first layer's current under direct coding) are computed once and reused at every step. 2-D
convolutions get their input in the memory layout that is faster for them (``layout="auto"``, see
``resolve_layout``: channels-last for every conv on CPUs without AVX-512, up to 128 input channels elsewhere);
neuron state follows the layout of its currents.
The prediction after step t is the mean of the output layer's current over steps 1..t (SPEC §1).

Analog stages (``snnconv.layers.analog``: transformer attention and LayerNorm) keep state like neurons: a
``RateAnalog`` reads the running mean of its input (causal, both schedules; computed once when its input is
time-constant), a ``SumAnalog`` the sum over all T steps (layer by layer only).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import torch
import torch.fx as fx
from torch import Tensor, nn

from snnconv.convert.network import SpikingNetwork
from snnconv.errors import SimulationError
from snnconv.fold_plan import (
    CANDIDATES,
    FOLD_BYTES,
    FOLD_BYTES_GPU,
    SAMPLES,
    Stage,
    distinct_budgets,
    known_sizes,
    plan_stages,
    remember_sizes,
)
from snnconv.fold_plan import plan_stages as _plan_stages
from snnconv.layers.add import Add
from snnconv.layers.analog import AnalogStage
from snnconv.layers.bitserial import StepBias
from snnconv.layers.neuron import SpikingNeuron
from snnconv.layers.temporal import TimeAware
from snnconv.sim_checks import check_memory, sample_sizes, validate, validate_network

Schedule = Literal["layer", "step"]
Layout = Literal["auto", "nchw", "channels_last"]
LAYOUTS: tuple[str, ...] = ("auto", "nchw", "channels_last")
__all__ = ["FOLD_BYTES", "FOLD_BYTES_GPU", "SimResult", "simulate", "tune_fold_bytes"]


@dataclass
class SimResult:
    """Outputs of one simulation of a batch of B inputs over T steps."""

    logits: Tensor  #: (T, B, K): mean output current over steps 1..t, for every t
    spike_counts: dict[str, Tensor] = field(default_factory=dict)  #: layer -> (T,) spikes per step (batch sum)
    neurons: dict[str, int] = field(default_factory=dict)  #: layer -> neurons per sample
    batch_size: int = 0

    @property
    def T(self) -> int:
        return self.logits.shape[0]

    def spike_rates(self, upto: int | None = None) -> dict[str, float]:
        """spikes / (neurons · B · t) per layer over steps 1..``upto`` (default T)."""
        t = self.T if upto is None else upto
        return {k: float(c[:t].sum()) / (self.neurons[k] * self.batch_size * t) for k, c in self.spike_counts.items()}

    def total_spike_rate(self, upto: int | None = None) -> float:
        t = self.T if upto is None else upto
        spikes = sum(float(c[:t].sum()) for c in self.spike_counts.values())
        neurons = sum(self.neurons.values())
        return spikes / max(1, neurons * self.batch_size * t)

    def correct(self, labels: Tensor) -> Tensor:
        """(T,) number of correct predictions after each step."""
        return (self.logits.argmax(-1) == labels.to(self.logits.device)).sum(-1)


class _Seq:
    """A time-dependent value: data is folded [steps·B, ...]."""

    __slots__ = ("data",)

    def __init__(self, data: Tensor) -> None:
        self.data = data


class _Static:
    """A batch value that is the same at every step: data is [B, ...]."""

    __slots__ = ("data",)

    def __init__(self, data: Tensor) -> None:
        self.data = data


def _unwrap(value: Any, steps: int, temporal: bool) -> Any:
    if isinstance(value, _Seq):
        return value.data
    if isinstance(value, _Static):
        if not temporal:
            return value.data
        d = value.data
        return d.unsqueeze(0).expand(steps, *d.shape).reshape(steps * d.shape[0], *d.shape[1:])
    if isinstance(value, (tuple, list)):
        return type(value)(_unwrap(v, steps, temporal) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v, steps, temporal) for k, v in value.items()}
    return value


def _has(value: Any, kind: type) -> bool:
    if isinstance(value, kind):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has(v, kind) for v in value)
    if isinstance(value, dict):
        return any(_has(v, kind) for v in value.values())
    return False


#: under ``layout="auto"`` on AVX-512 CPUs and GPUs, 2-D convolutions with at most this many input channels read
#: channels-last inputs (on other CPUs every 2-D convolution does: ``resolve_layout``)
CHANNELS_LAST_MAX_IN = 128


@functools.cache
def _cpu_has_avx512() -> bool:
    return "AVX512" in torch.backends.cpu.get_cpu_capability()


def resolve_layout(layout: str, device: torch.device) -> str:
    """What ``layout`` means for inputs on ``device``: ``"auto"`` becomes ``"channels_last"`` on CPUs without
    AVX-512 and stays ``"auto"`` (channels-last up to ``CHANNELS_LAST_MAX_IN`` input channels) elsewhere.

    Measured with oneDNN (benchmarks/README.md): channels-last convolutions are about twice as fast as NCHW for
    few channels on large maps on every CPU tried; for 256-512 channels on 2×2-8×8 maps they were slower on an
    AVX-512 EPYC (2026-11-23) and 1.4-1.7× faster on an AVX2 one (2026-12-04: VGG-16's SNN 0.66 instead of 0.86 of
    T ANN passes at T = 4). A deterministic rule rather than a timing, so the same machine always gives the same
    bits; ``layout="nchw"`` or ``"channels_last"`` fixes it.
    """
    if layout == "auto" and device.type == "cpu" and not _cpu_has_avx512():
        return "channels_last"
    return layout


def _input_format(mod: Any, layout: str) -> torch.memory_format | None:
    """The memory layout a layer's input is given in under a resolved ``layout`` (see ``resolve_layout``), or
    None to leave it as it comes. A conv given an NCHW input runs NCHW; neurons keep their currents' layout.
    """
    if layout == "nchw" or not isinstance(mod, nn.Conv2d):
        return None
    if layout == "channels_last" or mod.in_channels <= CHANNELS_LAST_MAX_IN:
        return torch.channels_last
    return torch.contiguous_format


class _Program:
    """A GraphModule prepared for execution: nodes, their modules, static flags and last uses."""

    def __init__(self, gm: fx.GraphModule, layout: str = "auto") -> None:
        self.gm = gm
        self.nodes = list(gm.graph.nodes)
        self.modules = dict(gm.named_modules())  # the one walk of the module tree per simulate call
        # what the fold plan checks before it reuses sizes measured in an earlier call (``fold_plan.known_sizes``)
        self.fingerprint = (tuple((n, n.op, n.target, n.args, tuple(n.kwargs.items())) for n in self.nodes),
                            tuple(id(m) for m in self.modules.values()))  # fmt: skip
        self.formats = {n: f for n in self.nodes if n.op == "call_module"
                        and (f := _input_format(self.modules[n.target], layout)) is not None}  # fmt: skip
        self.neuron_nodes = [n for n in self.nodes if n.op == "call_module"
                             and isinstance(self.modules[n.target], SpikingNeuron)]  # fmt: skip
        stages = [m for m in self.modules.values() if isinstance(m, AnalogStage)]
        self.causal = all(self.modules[n.target].causal for n in self.neuron_nodes) and all(m.causal for m in stages)
        # neurons, step-dependent layers and analog stages that sum over steps produce time-varying values even
        # from a constant input
        timed = {n for n in self.nodes if n.op == "call_module" and _timed(self.modules[n.target])}
        self.static: set[fx.Node] = set()
        for n in self.nodes:
            if n.op == "placeholder" or (n not in timed and all(a in self.static for a in n.all_input_nodes)):
                self.static.add(n)
        # values a consumer may overwrite: neurons write their outputs over their currents, residual additions
        # add into one of their operands (no allocation, no page faults: issue 8)
        self.donated = {n for n in self.nodes if n.op == "call_module" and _takes_overwrite(self.modules[n.target])
                        and _owned(self, n.args[0] if n.args else None)}  # fmt: skip
        self.add_into: dict[fx.Node, int] = {}
        for n in self.nodes:
            if n.op == "call_module" and type(self.modules[n.target]) is Add and not _hooked(self.modules[n.target]):
                owned = [i for i, a in enumerate(n.args[:2]) if _owned(self, a)]
                if owned and len(n.args) == 2 and not n.kwargs:
                    self.add_into[n] = owned[0]
        # free each non-static value after its last use
        self.free_after: dict[fx.Node, list[str]] = {n: [] for n in self.nodes}
        seen: set[fx.Node] = set()
        for n in reversed(self.nodes):
            for a in n.all_input_nodes:
                if a not in seen and a not in self.static:
                    seen.add(a)
                    self.free_after[n].append(a.name)

    def overwrite(self, node: fx.Node) -> dict[str, bool]:
        """Keyword arguments for a neuron's ``scan_counted`` / a layer's ``seq``: ``overwrite=True`` where the
        engine owns the input (layers that do not take the flag are never passed it)."""
        return {"overwrite": True} if node in self.donated else {}


#: layers whose output is a new tensor (never a view of an input): a neuron may overwrite it when it is its only user
_FRESH_OUTPUT = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.pooling._AvgPoolNd, nn.modules.batchnorm._BatchNorm,
                 Add, StepBias)  # fmt: skip


def _hooked(mod: nn.Module) -> bool:
    """Forward hooks may keep a layer's output, pre-hooks change its inputs: either rules out an in-place path."""
    g = nn.modules.module
    return bool(mod._forward_hooks or mod._forward_pre_hooks or g._global_forward_hooks
                or g._global_forward_pre_hooks)  # fmt: skip


def _owned(program: _Program, producer: Any) -> bool:
    """True if the one consumer of ``producer``'s value may write over it: the value is time-dependent, read by
    nothing else, a fresh tensor (not a view of another value), and no forward hook can have kept a reference."""
    if not isinstance(producer, fx.Node) or producer.op != "call_module" or len(producer.users) != 1:
        return False
    mod = program.modules[producer.target]
    return isinstance(mod, _FRESH_OUTPUT) and producer not in program.static and not _hooked(mod)


def _takes_overwrite(mod: nn.Module) -> bool:
    """Whether a neuron's ``scan_counted`` or a step-dependent layer's ``seq`` has the ``overwrite`` flag (a
    subclass may override it without)."""
    if isinstance(mod, SpikingNeuron):
        return _has_overwrite(getattr(mod.scan_counted, "__func__", mod.scan_counted))
    return isinstance(mod, TimeAware) and _has_overwrite(getattr(mod.seq, "__func__", mod.seq))


@functools.lru_cache(maxsize=256)
def _has_overwrite(fn: Callable[..., Any]) -> bool:
    """``inspect.signature`` once per function, not once per neuron and call (it cost ~100 µs each, issue 8)."""
    return "overwrite" in inspect.signature(fn).parameters


def _timed(mod: Any) -> bool:
    if isinstance(mod, AnalogStage):
        return not mod.static_on_constant
    return isinstance(mod, (SpikingNeuron, TimeAware))


@torch.no_grad()
def simulate(
    snn: SpikingNetwork,
    x: Tensor,
    T: int,
    *,
    schedule: Schedule = "layer",
    chunk: int | Literal["auto"] | None = "auto",
    fold_bytes: int | None = None,
    record: bool = True,
    layout: Layout = "auto",
) -> SimResult:
    """Run ``snn`` on a batch ``x`` (direct coding: the analog input at every step) for ``T`` steps.

    ``layout``: memory layout of 2-D convolution inputs: ``"auto"`` (channels-last where it is faster, see
    ``resolve_layout``), ``"nchw"`` (as they come) or ``"channels_last"``. Results agree to float rounding across
    layouts; within one layout both schedules and every chunking give identical results.
    """
    validate_network(snn)
    if layout not in LAYOUTS:
        raise SimulationError(f"simulate: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    layout = resolve_layout(layout, x.device) if isinstance(x, Tensor) else layout  # non-tensors: _validate says
    program = _Program(snn.graph, layout)
    validate(snn, program, x, T, schedule, chunk)
    B = x.shape[0]
    if schedule == "step":
        steps_per_run = 1
    elif chunk is None or not program.causal:
        steps_per_run = T
    elif chunk == "auto":
        steps_per_run = 0  # planned after step 1 (below)
    else:
        steps_per_run = chunk
    if fold_bytes is None:
        fold_bytes = FOLD_BYTES if x.device.type == "cpu" else FOLD_BYTES_GPU
    _check_memory(snn, program, x, T, steps_per_run, fold_bytes, chunk if schedule == "layer" else "step")
    states: dict[str, Any] = {}
    counts: dict[str, Tensor] = {n.target: x.new_zeros(T) for n in program.neuron_nodes} if record else {}
    neurons: dict[str, int] = {}
    static_cache: dict[str, Any] = {}
    outputs: list[Tensor] = []

    def neuron_call(node: fx.Node, mod: SpikingNeuron, cur: Tensor, start: int) -> Tensor:
        key = node.target
        if key not in states:
            states[key] = mod.init_state(cur[0])
            neurons[key] = cur[0][0].numel()
        # step by step, cur is [1, B, ...]: the neuron advances one step (its scan over one step is its step
        # function, tested bit for bit against ``step``); layer by layer it scans the whole chunk
        values, states[key], step_counts = mod.scan_counted(cur, states[key], **program.overwrite(node))
        if record:
            counts[key][start : start + cur.shape[0]] += step_counts.to(counts[key].dtype)
        return values

    def stage_call(node: fx.Node, mod: AnalogStage, x_seq: Tensor, start: int) -> Tensor:
        key = node.target
        if key not in states:
            states[key] = mod.init_state(x_seq[0])
        values, states[key] = mod.scan(x_seq, states[key], start, T)
        return values

    def run_nodes(
        nodes: list[fx.Node], env: dict[str, Any], start: int, steps: int, sizes: dict[fx.Node, int] | None = None
    ) -> dict[str, Any]:
        for node in nodes:
            if node.name in env:
                continue
            value = _run_node(program, node, env, x, B, steps, partial(neuron_call, start=start),
                              partial(stage_call, start=start), start, T)  # fmt: skip
            env[node.name] = value
            if sizes is not None:
                sizes[node] = _step_bytes(value, steps)
            if node in program.static:
                static_cache[node.name] = value
            for name in program.free_after[node]:
                env.pop(name, None)
        return env

    first = 0
    if steps_per_run == 0:  # auto: plan the stages from every value's size per step (measured on step 1 alone
        # the first time this network sees such an input; later calls fold step 1 with the others)
        key = _input_key(x, layout)
        sizes = known_sizes(snn, program, key)
        if sizes is None:
            sizes = {}
            outputs.append(run_nodes(program.nodes, dict(static_cache), 0, 1, sizes)["__output__"])
            first = 1
            remember_sizes(snn, program, key, sizes)
        stages = _plan_stages(program, sizes, fold_bytes, T - first) if T > first else []
    else:
        stages = [Stage(program.nodes, steps_per_run, frozenset())]
    pending: list[list[tuple[dict[str, Any], int, int]]] = [[] for _ in stages]

    def deliver(k: int, env: dict[str, Any], start: int, steps: int) -> None:
        if k == len(stages) - 1:
            outputs.append(env["__output__"])
            return
        pending[k + 1].append(({name: env[name] for name in stages[k].live_out}, start, steps))
        if sum(p[2] for p in pending[k + 1]) >= stages[k + 1].chunk:
            flush(k + 1)

    def flush(k: int) -> None:
        parts, pending[k] = pending[k], []
        start, steps = parts[0][1], sum(p[2] for p in parts)
        env = dict(static_cache)
        for name in parts[0][0]:  # time-major folded values: concatenating chunks is concatenating steps
            env[name] = parts[0][0][name] if len(parts) == 1 else _Seq(torch.cat([p[0][name].data for p in parts]))
        deliver(k, run_nodes(stages[k].nodes, env, start, steps), start, steps)

    start = first
    while stages and start < T:
        steps = min(stages[0].chunk, T - start)
        deliver(0, run_nodes(stages[0].nodes, dict(static_cache), start, steps), start, steps)
        start += steps
    for k in range(1, len(stages)):  # the last, partial chunks
        if pending[k]:
            flush(k)

    total = torch.cat(outputs, dim=0)  # (T, B, K) output currents
    t = torch.arange(1, T + 1, dtype=total.dtype, device=total.device).view(T, *([1] * (total.dim() - 1)))
    return SimResult(logits=total.cumsum(0) / t, spike_counts=counts, neurons=neurons, batch_size=B)


def _check_memory(snn: SpikingNetwork, program: _Program, x: Tensor, T: int, steps_per_run: int, fold_bytes: int,
                  chunk: Any) -> None:  # fmt: skip
    """Refuse (``sim_checks.check_memory``) a run that would not fit in memory, with the steps each value folds:
    ``steps_per_run``, or (``chunk="auto"``, 0) the chunks the fold plan would give."""
    found = sample_sizes(snn, program, x)
    if found is None:
        return
    per_sample, out_bytes = found
    B = x.shape[0]
    if steps_per_run:
        chunks = dict.fromkeys(program.nodes, min(steps_per_run, T))
    else:
        # fold_plan's own function: ``_plan_stages`` is the engine's (tests count the plans it makes)
        plan = plan_stages(program, {n: per_sample.get(n.name, 0) * B for n in program.nodes}, fold_bytes, T)
        chunks = {n: stage.chunk for stage in plan for n in stage.nodes}
    check_memory(program, per_sample, out_bytes, x, T, chunks, chunk)


def tune_fold_bytes(
    snn: SpikingNetwork,
    x: Tensor,
    T: int,
    *,
    layout: Layout = "auto",
    candidates: tuple[int, ...] = CANDIDATES,
    samples: int = SAMPLES,
) -> int:
    """The fold budget (bytes per folded activation) that simulates ``snn`` on inputs shaped like ``x`` for ``T``
    steps fastest on this machine: every candidate whose plan differs from a smaller one's is timed ``samples``
    times, in turn, and the least time wins (noise only adds time). Pass the result as ``simulate(...,
    fold_bytes=...)``. Results are the same bits for every budget; a larger one may take more memory.
    """
    if not candidates or any(not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in candidates):
        raise SimulationError(f"tune_fold_bytes: candidates must be positive byte counts, got {candidates!r}")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise SimulationError(f"tune_fold_bytes: samples must be a positive integer, got {samples!r}")
    simulate(snn, x, T, layout=layout, fold_bytes=min(candidates))  # measures the sizes (and checks the input)
    layout = resolve_layout(layout, x.device)  # as simulate resolved it: the sizes are kept under that key
    program = _Program(snn.graph, layout)
    sizes = known_sizes(snn, program, _input_key(x, layout))
    if sizes is None or T == 1:  # no staged folding (accumulate-then-fire networks) or one step: nothing to choose
        return min(candidates)
    budgets = distinct_budgets(program, sizes, tuple(candidates), T)
    times: dict[int, float] = {b: float("inf") for b in budgets}
    for _ in range(samples if len(budgets) > 1 else 0):
        for b in budgets:
            t0 = time.perf_counter()
            simulate(snn, x, T, layout=layout, fold_bytes=b)
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            times[b] = min(times[b], time.perf_counter() - t0)
    return min(budgets, key=lambda b: times[b])


def _input_key(x: Tensor, layout: str) -> tuple:
    return (tuple(x.shape), x.dtype, x.device, layout)


def _step_bytes(value: Any, steps: int) -> int:
    """Bytes per step of a time-dependent value; 0 for a value that is the same at every step; -1 for anything
    else (a Python number, a shape...): such a value may depend on the chunk size and must not cross stages."""
    if isinstance(value, _Seq):
        return value.data.numel() * value.data.element_size() // steps
    if value is None or isinstance(value, (_Static, Tensor, nn.Module)):
        return 0
    return -1


def _run_node(
    program: _Program,
    node: fx.Node,
    env: dict[str, Any],
    x: Tensor,
    B: int,
    steps: int,
    neuron_call: Callable[[fx.Node, SpikingNeuron, Tensor], Tensor],
    stage_call: Callable[[fx.Node, AnalogStage, Tensor], Tensor],
    start: int,
    T: int,
) -> Any:
    if node.op == "placeholder":
        return _Static(x)
    if node.op == "get_attr":
        return _fetch_attr(program.gm, node.target)
    args = fx.node.map_arg(node.args, lambda a: env[a.name])
    kwargs = fx.node.map_arg(node.kwargs, lambda a: env[a.name])
    if node.op == "output":
        value = args[0]
        if isinstance(value, _Seq):
            data = value.data
            env["__output__"] = data.view(steps, B, *data.shape[1:])
        elif isinstance(value, _Static):
            env["__output__"] = value.data.unsqueeze(0).expand(steps, *value.data.shape)
        else:
            raise SimulationError("the network's output is not a batch tensor")
        return None
    mod = program.modules[node.target] if node.op == "call_module" else None
    if isinstance(mod, AnalogStage) and (_timed(mod) or _has(args, _Seq)):
        (inp,) = args
        if isinstance(inp, _Seq):
            seq = inp.data.view(steps, B, *inp.data.shape[1:])
        else:
            seq = inp.data.unsqueeze(0).expand(steps, *inp.data.shape)
        return _Seq(_fold(_guard(node, lambda: stage_call(node, mod, seq))))
    if isinstance(mod, (SpikingNeuron, TimeAware)):
        (inp,) = args
        if isinstance(inp, _Seq):
            cur = inp.data.view(steps, B, *inp.data.shape[1:])
        else:
            cur = inp.data.unsqueeze(0).expand(steps, *inp.data.shape)
        if isinstance(mod, TimeAware):
            return _Seq(_fold(_guard(node, lambda: mod.seq(cur, start, T, **program.overwrite(node)))))
        return _Seq(_fold(_guard(node, lambda: neuron_call(node, mod, cur))))
    temporal = _has(args, _Seq) or _has(kwargs, _Seq)
    batch = temporal or _has(args, _Static) or _has(kwargs, _Static)
    a, kw = _unwrap(args, steps, temporal), _unwrap(kwargs, steps, temporal)
    into = program.add_into.get(node)
    if into is not None and isinstance(args[into], _Seq):
        dst, other = a[into], a[1 - into]
        if isinstance(other, Tensor) and other.shape == dst.shape and other.dtype == dst.dtype:
            return _Seq(_guard(node, lambda: dst.add_(other)))  # a + b == b + a: IEEE addition commutes
    if node.op == "call_module":
        fmt = program.formats.get(node)
        if fmt is not None and a and isinstance(a[0], Tensor) and a[0].dim() == 4:
            a = (a[0].contiguous(memory_format=fmt), *a[1:])
        result = _guard(node, lambda: mod(*a, **kw))
    elif node.op == "call_function":
        result = _guard(node, lambda: node.target(*a, **kw))
    else:  # call_method
        result = _guard(node, lambda: getattr(a[0], node.target)(*a[1:], **kw))
    if batch and isinstance(result, Tensor):
        return _Seq(result) if temporal else _Static(result)
    return result


def _fold(values: Tensor) -> Tensor:
    return values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _guard(node: fx.Node, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except SimulationError:
        raise
    except RuntimeError as exc:
        where = f"layer '{node.target}'" if node.op == "call_module" else f"operation '{node.name}'"
        raise SimulationError(f"simulate: {where} failed: {exc}{_shape_hint(node)}") from exc


def _shape_hint(node: fx.Node) -> str:
    """What input a conv/linear layer expects, for shape errors (the torch message only names matrix sizes)."""
    mod = node.graph.owning_module.get_submodule(node.target) if node.op == "call_module" else None
    if isinstance(mod, torch.nn.Linear):
        return f"; this layer expects inputs with {mod.in_features} features (last dim); check x's shape [B, ...]"
    if isinstance(mod, torch.nn.modules.conv._ConvNd):
        dims = len(mod.kernel_size)
        shape = ", ".join(["B", str(mod.in_channels), *("H", "W", "D")[:dims]])
        return f"; this layer expects [{shape}] inputs with {mod.in_channels} channels; check x's shape"
    return ""
