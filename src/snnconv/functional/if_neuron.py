"""Integrate-and-fire neuron with reset by subtraction (seed 004 Eq. 2-4; SPEC §1), as pure functions.

    m(t) = v(t-1) + I(t),   s(t) = H(m(t) - θ)  (H(0) = 1: ties fire),   v(t) = m(t) - s(t)·θ,
    v(0) = φ·θ.

``if_step`` advances one step with explicit state; ``if_scan`` runs a [T, ...] current sequence from a
state (the layer-by-layer schedule, possibly in chunks of T). Both give bit-identical results: the scan is
the step in a loop over t, vectorised over every neuron.

State and output buffers keep the memory layout of the currents (e.g. channels-last, which the engine uses for
convolutions where it is faster), so the elementwise updates never mix layouts.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from snnconv import native

__all__ = ["IFState", "empty_steps", "fire_into", "if_init", "if_step", "if_scan", "if_scan_values", "step_format"]


class IFState(NamedTuple):
    v: Tensor  # membrane potential after the last step


def step_format(like: Tensor) -> torch.memory_format:
    """channels-last for a 4-D tensor stored that way (and not also plain contiguous), else contiguous."""
    if like.dim() == 4 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def empty_steps(steps: int, like: Tensor) -> Tensor:
    """An uninitialised [steps, *like.shape] buffer whose every step has the layout of ``like`` (one step, [B, ...])."""
    folded = (steps * like.shape[0], *like.shape[1:])
    buf = torch.empty(folded, dtype=like.dtype, device=like.device, memory_format=step_format(like))
    return buf.view(steps, *like.shape)


def _empty_steps(currents: Tensor) -> Tensor:
    """An uninitialised buffer like the [T, ...] ``currents`` whose every step has the layout of ``currents[0]``."""
    if currents.shape[0] == 0 or currents.dim() < 2:
        return torch.empty(currents.shape, dtype=currents.dtype, device=currents.device)
    return empty_steps(currents.shape[0], currents[0])


def if_init(like: Tensor, threshold: Tensor, phi: float = 0.5) -> IFState:
    """v(0) = φ·θ, broadcast to the shape (and memory layout) of one step's current ``like``."""
    v = torch.empty(like.shape, dtype=like.dtype, device=like.device, memory_format=step_format(like))
    return IFState(v=v.copy_((threshold * phi).expand_as(like)))


def if_step(current: Tensor, state: IFState, threshold: Tensor) -> tuple[Tensor, IFState]:
    """One step; returns the spikes (0/1, same dtype as ``current``) and the new state."""
    m = state.v + current
    spikes = (m >= threshold).to(current.dtype)
    return spikes, IFState(v=m - spikes * threshold)


def if_scan(currents: Tensor, state: IFState, threshold: Tensor) -> tuple[Tensor, IFState]:
    """Spikes (0/1) for a [T, ...] sequence of currents, in one loop over t.

    Same arithmetic as ``if_step`` (bit-identical), but updates a private copy of the potential in place.
    """
    v = state.v.clone()
    spikes = _empty_steps(currents)
    for t in range(currents.shape[0]):
        v.add_(currents[t])
        s = spikes[t]
        s.copy_(v >= threshold)
        v.sub_(s * threshold)
    return spikes, IFState(v=v)


def if_scan_values(
    currents: Tensor, state: IFState, threshold: Tensor, *, overwrite: bool = False
) -> tuple[Tensor, IFState, Tensor]:
    """Like ``if_scan`` but returns the output values s(t)·θ directly, plus the spike count of every step
    (float64, summed over the batch and neurons): the engine's fast path.

    The comparison writes 0/1 straight into the output buffer, which is counted and then scaled by θ in place;
    since s ∈ {0, 1}, s·θ is exact, so the potential is bit-identical to ``if_step``'s.

    ``overwrite=True``: the caller gives up ``currents`` and ``state.v`` (the engine, for values it owns): the
    outputs are written over the currents, step by step after each is integrated, and the potential is updated in
    place. Same values, no allocation: a fresh buffer costs page faults and a pass over memory (issue 8).
    """
    v = state.v if overwrite else state.v.clone()
    out = currents if overwrite else _empty_steps(currents)
    if _native_scan(currents, v, threshold, out):  # the same arithmetic fused in C++ (snnconv.native)
        return out, IFState(v=v), torch.ops.snnconv.if_scan_(out, currents, v, threshold)
    counts = torch.empty(currents.shape[0], dtype=torch.float64, device=currents.device)
    per_sample = tuple(range(1, currents.dim() - 1))  # every dim of a step but the batch (any memory layout)
    for t in range(currents.shape[0]):
        v.add_(currents[t])
        counts[t] = fire_into(out[t], v, threshold, per_sample)
    return out, IFState(v=v), counts


def _native_scan(currents: Tensor, v: Tensor, threshold: Tensor, out: Tensor) -> bool:
    """Whether ``snnconv.native``'s fused scan covers these buffers: one dense layout per step shared by the
    currents, the outputs and the potential, no autograd, and a kernel the machine could build."""
    if currents.dim() < 2 or currents.shape[0] == 0 or v.dtype != currents.dtype:
        return False
    if torch.is_grad_enabled() and (currents.requires_grad or v.requires_grad or threshold.requires_grad):
        return False
    step = currents[0]
    if currents.shape[0] > 1 and currents.stride(0) != step.numel():
        return False
    if not (_same_order(out, currents) and _same_order(v, step)):
        return False
    return native.fits(step, threshold) and native.available()


def _same_order(a: Tensor, b: Tensor) -> bool:
    """Same shape and the same storage order (strides of size-1 dims do not matter)."""
    return a.shape == b.shape and all(n == 1 or x == y for n, x, y in zip(a.shape, a.stride(), b.stride(), strict=True))


def fire_into(out: Tensor, v: Tensor, threshold: Tensor, per_sample: tuple[int, ...]) -> Tensor:
    """One firing step in place: s = H(v - θ) written as 0/1 into ``out``, counted, scaled to s·θ, and
    subtracted from ``v`` (reset by subtraction); returns the step's spike count (float64, 0-dim).

    Per-sample sums of 0/1 (over the ``per_sample`` dims) are exact in the tensor's dtype (< 2^24 neurons a sample)
    and are then summed in float64; since s ∈ {0, 1}, s·θ is exact. Shared by the IF and bit-serial scans.
    """
    torch.ge(v, threshold, out=out)
    count = (out.sum(per_sample) if per_sample else out).double().sum()
    out.mul_(threshold)
    v.sub_(out)
    return count
