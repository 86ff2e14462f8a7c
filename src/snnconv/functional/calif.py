"""Calcium-gated bipolar LIF (Ca-LIF) dynamics and its rounding phase, as pure functions (seed 003 / SPEC §5).

Units: currents, the threshold θ = S_y/(S_w·S_x) and the bias b' = b/(S_w·S_x) are in units of the layer's
integer input (one input spike of weight w^Q adds w^Q). Per step t = 1..T, with the cap m = ``max_spikes_per_step``::

    V ← V + I(t) − λ,   λ = −b'/T                       (leak)
    V ≥ θ  and y < hi:  n = min(⌊V/θ⌋, hi − y, m) positive spikes,  V −= n·θ, y += n
    V ≤ −θ and y > lo:  n = min(⌊−V/θ⌋, y − lo, m) negative spikes, V += n·θ, y −= n   (calcium gating, lo = 0)

``max_spikes_per_step=1`` (default) is **the seed's neuron** (seed 003 §3.2, Fig. 3; SPEC §5): a positive spike
when V up-crosses θ, a negative one when it down-crosses −θ with y > 0, reset by ∓θ, the rest of V carried over
to the next step. Then at most T (+1 rounding) spikes leave a neuron, so the SNN approaches the QAT model as T
grows (seed 003 Table 3). ``max_spikes_per_step=None`` is snnconv's burst extension (one spike per threshold
crossed in a step, for hardware that allows it): after the rounding phase its final signed count is
``clamp(round(z/θ), lo, hi)`` with z = Σ_t I(t) + b' (the quantized ReLU of Eq. 4 for lo = 0, hi = q_max),
whatever the order in which the input arrived, so the SNN equals the QAT model at every T.

The rounding phase fires at most one more spike after the T steps: +1 if V > θ/2 (y < hi), −1 if V < −θ/2
(y > lo), ties by the half-way rule below. It is folded into step T's output, so the next layer integrates the
rounding spikes of this one with its step-T input before its own rounding (the engine has T steps; in the seed
they arrive after step T, which differs only when they push the next neuron's V across θ in step T).

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


def check_max_spikes(value: int | None, where: str = "calif", error: type[SnnconvError] = SnnconvError) -> int | None:
    """``value`` if it is None (burst) or a positive int, else ``error`` naming the argument and allowed values."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise error(f"{where}: max_spikes_per_step must be a positive integer (1: one spike per step, the "
                           f"seed's neuron) or None (burst), got {value!r}")  # fmt: skip
    return value


def crossings(v: Tensor, theta: Tensor) -> Tensor:
    """max(0, ⌊v/θ⌋): thresholds fully crossed by ``v`` (corrected so that 0 <= v − n·θ < θ when n > 0)."""
    n = torch.floor(v / theta).clamp_min(0)
    n = n + (v - n * theta >= theta).to(v.dtype)  # the division may round across an integer
    return n - ((v - n * theta < 0) & (n > 0)).to(v.dtype)


def calif_fire(
    v: Tensor, y: Tensor, theta: Tensor, lo: float, hi: float, max_spikes: int | None = 1
) -> tuple[Tensor, Tensor, Tensor]:
    """One firing check: (signed spike count n, V − n·θ, y + n), lo <= y <= hi (gating), |n| <= ``max_spikes``."""
    if max_spikes == 1:  # the seed's neuron: the same n as the general path (y, lo, hi integers), fewer passes
        n = ((v >= theta) & (y < hi)).to(v.dtype) - ((v <= -theta) & (y > lo)).to(v.dtype)
        return n, v - n * theta, y + n
    pos = torch.minimum(crossings(v, theta), hi - y)
    neg = torch.minimum(crossings(-v, theta), y - lo)
    if max_spikes is not None:
        pos, neg = pos.clamp_max(max_spikes), neg.clamp_max(max_spikes)
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
    max_spikes_per_step: int | None = 1,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Signed spike counts [T, ...] for currents [T, ...] (the rounding spike is added to the last step).

    ``theta``/``bias`` broadcast over one step; the leak is λ = −bias/T with T = ``currents.shape[0]``.
    ``max_spikes_per_step``: 1 (the seed's neuron) or None (burst; module doc). Returns (counts, (V, y)).
    ``round_last=False`` skips the rounding phase (plain bipolar firing).
    """
    check_max_spikes(max_spikes_per_step, "calif_scan")
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
        out[t], v, y = calif_fire(v + currents[t] + drive, y, theta, lo, hi, max_spikes_per_step)
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
