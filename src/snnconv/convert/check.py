"""Validation pass: every operation of a model to convert must be a per-sample affine map or a QCFS.

Anything else (max pooling, a non-QCFS activation, batch-statistics BN, unknown ops) is rejected with a
``ConversionError`` that names the layer and the fix, instead of producing a silently wrong SNN. Methods that
know how to run non-linear analog sub-networks (``snnconv.layers.Analog``: LayerNorm, attention) on decoded
values pass ``analog=True``; the others reject them. Axis permutations and means are affine only if they leave
the batch axis 0 alone (the simulator folds time into it): they need explicit non-negative axes other than 0.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from snnconv.errors import ConversionError
from snnconv.layers.add import Add
from snnconv.layers.analog import Analog, AnalogStage
from snnconv.layers.embedding import PositionEmbedding

AFFINE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, Add,
    PositionEmbedding,
)  # fmt: skip
MAXPOOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                   nn.AdaptiveMaxPool3d)  # fmt: skip
ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.GELU, nn.SiLU, nn.ELU, nn.SELU, nn.CELU,
                      nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Mish, nn.Softplus)  # fmt: skip

AFFINE_FUNCTIONS = {
    operator.add, torch.add, torch.flatten, torch.reshape, torch.cat, torch.concat,
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.dropout, F.linear, F.conv1d, F.conv2d, F.conv3d, getattr, operator.getitem,
}  # fmt: skip
MAXPOOL_FUNCTIONS = {F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
                     F.adaptive_max_pool3d, torch.max_pool1d, torch.max_pool2d, torch.max_pool3d}  # fmt: skip
ACTIVATION_FUNCTIONS = {F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.gelu, F.silu, F.elu,
                        F.hardswish, torch.sigmoid, torch.tanh, F.sigmoid, F.tanh, F.mish, F.softplus}  # fmt: skip
AFFINE_METHODS = {
    "view",
    "reshape",
    "flatten",
    "size",
    "contiguous",
    "add",
    "add_",
    "__add__",
    "dim",
    "unsqueeze",
}
#: affine when no axis argument is 0 or negative (the batch axis stays in place)
AXIS_METHODS = {"transpose", "permute", "mean"}
ACTIVATION_METHODS = {"relu", "relu_", "sigmoid", "tanh", "clamp", "clamp_min", "max", "min"}

FIX_MAXPOOL = (
    "train with average pooling (nn.AvgPool2d) instead; max pooling has no spiking equivalent here "
    "(snnconv.prepare(model) swaps it for average pooling; fine-tune afterwards)"
)
FIX_ACT = "train with QCFS activations (snnconv.QCFS) or use a ReLU conversion method"
FIX_ANALOG = (
    "wrap non-linear analog parts (LayerNorm, attention) in snnconv.layers.Analog and convert with 'if' or 'bitserial'"
)


def _where(node: fx.Node, what: str) -> str:
    return f"layer '{node.target}' ({what})" if node.op == "call_module" else f"operation '{node.name}' ({what})"


def _axes(node: fx.Node) -> list:
    """The axis arguments of a transpose/permute/mean call (``dim=`` included)."""
    args = list(node.args[1:])
    if node.target == "mean":
        args = args[:1] + [node.kwargs["dim"]] if "dim" in node.kwargs else args[:1]
    flat = []
    for a in args:
        flat.extend(a if isinstance(a, (tuple, list)) else [a])
    return flat


def _keeps_batch_axis(node: fx.Node) -> bool:
    axes = _axes(node)
    if node.target == "permute":
        return bool(axes) and axes[0] == 0 and all(isinstance(a, int) and a >= 0 for a in axes)
    return bool(axes) and all(isinstance(a, int) and not isinstance(a, bool) and a > 0 for a in axes)


def check_convertible(gm: fx.GraphModule, neuron_types: tuple[type[nn.Module], ...], *, analog: bool = False) -> None:
    """Raise ``ConversionError`` at the first node that the method cannot convert exactly.

    ``neuron_types`` are the activation modules this method turns into spiking neurons (e.g. QCFS); ``analog``:
    whether the method runs ``Analog`` sub-networks (on decoded values, ``snnconv.layers.analog``).
    """
    for node in gm.graph.nodes:
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            kind = type(mod).__name__
            if isinstance(mod, neuron_types):
                continue
            if isinstance(mod, (Analog, AnalogStage)):
                if not analog:
                    raise ConversionError(
                        f"{_where(node, kind)} is an analog (non-spiking) sub-network, which this conversion method "
                        "does not support; use method 'if' or 'bitserial'"
                    )
                continue
            if isinstance(mod, MAXPOOL_MODULES):
                raise ConversionError(f"{_where(node, kind)} cannot be converted: {FIX_MAXPOOL}")
            if isinstance(mod, ACTIVATION_MODULES):
                raise ConversionError(f"{_where(node, kind)} is not a QCFS activation: {FIX_ACT}")
            if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.running_mean is None:
                raise ConversionError(
                    f"{_where(node, kind)} uses batch statistics (track_running_stats=False), which is not a "
                    "per-sample affine map; retrain with track_running_stats=True"
                )
            if not isinstance(mod, AFFINE_MODULES):
                raise ConversionError(
                    f"{_where(node, kind)} is not supported by this conversion method; supported layers are "
                    "conv/linear, BatchNorm, average pooling, flatten, dropout, snnconv.Add and QCFS; " + FIX_ANALOG
                )
        elif node.op == "call_function":
            fn = node.target
            name = getattr(fn, "__name__", str(fn))
            if fn in MAXPOOL_FUNCTIONS:
                raise ConversionError(f"{_where(node, name)} cannot be converted: {FIX_MAXPOOL}")
            if fn in ACTIVATION_FUNCTIONS:
                raise ConversionError(f"{_where(node, name)} is a functional activation: {FIX_ACT}")
            if fn not in AFFINE_FUNCTIONS:
                raise ConversionError(
                    f"{_where(node, name)} is not a per-sample affine operation and cannot be converted; "
                    "express it with supported layers, or " + FIX_ANALOG
                )
        elif node.op == "call_method":
            if node.target in ACTIVATION_METHODS:
                raise ConversionError(f"{_where(node, '.' + node.target + '()')} is an activation: {FIX_ACT}")
            if node.target in AXIS_METHODS:
                if not _keeps_batch_axis(node):
                    raise ConversionError(
                        f"{_where(node, '.' + node.target + '()')} must name its axes explicitly as non-negative "
                        "integers and leave the batch axis 0 in place (e.g. x.transpose(1, 2), x.mean(dim=1))"
                    )
                continue
            if node.target not in AFFINE_METHODS:
                raise ConversionError(
                    f"{_where(node, '.' + node.target + '()')} is not supported in a model to convert"
                )
