"""What ``simulate`` checks before it runs (split from :mod:`snnconv.simulate`): the network, the input, T, the
neurons' thresholds, and (issue 20) the memory the run would take.

The memory estimate uses every value's bytes per sample and step, measured by the engine on one sample
(``simulate._probe``), times the steps folded at once and the batch, plus the (T, B, classes) outputs that every
schedule keeps. A run that would need more than the memory available is refused with the estimate and the fix
(``chunk=``, fewer steps or a smaller batch), before anything of that size is allocated.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor, nn

from snnconv.convert.network import SpikingNetwork
from snnconv.errors import SimulationError, all_positive, count_not_positive
from snnconv.layers.analog import AnalogStage
from snnconv.layers.neuron import SpikingNeuron
from snnconv.layers.temporal import TimeAware
from snnconv.limits import MAX_T

SCHEDULES: tuple[str, ...] = ("layer", "step")
#: neuron buffers that must be finite and > 0 (IF/Ca-LIF thresholds, bit-serial spike values)
_POSITIVE_BUFFERS = ("threshold", "step_values")


def validate_network(snn: Any) -> None:
    if not isinstance(snn, SpikingNetwork):
        raise SimulationError(
            f"simulate: snn must be a SpikingNetwork, got {type(snn).__name__}; convert the ANN first: "
            "snn = snnconv.convert(ann)"
        )


def validate(snn: SpikingNetwork, program: Any, x: Tensor, T: int, schedule: str, chunk: int | str | None) -> None:
    """Refuse a bad ``x``, ``T``, ``schedule`` or ``chunk``, and neurons whose thresholds are not finite and > 0."""
    if not isinstance(x, Tensor):
        raise SimulationError(f"simulate: x must be a tensor, got {type(x).__name__}")
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise SimulationError(f"simulate: T must be a positive integer number of time steps, got {T!r}")
    if T > MAX_T:
        raise SimulationError(f"simulate: T={T} is beyond the sanity bound of {MAX_T} time steps "
                              "(snnconv.limits.MAX_T); simulate fewer steps")  # fmt: skip
    if schedule not in SCHEDULES:
        raise SimulationError(f"simulate: schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if chunk is not None and chunk != "auto" and (not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1):
        raise SimulationError(f"simulate: chunk must be a positive integer, 'auto' or None, got {chunk!r}")
    if x.dim() < 2 or x.shape[0] == 0:
        raise SimulationError(f"simulate: x must be a non-empty batch [B, ...], got shape {tuple(x.shape)}")
    _check_input_rank(program, x)
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
    check_neurons(program)
    if not program.causal and (schedule == "step" or (isinstance(chunk, int) and chunk < T)):
        raise SimulationError(
            "simulate: this network's neurons (or analog stages) fire only after integrating all T inputs "
            "(accumulate-then-fire); use schedule='layer' without chunk"
        )


def _check_input_rank(program: Any, x: Tensor) -> None:
    """A convolution reading the input needs [B, C, *spatial]: one dimension less is a missing batch dimension
    (torch would run the sample unbatched and a later layer would fail or mix up its axes)."""
    for node in program.nodes:
        if node.op != "placeholder":
            continue
        for user in node.users:
            mod = program.modules.get(user.target) if user.op == "call_module" else None
            if isinstance(mod, nn.modules.conv._ConvNd):
                want = 2 + len(mod.kernel_size)
                if x.dim() != want:
                    shape = ", ".join(["B", "C", *("H", "W", "D")[: want - 2]])
                    fix = " (no batch dimension? x.unsqueeze(0) adds one)" if x.dim() == want - 1 else ""
                    raise SimulationError(f"simulate: layer '{user.target}' reads x as [{shape}], got shape "
                                          f"{tuple(x.shape)}{fix}")  # fmt: skip


def check_neurons(program: Any) -> None:
    """A threshold edited (or loaded) to <= 0, NaN or Inf would silently give wrong spikes: refuse it."""
    for node in program.neuron_nodes:
        name, mod = node.target, program.modules[node.target]
        for key in _POSITIVE_BUFFERS:
            value = getattr(mod, key, None)
            if not isinstance(value, Tensor) or not value.is_floating_point():
                continue
            if all_positive(value):
                continue
            bad = count_not_positive(value)
            if bad:
                raise SimulationError(
                    f"simulate: spiking layer '{name}' ({type(mod).__name__}) has {bad} {key} value(s) "
                    f"that are not finite and > 0 (min {float(value.min()):.4g}); a neuron with θ <= 0 fires on "
                    "every step: convert the ANN again instead of editing thresholds, or fix them"
                )


def available_bytes(device: torch.device) -> int | None:
    """Memory free for a run on ``device`` (CPU: ``MemAvailable``; CUDA: the driver's free memory), or None."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def check_memory(program: Any, per_sample: dict[str, int], out_bytes: int, x: Tensor, T: int,
                 chunks: dict[fx.Node, int], chunk: Any) -> None:  # fmt: skip
    """Refuse a run whose folded values (``chunks[node]`` steps of ``per_sample[node]`` bytes per sample, for the
    batch) and (T, B, classes) outputs would need more than the available memory."""
    B = x.shape[0]
    folded = 0
    for node in program.nodes:
        live = per_sample.get(node.name, 0) + sum(per_sample.get(a.name, 0) for a in node.all_input_nodes)
        folded = max(folded, chunks.get(node, 1) * B * live)
    outputs = 3 * T * B * out_bytes + T * len(program.neuron_nodes) * x.element_size()  # steps, cat, running mean
    need, free = folded + outputs, available_bytes(x.device)
    if free is None or need <= free:
        return
    if folded >= outputs:
        fix = ("fold fewer steps at once: chunk='auto' (the default) or a small chunk=N keeps memory O(N steps), not "
               "O(T)") if chunk != "auto" else "use a smaller batch"  # fmt: skip
    else:
        fix = "simulate fewer steps or a smaller batch: the (T, batch, classes) outputs alone take " + _gb(outputs)
    raise SimulationError(f"simulate: T={T} with chunk={chunk!r} and a batch of {B} needs about {_gb(need)} "
                          f"({_gb(folded)} of values folded over the steps, {_gb(outputs)} of per-step outputs), "
                          f"more than the {_gb(free)} free on {x.device}; {fix}")  # fmt: skip


class _SampleSizes(fx.Interpreter):
    """Bytes of every value of one sample and one step: conv/linear/pool layers run their ``forward`` (hooks do not
    fire: they may be counting, e.g. ``snnconv.analysis.energy``), neurons and time-aware stages pass shapes on."""

    def __init__(self, gm: fx.GraphModule, static: set) -> None:
        super().__init__(gm)
        self.static = {n.name for n in static}
        self.sizes: dict[str, int] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, Tensor) and n.name not in self.static:
            self.sizes[n.name] = result.numel() * result.element_size()
        return result

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        mod = self.fetch_attr(target)
        if isinstance(mod, (SpikingNeuron, TimeAware, AnalogStage)):
            return args[0]
        return mod.forward(*args, **kwargs)


_SIZES: weakref.WeakKeyDictionary[nn.Module, dict[tuple, tuple]] = weakref.WeakKeyDictionary()


@torch.no_grad()
def sample_sizes(snn: SpikingNetwork, program: Any, x: Tensor) -> tuple[dict[str, int], int] | None:
    """Bytes per sample and step of every time-dependent value and of the output (remembered per input shape), or
    None where the network does not run on ``x[:1]`` this way (the engine then reports the error itself)."""
    key = (tuple(x.shape[1:]), x.dtype, x.device)
    known = _SIZES.get(snn, {}).get(key)
    if known is not None and known[0] == program.fingerprint:
        return known[1]
    interp = _SampleSizes(program.gm, program.static)
    try:
        out = interp.run(x[:1])
    except Exception:  # any failure here is the engine's to report, with its own message
        return None
    result = interp.sizes, (out.numel() * out.element_size() if isinstance(out, Tensor) else 0)
    _SIZES.setdefault(snn, {})[key] = (program.fingerprint, result)
    return result


__all__ = ["SCHEDULES", "available_bytes", "check_memory", "check_neurons", "sample_sizes", "validate"]
