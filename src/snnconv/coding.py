"""Input coding: pixels or integer codes → [T, B, ...] spike trains (seed 003 §4.1 / SPEC §5).

* ISI (inter-spike interval) coding of a pixel p ∈ [0, 255]: N = ⌊α·T·p/255⌋ spikes, the n-th (n = 1..N) at
  time step t_n = ⌊n·255/(α·p)⌋ (1-based). For 0 < α <= 1 the interval 255/(α·p) >= 1, so the times are
  distinct and t_N <= T: no collisions and nothing out of range. α > 1 is rejected.
* Rate coding: a spike with probability x ∈ [0, 1] at every step (Bernoulli, seeded generator).
* Direct coding: the analog value at every step.
* Code trains (``spread_codes``): an integer code k as |k| spikes of sign sign(k) placed ``"even"``ly,
  ``"first"``, ``"last"`` or at ``"random"`` steps (|k| <= T gives at most one spike per step; larger codes
  put ⌊|k|/T⌋ spikes in every step plus the remainder).
``InputEncoder`` wraps them as a ``TimeAware`` layer for ``snnconv.simulate``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from snnconv.errors import SnnconvError
from snnconv.layers.temporal import TimeAware

Coding = Literal["codes", "isi", "rate", "direct"]
Order = Literal["even", "first", "last", "random"]
CODINGS: tuple[str, ...] = ("codes", "isi", "rate", "direct")
ORDERS: tuple[str, ...] = ("even", "first", "last", "random")


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha <= 1:
        raise SnnconvError(f"ISI coding needs 0 < alpha <= 1 (one spike per step at most), got {alpha}")


def isi_counts(pixels: Tensor, T: int, alpha: float = 1.0) -> Tensor:
    """N = ⌊α·T·p/255⌋ for pixel values p ∈ [0, 255] (integer-valued tensor)."""
    _check_alpha(alpha)
    p = pixels.to(torch.float64).clamp(0, 255)
    return torch.floor(alpha * T * p / 255 + 1e-9).to(torch.int64)


def isi_times(pixel: int, T: int, alpha: float = 1.0) -> list[int]:
    """1-based spike times t_n = ⌊n·255/(α·p)⌋, n = 1..N, of one pixel."""
    n = int(isi_counts(torch.tensor(pixel), T, alpha))
    return [int(math.floor(k * 255 / (alpha * pixel) + 1e-9)) for k in range(1, n + 1)]


def isi_encode(pixels: Tensor, T: int, alpha: float = 1.0) -> Tensor:
    """0/1 spike trains [T, *pixels.shape] of ISI coding (float64 times, exact for integer pixels)."""
    counts = isi_counts(pixels, T, alpha)
    p = pixels.to(torch.float64).clamp(0, 255).unsqueeze(0)
    n = torch.arange(1, T + 1, dtype=torch.float64).view(-1, *([1] * pixels.dim()))
    times = torch.floor(n * 255 / (alpha * p.clamp_min(1e-12)) + 1e-9)  # t_n for n = 1..T
    valid = n <= counts.unsqueeze(0)
    out = torch.zeros((T + 1, *pixels.shape), dtype=torch.float64)
    idx = times.clamp(0, T).to(torch.int64)
    out.scatter_add_(0, torch.where(valid, idx, torch.zeros_like(idx)), valid.to(torch.float64))
    return out[1:].to(pixels.dtype if pixels.is_floating_point() else torch.get_default_dtype())


def rate_encode(x: Tensor, T: int, generator: torch.Generator | None = None) -> Tensor:
    """0/1 Bernoulli spike trains [T, ...] with rate x ∈ [0, 1] (clamped)."""
    p = x.clamp(0, 1).unsqueeze(0).expand(T, *x.shape)
    return torch.bernoulli(p.contiguous(), generator=generator)


def direct_encode(x: Tensor, T: int) -> Tensor:
    """The analog input at every step, [T, ...]."""
    return x.unsqueeze(0).expand(T, *x.shape)


def spread_codes(codes: Tensor, T: int, order: Order = "even", generator: torch.Generator | None = None) -> Tensor:
    """Signed spike counts [T, ...] summing over time to the integer ``codes`` (see module docstring)."""
    if order not in ORDERS:
        raise SnnconvError(f"order must be one of {ORDERS}, got {order!r}")
    k = codes.abs().to(torch.int64)
    base, rem = k // T, k % T
    t = torch.arange(1, T + 1, device=codes.device).view(-1, *([1] * codes.dim()))
    if order == "even":
        extra = (t * rem) // T - ((t - 1) * rem) // T
    elif order == "first":
        extra = t <= rem
    elif order == "last":
        extra = t > T - rem
    else:
        keys = torch.rand((T, *codes.shape), generator=generator).to(codes.device)
        rank = keys.argsort(0).argsort(0)  # a random permutation of the steps per element
        extra = rank < rem
    counts = base.unsqueeze(0) + extra.to(torch.int64)
    return (counts * torch.sign(codes).to(torch.int64)).to(codes.dtype if codes.is_floating_point() else torch.float)


class InputEncoder(TimeAware):
    """First layer of an exported Ca-LIF network: analog x → per-step input in units of the input code.

    ``"codes"``: k = clamp(round(x/S), q_min, q_max) (the QANN's input quantizer) as integer spike trains
    (``order``); ``"isi"``/``"rate"``: x ∈ [0, 1] as pixel p = round(255·x) / rate x, each spike worth
    1/(α·T·S) / 1/(T·S) codes; ``"direct"``: x/(T·S) at every step (so Σ_t = x/S).
    """

    def __init__(
        self,
        scale: float,
        qmin: float,
        qmax: float,
        coding: Coding = "codes",
        order: Order = "even",
        alpha: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if coding not in CODINGS:
            raise SnnconvError(f"coding must be one of {CODINGS}, got {coding!r}")
        if coding == "isi":
            _check_alpha(alpha)
        self.scale, self.qmin, self.qmax = float(scale), float(qmin), float(qmax)
        self.coding, self.order, self.alpha, self.seed = coding, order, float(alpha), int(seed)

    def codes(self, x: Tensor) -> Tensor:
        """The QANN's input codes (torch's fake quantization rounds x·(1/S) half to even)."""
        inv = torch.tensor(1.0 / self.scale, dtype=torch.float32).to(x.dtype)
        return torch.round(x * inv).clamp(self.qmin, self.qmax)

    def seq(self, x: Tensor, start: int, T: int) -> Tensor:
        x0 = x[0]
        g = torch.Generator().manual_seed(self.seed)
        if self.coding == "codes":
            out = spread_codes(self.codes(x0), T, self.order, g)
        elif self.coding == "isi":
            out = isi_encode(torch.round(x0.clamp(0, 1) * 255), T, self.alpha) / (self.alpha * T * self.scale)
        elif self.coding == "rate":
            out = rate_encode(x0.cpu(), T, g) / (T * self.scale)
        else:
            out = direct_encode(x0, T) / (T * self.scale)
        return out[start : start + x.shape[0]].to(x.dtype).to(x.device)

    def extra_repr(self) -> str:
        return f"coding={self.coding}, scale={self.scale:.4g}, order={self.order}, alpha={self.alpha}"
