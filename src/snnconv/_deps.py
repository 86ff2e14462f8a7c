"""What snnconv needs from its environment: a supported torch, and the optional packages ("extras") of some features.

Importing it (``snnconv/__init__.py`` does so first) checks the torch version: an older torch than
:data:`TORCH_MIN` fails at ``import snnconv`` with a message naming both versions.

The core (conversion, simulation, models, analysis numbers) needs torch and numpy only. Everything else is imported
where a feature needs it, through :func:`require`, which turns a missing package into one line that names the extra
to install (``pip install "snnconv[plots]"``). Progress bars are cosmetic: without tqdm, :func:`tqdm` draws none.
"""

from __future__ import annotations

import importlib
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

from snnconv.errors import SnnconvError

__all__ = ["TORCH_MAX_MAJOR", "TORCH_MIN", "MissingExtraError", "check_torch", "require", "require_cli", "tqdm"]

#: The oldest torch snnconv is tested with (pyproject.toml: ``torch>=2.13,<3``; CI runs the core tests on 2.13.0).
TORCH_MIN = (2, 13)
#: The first torch major snnconv is not tested with.
TORCH_MAX_MAJOR = 3

#: import name -> (distribution name, extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "torchvision": ("torchvision", "data"),
    "sklearn": ("scikit-learn", "digits"),
    "tqdm": ("tqdm", "train"),
    "matplotlib": ("matplotlib", "plots"),
    "nir": ("nir", "nir"),
    "h5py": ("h5py", "nir"),
}


class MissingExtraError(ImportError, SnnconvError):
    """A feature needs an optional package that is not installed; the message names the extra that installs it."""


def check_torch(version: str | None = None) -> None:
    """Raise ImportError if torch is older than :data:`TORCH_MIN`; warn once if it is a newer, untested major."""
    if version is None:
        import torch

        version = str(torch.__version__)
    m = re.match(r"(\d+)\.(\d+)", version)
    if m is None:  # a build that does not say its version: nothing to check
        return
    found = (int(m.group(1)), int(m.group(2)))
    required = f"torch>={TORCH_MIN[0]}.{TORCH_MIN[1]},<{TORCH_MAX_MAJOR}"
    if found < TORCH_MIN:
        raise ImportError(
            f"snnconv needs {required}, but torch {version} is installed; "
            f'upgrade it (pip install "{required}") or use an older snnconv'
        )
    if found[0] >= TORCH_MAX_MAJOR:
        warnings.warn(f"snnconv is tested with {required}; torch {version} is untested", RuntimeWarning, stacklevel=3)


def require(module: str, feature: str, extra: str | None = None) -> ModuleType:
    """``import module``, or raise :class:`MissingExtraError` naming the extra when it (or its top package) is
    missing. ``feature`` says what needs it (``"snnconv.analysis.plots"``); ``extra`` defaults to the package's."""
    top = module.partition(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing != top and missing not in EXTRAS:
            raise  # something else is missing (a broken install of the package itself): the real error
        dist, default_extra = EXTRAS.get(missing, (missing, None))
        extra = extra or default_extra
        fix = f'pip install "snnconv[{extra}]"' if extra else f"pip install {dist}"
        raise MissingExtraError(f"{feature} needs {dist}, which is not installed: {fix}", name=missing) from exc


def require_cli() -> None:
    """The command line needs ``snnconv[train]`` (datasets, plots, progress bars): where a package of it is missing,
    print one line naming the extra and exit with status 2, as for any other bad input."""
    for module in ("torchvision", "matplotlib", "tqdm"):
        try:
            require(module, "the snnconv command line", "train")
        except MissingExtraError as exc:
            print(f"snnconv: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None


check_torch()  # at import: snnconv/__init__.py imports this module before anything that needs torch


class _NoBar:
    """What :func:`tqdm` returns without tqdm: iterates, ignores the bar's calls."""

    disable = True

    def __init__(self, iterable: Iterable) -> None:
        self._iterable = iterable

    def __iter__(self) -> Iterator:
        return iter(self._iterable)

    def __len__(self) -> int:
        return len(self._iterable)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:  # set_postfix, update, close, ...
        return lambda *args, **kwargs: None


def tqdm(iterable: Iterable, **kwargs: Any) -> Any:
    """``tqdm.auto.tqdm(iterable, **kwargs)``, or the plain iterable (no bar) where tqdm is not installed."""
    try:
        from tqdm.auto import tqdm as bar
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "tqdm":
            raise
        return _NoBar(iterable)
    return bar(iterable, **kwargs)
