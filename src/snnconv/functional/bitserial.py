"""Error-free bit-serial conversion as pure functions (seed 001 Eq. 8-9, corrected: SPEC §3).

Level conventions. A QCFS layer with L levels and threshold λ has the step Δ = λ/L. With T bits the neuron
threshold is θ = 2^T·Δ (``torch.ldexp``: exact), step t carries θ·2^-t (MSB first) and the code is
``k = clip(floor(z/Δ + φ), 0, 2^T - 1)``. T bits are exact iff 2^T - 1 >= L; when 2^T - 1 > L (e.g. L = 2^T'
trained with its top level reachable, T = T' + 1) the accumulated potential is clamped, u ← min(u, LΔ), so that
k <= L as in QCFS. ``min_bits(L) = L.bit_length()`` is the smallest exact T.

Neuron (accumulate, then fire): ``u = min(v0 + Σ_t I(t), clamp)``, then for t = 1..T'
``s(t) = H(u - w(t))``, ``u ← u - s(t)·w(t)`` with w(t) = θ·2^-t. Each subtraction is exact in floating point
(Sterbenz: w(t) <= u < 2·w(t) whenever it fires), so the spikes are exactly the bits of floor(u/Δ').
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from snnconv.errors import SnnconvError
from snnconv.functional.if_neuron import empty_steps, fire_into, step_format

ExtraSteps = Literal["refine", "pad"]
#: what time steps beyond the exact bits do (SPEC §3): "refine" keeps firing θ·2^-t below Δ, MSB first (seed 001
#: Tables 1-2: the SNN approaches the un-quantized clipped activation); "pad" adds silent leading steps (SNN == QANN)
EXTRA_STEPS: tuple[str, ...] = ("refine", "pad")

__all__ = [
    "EXTRA_STEPS",
    "ExtraSteps",
    "bit_planes",
    "bit_step_values",
    "bitserial_fire",
    "bitserial_potential",
    "clamp_value",
    "codes_from_bits",
    "ldexp",
    "per_step",
    "min_bits",
    "quantize_codes",
    "stepped_if_scan",
    "bitserial_scan_values",
]


def min_bits(levels: int) -> int:
    """Smallest T with 2^T - 1 >= L (T = log2(L+1) for L = 2^T - 1; log2(L) + 1 plus a clamp for L = 2^T)."""
    if not isinstance(levels, int) or levels < 1:
        raise SnnconvError(f"min_bits: levels must be a positive integer, got {levels!r}")
    return levels.bit_length()


def bit_step_values(delta: Tensor, bits: int, steps: int) -> Tensor:
    """w(t) = θ·2^-t = ldexp(Δ, bits - t) for t = 1..steps; shape [steps, *delta.shape] (exact scaling)."""
    exps = torch.arange(bits - 1, bits - 1 - steps, -1, device=delta.device)
    return ldexp(delta.unsqueeze(0), exps.view(-1, *([1] * delta.dim())))


def ldexp(x: Tensor, exponent: int | Tensor) -> Tensor:
    """x·2^e, exact (``torch.ldexp`` with explicit broadcasting), in the dtype of ``x``."""
    e = torch.as_tensor(exponent, device=x.device)
    x, e = torch.broadcast_tensors(x, e)
    return torch.ldexp(x, e).to(x.dtype)


def clamp_value(delta: Tensor, levels: int) -> Tensor:
    """A potential cap giving k <= L: λ = LΔ (exact, ldexp) for L a power of two, else (L + 1/2)·Δ.

    Both give floor(min(u, cap)/Δ) = min(floor(u/Δ), L); the half-step form is robust to the rounding of L·Δ.
    """
    if levels & (levels - 1) == 0:
        return ldexp(delta, levels.bit_length() - 1)
    return delta * (levels + 0.5)


def per_step(values: Tensor, ndim: int) -> Tensor:
    """View [T] or [T, C] per-step values so they broadcast over a [T, B, C, ...] tensor with ``ndim`` dims."""
    if values.dim() == 1:
        return values.view(-1, *([1] * (ndim - 1)))
    return values.view(values.shape[0], 1, values.shape[1], *([1] * (ndim - 3)))


def bitserial_potential(currents: Tensor, v0: Tensor, clamp: Tensor | None = None) -> Tensor:
    """u = min(v0 + Σ_t I(t), clamp) for currents [T, B, ...] (v0, clamp broadcast over one step).

    u keeps the memory layout of one step (the sum over T returns row-major even for channels-last steps; mixing
    layouts made every later elementwise pass ~20x slower, issue 8)."""
    u = currents.sum(0).contiguous(memory_format=step_format(currents[0])) + v0
    return torch.minimum(u, clamp) if clamp is not None else u


def bitserial_fire(u: Tensor, step_values: Tensor) -> Tensor:
    """Spikes [T', B, ...] of the accumulate-then-fire neuron: s(t) = H(u - w(t)), u ← u - s(t)·w(t).

    ``step_values`` is [T'] or [T', C] (channel axis 1 of ``u``); one loop over the T' steps, vectorised.
    """
    w = per_step(step_values, u.dim() + 1)
    spikes = torch.empty((w.shape[0], *u.shape), dtype=u.dtype, device=u.device)
    u = u.clone()
    for t in range(w.shape[0]):
        s = spikes[t]
        s.copy_(u >= w[t])
        u.sub_(s * w[t])
    return spikes


def bitserial_scan_values(
    currents: Tensor, v0: Tensor, clamp: Tensor | None, step_values: Tensor, *, overwrite: bool = False
) -> tuple[Tensor, Tensor]:
    """``bitserial_fire(bitserial_potential(...))`` scaled to output values s(t)·w(t), plus the spike count of every
    step (float64, summed over the batch and neurons): the engine's fast path, bit-identical to the two functions.

    The comparison writes 0/1 straight into the output buffer, which is counted, scaled by w(t) in place and
    subtracted from u. ``overwrite=True``: the caller gives up ``currents`` (the engine, for values it owns); they are
    summed into u first, then the outputs are written over them (T' = T steps).
    """
    u = bitserial_potential(currents, v0, clamp)
    w = per_step(step_values, u.dim() + 1)
    out = currents if overwrite and w.shape[0] == currents.shape[0] else empty_steps(w.shape[0], u)
    counts = torch.empty(w.shape[0], dtype=torch.float64, device=u.device)
    per_sample = tuple(range(1, u.dim()))
    for t in range(w.shape[0]):
        counts[t] = fire_into(out[t], u, w[t], per_sample)
    return out, counts


def stepped_if_scan(currents: Tensor, v: Tensor, step_values: Tensor) -> tuple[Tensor, Tensor]:
    """Ordinary IF dynamics whose threshold at step t is w(t) (ablation of the modified neuron).

    m = v + I(t), s = H(m - w(t)), v = m - s·w(t); returns the spikes and the final potential.
    """
    w = per_step(step_values, currents.dim())
    spikes = torch.empty_like(currents)
    v = v.clone()
    for t in range(currents.shape[0]):
        v.add_(currents[t])
        s = spikes[t]
        s.copy_(v >= w[t])
        v.sub_(s * w[t])
    return spikes, v


def quantize_codes(z: Tensor, step: Tensor, v0: Tensor, max_code: int, clamp: Tensor | None = None) -> Tensor:
    """The reference T'-bit QANN code: k = clip(floor(min(z + v0, clamp)/Δ'), 0, max_code) (float tensor).

    Without autograd the same operations run in place on the one new tensor (bit-identical, fewer passes: this is
    the baseline the bit-serial SNN is timed against)."""
    u = z + v0
    others = (step,) if clamp is None else (step, clamp)
    tracked = torch.is_grad_enabled() and any(t.requires_grad for t in (z, v0, *others))
    if tracked or not all(_fits(t, u) for t in others):  # autograd, promotion or broadcasting: out of place
        u = u if clamp is None else torch.minimum(u, clamp)
        return torch.clamp(torch.floor(u / step), 0, max_code)
    if clamp is not None:
        torch.minimum(u, clamp, out=u)
    return u.div_(step).floor_().clamp_(0, max_code)


def _fits(t: Tensor, like: Tensor) -> bool:
    """``t`` combines with ``like`` in place: same dtype, and it broadcasts to ``like``'s shape without growing it."""
    if t.dtype != like.dtype or t.dim() > like.dim():
        return False
    return all(a in (1, b) for a, b in zip(reversed(t.shape), reversed(like.shape), strict=False))


def bit_planes(codes: Tensor, steps: int) -> Tensor:
    """MSB-first bits of integer codes k < 2^steps: [steps, *codes.shape], bit t = floor(k / 2^(steps-t)) mod 2."""
    k = codes.to(torch.int64)
    shifts = torch.arange(steps - 1, -1, -1, device=codes.device).view(-1, *([1] * k.dim()))
    return ((k.unsqueeze(0) >> shifts) & 1).to(codes.dtype)


def codes_from_bits(spikes: Tensor) -> Tensor:
    """k = Σ_t s(t)·2^(T-t) for MSB-first spikes [T, ...] (inverse of ``bit_planes``)."""
    T = spikes.shape[0]
    weights = torch.pow(2.0, torch.arange(T - 1, -1, -1, dtype=spikes.dtype, device=spikes.device))
    return (spikes * weights.view(-1, *([1] * (spikes.dim() - 1)))).sum(0)
