"""Calcium-gated bipolar LIF (Ca-LIF) dynamics and its rounding phase, as pure functions (seed 003 / SPEC §5).

Units: currents, the threshold θ = S_y/(S_w·S_x) and the bias b' = b/(S_w·S_x) are in units of the layer's
integer input (one input spike of weight w^Q adds w^Q). Per step t = 1..T::

    V ← V + I(t) − λ,   λ = −b'/T                       (leak)
    V ≥ θ  and y < hi:  n = min(⌊V/θ⌋, hi − y) positive spikes,  V −= n·θ, y += n
    V ≤ −θ and y > lo:  n = min(⌊−V/θ⌋, y − lo) negative spikes, V += n·θ, y −= n   (calcium gating, lo = 0)

A step may fire several spikes (one per threshold crossed, as the event-driven neuron does for several input
events in one step); the step's output is the signed spike count. After T steps the rounding phase fires at
most one spike so that the final signed count is ``clamp(round(z/θ), lo, hi)`` with z = Σ_t I(t) + b' (the
quantized ReLU of Eq. 4 for lo = 0, hi = q_max), whatever the order in which the input arrived.

Half-way rule: ``"half_even"`` (default) matches ``torch.fake_quantize_per_tensor_affine`` (``nearbyint``,
round half to even): at V = +θ/2 a rounding spike fires iff y is odd, at V = −θ/2 likewise. ``"half_up"``
rounds z/θ = k + 1/2 up to k + 1 (fire at V ≥ θ/2, V < −θ/2).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from snnconv.errors import SnnconvError

Rounding = Literal["half_even", "half_up"]
ROUNDINGS: tuple[str, ...] = ("half_even", "half_up")


def crossings(v: Tensor, theta: Tensor) -> Tensor:
    """max(0, ⌊v/θ⌋): thresholds fully crossed by ``v`` (corrected so that 0 <= v − n·θ < θ when n > 0)."""
    n = torch.floor(v / theta).clamp_min(0)
    n = n + (v - n * theta >= theta).to(v.dtype)  # the division may round across an integer
    return n - ((v - n * theta < 0) & (n > 0)).to(v.dtype)


def calif_fire(v: Tensor, y: Tensor, theta: Tensor, lo: float, hi: float) -> tuple[Tensor, Tensor, Tensor]:
    """One firing check: (signed spike count n, V − n·θ, y + n) with the bounds lo <= y <= hi (gating)."""
    pos = torch.minimum(crossings(v, theta), hi - y)
    neg = torch.minimum(crossings(-v, theta), y - lo)
    n = pos.clamp_min(0) - neg.clamp_min(0)
    return n, v - n * theta, y + n


def calif_round(v: Tensor, y: Tensor, theta: Tensor, lo: float, hi: float, rounding: Rounding = "half_even") -> Tensor:
    """Rounding spike (−1, 0 or +1) after the T steps: fire if |V| passes θ/2 (ties by ``rounding``)."""
    half = theta / 2
    if rounding == "half_even":
        odd = torch.remainder(y, 2) == 1
        up = (v > half) | ((v == half) & odd)
        down = (v < -half) | ((v == -half) & odd)
    elif rounding == "half_up":
        up, down = v >= half, v < -half
    else:
        raise SnnconvError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    return (up & (y < hi)).to(v.dtype) - (down & (y > lo)).to(v.dtype)


def calif_scan(
    currents: Tensor,
    theta: Tensor | float,
    bias: Tensor | float = 0.0,
    lo: float = 0.0,
    hi: float = math.inf,
    rounding: Rounding = "half_even",
    state: tuple[Tensor, Tensor] | None = None,
    round_last: bool = True,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Signed spike counts [T, ...] for currents [T, ...] (the rounding spike is added to the last step).

    ``theta``/``bias`` broadcast over one step; the leak is λ = −bias/T with T = ``currents.shape[0]``.
    Returns (counts, (V, y)). ``round_last=False`` skips the rounding phase (plain bipolar firing).
    """
    T = currents.shape[0]
    theta = torch.as_tensor(theta, dtype=currents.dtype, device=currents.device)
    drive = torch.as_tensor(bias, dtype=currents.dtype, device=currents.device) / T  # = −λ
    if state is None:
        v = torch.zeros_like(currents[0])
        y = torch.zeros_like(currents[0])
    else:
        v, y = state
    out = torch.empty_like(currents)
    for t in range(T):
        out[t], v, y = calif_fire(v + currents[t] + drive, y, theta, lo, hi)
    if round_last and T > 0:
        r = calif_round(v, y, theta, lo, hi, rounding)
        out[-1] += r
        v, y = v - r * theta, y + r
    return out, (v, y)


def calif_reference(
    z: Tensor, theta: Tensor | float, lo: float = 0.0, hi: float = math.inf, rounding: Rounding = "half_even"
) -> Tensor:
    """What the Ca-LIF count must equal: clamp(round(z/θ), lo, hi) (torch.round is half to even)."""
    q = z / theta
    r = torch.round(q) if rounding == "half_even" else torch.floor(q + 0.5)
    return r.clamp(lo, hi)
