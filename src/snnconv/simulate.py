"""The simulation engine: runs a ``SpikingNetwork`` for T steps in one of two schedules with identical results.

* ``"layer"`` (layer by layer): each conv/linear runs once on a [T·B, ...] tensor (time folded into the batch),
  each neuron scans over T. ``chunk`` bounds memory by folding at most ``chunk`` steps at a time (neuron state
  carries over between chunks); ``chunk="auto"`` (default) picks the largest chunk whose biggest folded
  activation fits ``fold_bytes`` (16 MB, measured on step 1), ``chunk=None`` folds all T steps at once.
* ``"step"`` (step by step): every layer advances one step at a time; memory O(layers), not O(T).

Values that do not depend on time (the analog input and everything computed from it before the first neuron,
i.e. the first layer's current under direct coding) are computed once and reused at every step.
The prediction after step t is the mean of the output layer's current over steps 1..t (SPEC §1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import torch
import torch.fx as fx
from torch import Tensor

from snnconv.convert.network import SpikingNetwork
from snnconv.errors import SimulationError
from snnconv.layers.neuron import SpikingNeuron
from snnconv.layers.temporal import TimeAware

Schedule = Literal["layer", "step"]
SCHEDULES: tuple[str, ...] = ("layer", "step")


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


class _Program:
    """A GraphModule prepared for execution: nodes, their modules, static flags and last uses."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.nodes = list(gm.graph.nodes)
        self.modules = dict(gm.named_modules())
        self.neuron_nodes = [n for n in self.nodes if n.op == "call_module"
                             and isinstance(self.modules[n.target], SpikingNeuron)]  # fmt: skip
        # neurons and step-dependent layers produce time-varying values even from a constant input
        timed = {n for n in self.nodes if n.op == "call_module"
                 and isinstance(self.modules[n.target], (SpikingNeuron, TimeAware))}  # fmt: skip
        self.static: set[fx.Node] = set()
        for n in self.nodes:
            if n.op == "placeholder" or (n not in timed and all(a in self.static for a in n.all_input_nodes)):
                self.static.add(n)
        # free each non-static value after its last use
        self.free_after: dict[fx.Node, list[str]] = {n: [] for n in self.nodes}
        seen: set[fx.Node] = set()
        for n in reversed(self.nodes):
            for a in n.all_input_nodes:
                if a not in seen and a not in self.static:
                    seen.add(a)
                    self.free_after[n].append(a.name)


def _validate(snn: SpikingNetwork, x: Tensor, T: int, schedule: str, chunk: int | str | None) -> None:
    if not isinstance(x, Tensor):
        raise SimulationError(f"simulate: x must be a tensor, got {type(x).__name__}")
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise SimulationError(f"simulate: T must be a positive integer number of time steps, got {T!r}")
    if schedule not in SCHEDULES:
        raise SimulationError(f"simulate: schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if chunk is not None and chunk != "auto" and (not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1):
        raise SimulationError(f"simulate: chunk must be a positive integer, 'auto' or None, got {chunk!r}")
    if x.dim() < 2 or x.shape[0] == 0:
        raise SimulationError(f"simulate: x must be a non-empty batch [B, ...], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise SimulationError(f"simulate: x must be a floating-point tensor, got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise SimulationError(f"simulate: x contains {bad} non-finite values (NaN/Inf); clean the input first")
    p = next(iter(snn.parameters()), None)
    p = p if p is not None else next(iter(snn.buffers()), None)
    if p is not None and (p.dtype != x.dtype or p.device != x.device):
        raise SimulationError(
            f"simulate: x is {x.dtype} on {x.device} but the network is {p.dtype} on {p.device}; "
            f"move one of them (e.g. snn.to(x.dtype) or x.to({p.dtype}))"
        )
    if not _causal(snn) and (schedule == "step" or (isinstance(chunk, int) and chunk < T)):
        raise SimulationError(
            "simulate: this network's neurons fire only after integrating all T inputs (accumulate-then-fire); "
            "use schedule='layer' without chunk"
        )


@torch.no_grad()
def simulate(
    snn: SpikingNetwork,
    x: Tensor,
    T: int,
    *,
    schedule: Schedule = "layer",
    chunk: int | Literal["auto"] | None = "auto",
    fold_bytes: int = 16 * 2**20,
    record: bool = True,
) -> SimResult:
    """Run ``snn`` on a batch ``x`` (direct coding: the analog input at every step) for ``T`` steps."""
    _validate(snn, x, T, schedule, chunk)
    program = _Program(snn.graph)
    B = x.shape[0]
    if schedule == "step":
        steps_per_run = 1
    elif chunk is None or not _causal(snn):
        steps_per_run = T
    elif chunk == "auto":
        steps_per_run = 1  # step 1 measures the largest per-step activation, then the chunk size is set
    else:
        steps_per_run = chunk
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
        values, states[key], step_counts = mod.scan_counted(cur, states[key])
        if record:
            counts[key][start : start + cur.shape[0]] += step_counts.to(counts[key].dtype)
        return values

    start = 0
    while start < T:
        steps = min(steps_per_run, T - start)
        env: dict[str, Any] = dict(static_cache)
        step_bytes = 0
        for node in program.nodes:
            if node.name in env:
                continue
            value = _run_node(program, node, env, x, B, steps, partial(neuron_call, start=start), start, T)
            env[node.name] = value
            if isinstance(value, _Seq):
                step_bytes = max(step_bytes, value.data.numel() * value.data.element_size() // steps)
            if node in program.static:
                static_cache[node.name] = value
            for name in program.free_after[node]:
                env.pop(name, None)
        outputs.append(env["__output__"])
        start += steps
        if chunk == "auto" and schedule == "layer" and start == 1:
            steps_per_run = max(1, fold_bytes // max(1, step_bytes))

    total = torch.cat(outputs, dim=0)  # (T, B, K) output currents
    t = torch.arange(1, T + 1, dtype=total.dtype, device=total.device).view(T, *([1] * (total.dim() - 1)))
    return SimResult(logits=total.cumsum(0) / t, spike_counts=counts, neurons=neurons, batch_size=B)


def _causal(snn: SpikingNetwork) -> bool:
    return all(m.causal for m in snn.neurons().values())


def _run_node(
    program: _Program,
    node: fx.Node,
    env: dict[str, Any],
    x: Tensor,
    B: int,
    steps: int,
    neuron_call: Callable[[fx.Node, SpikingNeuron, Tensor], Tensor],
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
    if isinstance(mod, (SpikingNeuron, TimeAware)):
        (inp,) = args
        if isinstance(inp, _Seq):
            cur = inp.data.view(steps, B, *inp.data.shape[1:])
        else:
            cur = inp.data.unsqueeze(0).expand(steps, *inp.data.shape)
        if isinstance(mod, TimeAware):
            return _Seq(_fold(_guard(node, lambda: mod.seq(cur, start, T))))
        return _Seq(_fold(_guard(node, lambda: neuron_call(node, mod, cur))))
    temporal = _has(args, _Seq) or _has(kwargs, _Seq)
    batch = temporal or _has(args, _Static) or _has(kwargs, _Static)
    a, kw = _unwrap(args, steps, temporal), _unwrap(kwargs, steps, temporal)
    if node.op == "call_module":
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
        raise SimulationError(f"simulate: {where} failed: {exc}") from exc
