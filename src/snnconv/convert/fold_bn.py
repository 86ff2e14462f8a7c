"""Pass: fold eval-mode BatchNorm into the preceding conv/linear layer.

y = γ (W x + b - μ)/σ + β  =  (γ/σ ⊙ W) x + (γ (b - μ)/σ + β),   σ = sqrt(var + ε).
Only a BN whose input is the output of a conv/linear used by nothing else is folded; other BNs stay (they are
per-sample affine maps in eval mode and the SNN applies them at every step).
"""

from __future__ import annotations

import copy

import torch.fx as fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from snnconv.convert.trace import set_module, trace

_PAIRS = (
    ((nn.Conv1d, nn.Conv2d, nn.Conv3d), (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d), fuse_conv_bn_eval),
    ((nn.Linear,), (nn.BatchNorm1d,), fuse_linear_bn_eval),
)


def fold_bn(model: nn.Module, *, inplace: bool = False) -> fx.GraphModule:
    """Return a traced copy of ``model`` (eval mode) with BatchNorm folded into conv/linear layers."""
    gm = trace(model if inplace else copy.deepcopy(model))
    gm.eval()
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or len(node.args) != 1:
            continue
        prev = node.args[0]
        if not isinstance(prev, fx.Node) or prev.op != "call_module" or len(prev.users) != 1:
            continue
        bn, layer = gm.get_submodule(node.target), gm.get_submodule(prev.target)
        for layer_types, bn_types, fuse in _PAIRS:
            if isinstance(layer, layer_types) and type(bn) in bn_types and bn.running_mean is not None:
                set_module(gm, prev.target, fuse(layer, bn))
                node.replace_all_uses_with(prev)
                gm.graph.erase_node(node)
                gm.delete_submodule(node.target)
                break
    gm.graph.lint()
    gm.recompile()
    return gm
