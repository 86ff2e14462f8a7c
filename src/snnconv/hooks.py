"""Temporary forward hooks: record what named modules see during one forward pass, then clean up."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn

Record = Callable[[str, nn.Module, Tensor, Any], None]


@contextmanager
def forward_hooks(model: nn.Module, record: Record, names: Mapping[str, nn.Module] | None = None,
                  *, eval_mode: bool = True) -> Iterator[nn.Module]:  # fmt: skip
    """Call ``record(name, module, input, output)`` on every forward of the modules in ``names``
    (default: all submodules) while the block runs; ``model`` is in eval mode inside (if ``eval_mode``) and gets
    its training flag and hook-free state back afterwards, also on errors."""
    modules = dict(names) if names is not None else dict(model.named_modules())
    handles = [m.register_forward_hook(lambda mod, args, out, k=name: record(k, mod, args[0], out))
               for name, m in modules.items()]  # fmt: skip
    training = model.training
    if eval_mode:
        model.eval()
    try:
        yield model
    finally:
        model.train(training)
        for h in handles:
            h.remove()
