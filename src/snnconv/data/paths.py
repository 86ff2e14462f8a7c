"""Where datasets are looked for: an explicit ``root``, then ``$SNNCONV_DATA``, then system locations."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "SNNCONV_DATA"


def data_home() -> Path | None:
    """``$SNNCONV_DATA`` as a path, or ``None`` when unset/empty."""
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value).expanduser() if value else None


def default_root(subdir: str | None = None) -> Path:
    """Default root for torchvision-style datasets: ``$SNNCONV_DATA[/subdir]``, else ``./data[/subdir]``."""
    base = data_home() or Path("data")
    return base / subdir if subdir else base
