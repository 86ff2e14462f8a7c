"""Test helpers: randomised (non-trivial) BN statistics and thresholds for converting untrained models."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from torch import nn

from snnconv import QCFS


def randomize(model: nn.Module, seed: int = 0, threshold: float = 1.0) -> nn.Module:
    """Give BN layers random running statistics/affine parameters and QCFS layers a given threshold, in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_((torch.rand(n, generator=g) - 0.5) * 0.4)
            elif isinstance(m, QCFS):
                m.threshold.fill_(threshold)
    return model.eval()


def require_native() -> None:
    """The native kernels must have built (skip only where there is no C++ compiler to build them with)."""
    from snnconv.native import available

    if not (os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")):
        pytest.skip("no C++ compiler: the native kernels cannot be built here")
    assert available(), "the native kernels did not build (see the warning)"
