"""Typed model registry (after torchvision ``models/_api.py`` and timm ``_registry.py``).

Builders have the signature ``(num_classes, in_channels, input_size, act, **kwargs) -> nn.Module`` and are
registered with :func:`register_model`; :func:`create` builds a model by name.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from typing import Any, Protocol

from torch import nn

from snnconv.errors import RegistryError, SnnconvError
from snnconv.layers.act import ActFactory, make_act
from snnconv.limits import MAX_CHANNELS, MAX_CLASSES, MAX_INPUT_SIZE, MAX_WIDTH


class ModelBuilder(Protocol):
    """``builder(num_classes, in_channels, input_size, act, **kwargs) -> nn.Module``."""

    def __call__(
        self, num_classes: int, in_channels: int, input_size: int, act: ActFactory, **kwargs: Any
    ) -> nn.Module: ...


_MODELS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering a builder under ``name``; a duplicate name raises :class:`RegistryError`."""

    def wrap(fn: ModelBuilder) -> ModelBuilder:
        if name in _MODELS:
            raise RegistryError(f"model {name!r} is already registered; choose another name")
        _MODELS[name] = fn
        return fn

    return wrap


def list_models(include: str | None = None, exclude: str | None = None) -> list[str]:
    """Sorted registered names, filtered by the fnmatch patterns ``include`` / ``exclude``."""
    names = sorted(_MODELS)
    if include is not None:
        names = fnmatch.filter(names, include)
    if exclude is not None:
        names = [n for n in names if not fnmatch.fnmatch(n, exclude)]
    return names


def get_builder(name: str) -> ModelBuilder:
    """Builder registered as ``name``; an unknown name raises :class:`RegistryError` listing valid ones."""
    try:
        return _MODELS[name]
    except KeyError:
        raise RegistryError(f"unknown model {name!r}; registered models: {', '.join(list_models())}") from None


def create(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    act: ActFactory | None = None,
    pretrained: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build model ``name``; ``act`` defaults to ``make_act("qcfs", levels=4)``.

    ``pretrained="fashion-mnist"`` returns the reference network shipped for that dataset instead (trained weights,
    eval mode; ``snnconv.models.pretrained``): its architecture is the one it was trained with, so no other
    argument may be given with it.
    """
    if pretrained is not None:
        from snnconv.models.pretrained import load_pretrained

        given = [k for k, v in (("act", act), *kwargs.items()) if v is not None]
        if given:
            raise SnnconvError(f"create({name!r}, pretrained={pretrained!r}) builds the shipped network as it was "
                               f"trained; drop {', '.join(given)}")  # fmt: skip
        return load_pretrained(name, pretrained)[0]
    builder = get_builder(name)
    if act is None:
        act = make_act("qcfs", levels=4)
    return builder(num_classes, in_channels, input_size, act, **kwargs)


# --- helpers shared by the builders ---------------------------------------------------------------------


def scale(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1 (timm-style width multiplier)."""
    if not (math.isfinite(width) and 0 < width <= MAX_WIDTH):
        raise SnnconvError(f"width must be a finite multiplier > 0 and <= {MAX_WIDTH:g} (e.g. 0.25, 1.0), got {width}")
    return max(1, int(round(channels * width)))


def check_input(num_classes: int, in_channels: int, input_size: int) -> None:
    """Reject non-positive sizes early with a readable message."""
    for key, value, most in (
        ("num_classes", num_classes, MAX_CLASSES),
        ("in_channels", in_channels, MAX_CHANNELS),
        ("input_size", input_size, MAX_INPUT_SIZE),
    ):
        if not isinstance(value, int) or value < 1:
            raise SnnconvError(f"{key} must be a positive integer, got {value!r}")
        if value > most:
            raise SnnconvError(f"{key} must be at most {most} (snnconv.limits), got {value}")


def init_weights(model: nn.Module) -> nn.Module:
    """Kaiming-normal (fan_out, ReLU) convolutions with zero bias; BatchNorm weight 1, bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model
