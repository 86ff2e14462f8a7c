"""Make an off-the-shelf ReLU network convertible: ``snnconv.prepare(model)`` (issue 9).

Three torch.fx passes over the graph traced by :func:`snnconv.convert.trace` (module names are kept):

* **activations**: every ReLU - ``nn.ReLU`` (in-place or not), ``F.relu``/``torch.relu``/``x.relu()`` and the
  in-place forms ``F.relu(x, inplace=True)``/``relu_`` - and every ReLU6 (``nn.ReLU6``, ``F.relu6``;
  MobileNetV2) becomes a fresh activation module (QCFS by default) **per call site**: a module called at
  several sites (torchvision's ``BasicBlock.relu``) keeps its name at the first site, later sites get
  ``<name>_1``, ``<name>_2``, ...; functional calls get a module named after the enclosing module
  (``layer1.0.relu``). ReLU6 is mapped to QCFS as well: QCFS clips at its threshold λ anyway, so the cap at 6
  is replaced by the trainable cap λ (the network has to be fine-tuned with QCFS in any case).
* **pooling**: ``MaxPool{1,2,3}d`` / ``F.max_pool*`` become average pooling with the same kernel, stride,
  padding and ``ceil_mode`` (adaptive max pooling becomes adaptive average pooling); a ``UserWarning`` names
  each replaced layer, since max and average pooling differ and the model must be fine-tuned.
* **residual additions**: ``a + b``, ``a += b``, ``torch.add(a, b)`` and ``a.add(b)`` of two tensors become
  :class:`snnconv.Add` modules (named ``<enclosing module>.add``), so the conversion passes see them.

In-place semantics are preserved: where the traced code reads the input of an in-place ReLU after the call
(``F.relu_(x); return x``), those later reads are redirected to the new activation's output.

Transformers (seed 001 A.6, issue 11), before tracing (torch's encoder layers have a fused fast path and
data-dependent checks that torch.fx cannot trace), a module-tree pass :func:`replace_transformer_layers`:

* ``nn.TransformerEncoderLayer`` → :class:`snnconv.layers.EncoderBlock` and ``nn.TransformerEncoder`` →
  :class:`snnconv.layers.encoder.EncoderStack` with the same weights (Q/K/V, output projection, FFN, norms,
  ``norm_first``); the FFN's ReLU/GELU (function or module) becomes ``act(dim_feedforward)`` (QCFS by default);
  attention and the LayerNorms become ``Analog`` stages. Supported: ``batch_first=True``, plain self-attention,
  no masks at call time; anything else raises ``ConversionError`` naming the reason.
* every other ``nn.LayerNorm`` becomes ``Analog(LayerNorm)`` (it is not an affine map of spikes).

The code around the encoder must be convertible as usual; axis permutations and means over tokens are fine when
they name non-negative axes other than the batch axis 0 (``x.transpose(1, 2)``, ``x.mean(dim=1)``).
"""

from __future__ import annotations

import copy
import operator
import warnings
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.fx.passes.shape_prop import ShapeProp

from snnconv.convert.trace import set_module, trace
from snnconv.errors import ConversionError
from snnconv.layers.act import ActFactory, make_act
from snnconv.layers.add import Add
from snnconv.layers.analog import Analog
from snnconv.layers.encoder import EncoderBlock, EncoderStack

RELU_MODULES = (nn.ReLU, nn.ReLU6)
RELU_FUNCTIONS = {F.relu, F.relu_, torch.relu, torch.relu_, F.relu6}
INPLACE_RELU_FUNCTIONS = {F.relu_, torch.relu_}
RELU_METHODS = {"relu", "relu_"}
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
ADD_METHODS = {"add", "add_", "__add__", "__iadd__"}
_MAXPOOL = {nn.MaxPool1d: nn.AvgPool1d, nn.MaxPool2d: nn.AvgPool2d, nn.MaxPool3d: nn.AvgPool3d}
_ADAPTIVE_MAXPOOL = {
    nn.AdaptiveMaxPool1d: nn.AdaptiveAvgPool1d,
    nn.AdaptiveMaxPool2d: nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool3d: nn.AdaptiveAvgPool3d,
}
_MAXPOOL_FUNCTIONS = {
    F.max_pool1d: nn.AvgPool1d, F.max_pool2d: nn.AvgPool2d, F.max_pool3d: nn.AvgPool3d,
    torch.max_pool1d: nn.AvgPool1d, torch.max_pool2d: nn.AvgPool2d, torch.max_pool3d: nn.AvgPool3d,
}  # fmt: skip
_ADAPTIVE_MAXPOOL_FUNCTIONS = {
    F.adaptive_max_pool1d: nn.AdaptiveAvgPool1d,
    F.adaptive_max_pool2d: nn.AdaptiveAvgPool2d,
    F.adaptive_max_pool3d: nn.AdaptiveAvgPool3d,
}
#: activation kinds of ``make_act`` whose modules need the channel count
PER_CHANNEL_KINDS = ("csqcfs", "csqcfs-plain")
#: nodes whose value is never a tensor (shapes, sizes, attributes)
_NON_TENSOR_METHODS = {"size", "dim", "numel", "item", "tolist"}


def prepare(
    model: nn.Module,
    act: str | ActFactory = "qcfs",
    levels: int = 4,
    threshold: float = 8.0,
    shift: float = 0.5,
    *,
    example_input: Tensor | None = None,
) -> fx.GraphModule:
    """A traced COPY of ``model`` with QCFS activations, average pooling and ``Add`` modules (module docstring).

    ``act`` is an activation kind of :func:`snnconv.make_act` (``"qcfs"``, ``"csqcfs"``, ...; built with
    ``levels``, ``threshold``, ``shift``) or an ``ActFactory`` ``channels -> nn.Module``. Channel counts are
    taken from the shapes of a forward pass on ``example_input`` when given, else from the conv/linear/BN
    layer feeding each activation. ``model`` itself is not modified; the copy keeps its train/eval mode.
    Data-dependent control flow raises ``snnconv.errors.ConversionError`` (from the tracer).
    """
    if not isinstance(model, nn.Module):
        hint = f", e.g. torchvision.models.{model}(num_classes=10)" if isinstance(model, str) else ""
        raise ConversionError(f"prepare: model must be a torch.nn.Module (the ReLU network), got "
                              f"{type(model).__name__}; build it first{hint}")  # fmt: skip
    factory = make_act(act, levels=levels, threshold=threshold, shift=shift) if isinstance(act, str) else act
    gm = trace(replace_transformer_layers(copy.deepcopy(model), factory))
    gm.train(model.training)
    if example_input is not None:
        was_training = gm.training
        with torch.no_grad():
            ShapeProp(gm.eval()).propagate(example_input)
        gm.train(was_training)
    replace_relus(gm, factory, needs_channels=not isinstance(act, str) or act in PER_CHANNEL_KINDS)
    replace_maxpool(gm)
    replace_adds(gm)
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return gm


# --- helpers ------------------------------------------------------------------------------------------------


def _scope(node: fx.Node) -> str:
    """Qualified name of the module whose forward() made ``node`` ('' at the top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1]
    path = path[0] if isinstance(path, tuple) else path
    return path if isinstance(path, str) else ""


def _fresh_name(gm: fx.GraphModule, base: str) -> str:
    """``base`` or ``base_1``, ``base_2``, ... : a path not yet used in ``gm`` (nor an attribute of its parent)."""
    parent_name, _, leaf = base.rpartition(".")
    try:
        parent = gm.get_submodule(parent_name) if parent_name else gm
    except AttributeError:
        parent = None

    def taken(name: str) -> bool:
        return parent is not None and hasattr(parent, name)

    name, i = leaf, 0
    while taken(name):
        i += 1
        name = f"{leaf}_{i}"
    return f"{parent_name}.{name}" if parent_name else name


def _add_module(gm: fx.GraphModule, base: str, module: nn.Module) -> str:
    name = _fresh_name(gm, base)
    gm.add_submodule(name, module)
    return name


_CHANNEL_ATTRS = ("out_channels", "out_features", "num_features")
_CHANNEL_KEEPING_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity, nn.ReLU, nn.ReLU6,
                            nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                            nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, Add)  # fmt: skip


def _channels(gm: fx.GraphModule, node: fx.Node) -> int:
    """Channel count (dim 1) of the value of ``node``, from shape propagation or the producing layer."""
    seen = 0
    while isinstance(node, fx.Node) and seen < 64:
        seen += 1
        meta = node.meta.get("tensor_meta")
        if meta is not None and hasattr(meta, "shape") and len(meta.shape) >= 2:
            return int(meta.shape[1])
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            for attr in _CHANNEL_ATTRS:
                if isinstance(getattr(mod, attr, None), int):
                    return getattr(mod, attr)
            if not isinstance(mod, _CHANNEL_KEEPING_MODULES) and not hasattr(mod, "levels"):
                break
        elif node.op == "placeholder":
            break
        tensors = [a for a in node.all_input_nodes if a.op != "get_attr"]
        if not tensors:
            break
        node = tensors[0]
    raise ValueError(
        f"prepare: cannot infer the channel count at '{node}'; pass example_input=<a batch> so that shapes are "
        "propagated"
    )


def _redirect_inplace(gm: fx.GraphModule, old_input: Any, new: fx.Node) -> None:
    """After an in-place op on ``old_input`` (now computed out of place into ``new``), later reads see ``new``."""
    if not isinstance(old_input, fx.Node):
        return
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    for user in list(old_input.users):
        if user is not new and order[user] > order[new]:
            user.replace_input_with(old_input, new)


# --- passes ---------------------------------------------------------------------------------------------------


def replace_transformer_layers(model: nn.Module, factory: ActFactory) -> nn.Module:
    """Pass over the module tree (in place; returns the model, which may itself be replaced): torch encoder
    layers/stacks → ``EncoderBlock``/``EncoderStack`` with ``factory`` FFN activations; other LayerNorms →
    ``Analog(LayerNorm)`` (module docstring)."""

    def swap(mod: nn.Module) -> nn.Module | None:
        if type(mod) is nn.TransformerEncoder:
            return EncoderStack.from_torch(mod, factory)
        if type(mod) is nn.TransformerEncoderLayer:
            return EncoderBlock.from_torch(mod, factory)
        if isinstance(mod, nn.LayerNorm):
            return Analog(mod)
        return None

    def visit(parent: nn.Module) -> None:
        if isinstance(parent, Analog):
            return
        for name, child in list(parent.named_children()):
            new = swap(child)
            if new is not None:
                setattr(parent, name, new)
            else:
                visit(child)

    top = swap(model)
    if top is not None:
        return top
    visit(model)
    return model


def replace_relus(gm: fx.GraphModule, factory: ActFactory, *, needs_channels: bool = True) -> int:
    """Pass: every ReLU/ReLU6 call site (module, function, method) → a fresh ``factory(channels)`` module.

    With ``needs_channels=False`` the factory is called with 0 instead of the inferred channel count.
    """
    count, used_targets = 0, set()

    def channels(value: Any) -> int:
        return _channels(gm, value) if needs_channels else 0

    relu_sites = {  # call site -> whether the ReLU module is in place (read before any replacement)
        n: bool(getattr(gm.get_submodule(n.target), "inplace", False))
        for n in gm.graph.nodes
        if n.op == "call_module" and isinstance(gm.get_submodule(n.target), RELU_MODULES)
    }
    for node in list(gm.graph.nodes):
        inplace = False
        if node in relu_sites:
            inplace = relu_sites[node]
            new = factory(channels(node.args[0]))
            if node.target not in used_targets:
                set_module(gm, node.target, new)
                used_targets.add(node.target)
            else:  # a second call site of a shared ReLU: a module of its own
                node.target = _add_module(gm, node.target, new)
                used_targets.add(node.target)
        elif (node.op == "call_function" and node.target in RELU_FUNCTIONS) or (
            node.op == "call_method" and node.target in RELU_METHODS
        ):
            inplace = (
                node.target in INPLACE_RELU_FUNCTIONS or node.target == "relu_" or bool(node.kwargs.get("inplace"))
            )
            if node.op == "call_function" and len(node.args) > 1:
                inplace = inplace or bool(node.args[1])
            scope = _scope(node)
            base = f"{scope}.relu" if scope else "relu"
            target = _add_module(gm, base, factory(channels(node.args[0])))
            used_targets.add(target)
            with gm.graph.inserting_after(node):
                new_node = gm.graph.call_module(target, (node.args[0],))
            new_node.meta = dict(node.meta)
            node.replace_all_uses_with(new_node)
            gm.graph.erase_node(node)
            node = new_node
        else:
            continue
        if inplace:
            _redirect_inplace(gm, node.args[0], node)
        count += 1
    gm.recompile()
    return count


def _pool_args(node: fx.Node) -> dict[str, Any]:
    names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    values = dict(zip(names, node.args, strict=False))
    values.update(node.kwargs)
    return values


def replace_maxpool(gm: fx.GraphModule) -> int:
    """Pass: max pooling → average pooling with the same kernel/stride/padding; warns naming each layer."""
    count = 0
    for node in list(gm.graph.nodes):
        if node.op == "call_module":
            old = gm.get_submodule(node.target)
            if type(old) in _MAXPOOL:
                _check_pool(node.target, old.dilation, old.return_indices)
                new = _MAXPOOL[type(old)](old.kernel_size, old.stride, old.padding, ceil_mode=old.ceil_mode)
            elif type(old) in _ADAPTIVE_MAXPOOL:
                _check_pool(node.target, 1, old.return_indices)
                new = _ADAPTIVE_MAXPOOL[type(old)](old.output_size)
            else:
                continue
            set_module(gm, node.target, new)
            name = node.target
        elif node.op == "call_function" and (
            node.target in _MAXPOOL_FUNCTIONS or node.target in _ADAPTIVE_MAXPOOL_FUNCTIONS
        ):
            if node.target in _MAXPOOL_FUNCTIONS:
                a = _pool_args(node)
                _check_pool(node.name, a.get("dilation", 1), a.get("return_indices", False))
                stride = a.get("stride") or a["kernel_size"]
                new = _MAXPOOL_FUNCTIONS[node.target](
                    a["kernel_size"], stride, a.get("padding", 0), ceil_mode=a.get("ceil_mode", False)
                )
            else:
                a = dict(zip(("input", "output_size", "return_indices"), node.args, strict=False)) | dict(node.kwargs)
                _check_pool(node.name, 1, a.get("return_indices", False))
                new = _ADAPTIVE_MAXPOOL_FUNCTIONS[node.target](a["output_size"])
            scope = _scope(node)
            name = _add_module(gm, f"{scope}.{node.name}" if scope else node.name, new)
            with gm.graph.inserting_after(node):
                new_node = gm.graph.call_module(name, (a["input"],))
            new_node.meta = dict(node.meta)
            node.replace_all_uses_with(new_node)
            gm.graph.erase_node(node)
        else:
            continue
        warnings.warn(
            f"prepare: max pooling '{name}' replaced by {type(new).__name__} (same kernel/stride/padding); "
            "fine-tune the model, max and average pooling differ",
            UserWarning,
            stacklevel=3,
        )
        count += 1
    gm.recompile()
    return count


def _check_pool(name: str, dilation: Any, return_indices: bool) -> None:
    if return_indices:
        raise ConversionError(f"prepare: max pooling '{name}' returns indices; it has no average-pooling equivalent")
    if any(d != 1 for d in (dilation if isinstance(dilation, (tuple, list)) else (dilation,))):
        raise ConversionError(f"prepare: max pooling '{name}' is dilated; average pooling has no dilation")


def _is_tensor(gm: fx.GraphModule, node: Any, cache: dict[fx.Node, bool]) -> bool:
    """Whether ``node`` produces a tensor (shape propagation if available, else a structural guess)."""
    if not isinstance(node, fx.Node):
        return False
    if node in cache:
        return cache[node]
    if "tensor_meta" in node.meta:
        result = hasattr(node.meta["tensor_meta"], "shape")
    elif node.op in ("placeholder", "call_module"):
        result = True
    elif node.op == "get_attr":
        result = isinstance(getattr(gm, node.target, None), Tensor)
    elif node.op == "call_method":
        result = node.target not in _NON_TENSOR_METHODS and _is_tensor(gm, node.args[0], cache)
    elif node.op == "call_function":
        if node.target is getattr:
            result = False
        elif node.target in ADD_FUNCTIONS or node.target is operator.getitem:
            result = any(_is_tensor(gm, a, cache) for a in node.args[:2])
        else:
            result = any(_is_tensor(gm, a, cache) for a in node.all_input_nodes)
    else:
        result = False
    cache[node] = result
    return result


def replace_adds(gm: fx.GraphModule) -> int:
    """Pass: additions of two tensors (``+``, ``+=``, ``torch.add``, ``.add``) → :class:`snnconv.Add` modules."""
    count, cache = 0, {}
    for node in list(gm.graph.nodes):
        is_add = (node.op == "call_function" and node.target in ADD_FUNCTIONS) or (
            node.op == "call_method" and node.target in ADD_METHODS
        )
        if not is_add or len(node.args) != 2 or set(node.kwargs) - {"out"} or node.kwargs.get("out") is not None:
            continue
        a, b = node.args
        if not (_is_tensor(gm, a, cache) and _is_tensor(gm, b, cache)):
            continue
        scope = _scope(node)
        name = _add_module(gm, f"{scope}.add" if scope else "add", Add())
        with gm.graph.inserting_after(node):
            new_node = gm.graph.call_module(name, (a, b))
        new_node.meta = dict(node.meta)
        node.replace_all_uses_with(new_node)
        gm.graph.erase_node(node)
        if node.target in (operator.iadd, "add_", "__iadd__"):
            _redirect_inplace(gm, a, new_node)
        cache[new_node] = True
        count += 1
    gm.recompile()
    return count


def modules_by_call_site(gm: fx.GraphModule, kind: type[nn.Module] | tuple[type[nn.Module], ...]) -> list[str]:
    """Targets of the ``call_module`` nodes whose module is a ``kind``, in graph order."""
    return [n.target for n in gm.graph.nodes if n.op == "call_module" and isinstance(gm.get_submodule(n.target), kind)]


__all__: list[str] = [
    "modules_by_call_site", "prepare", "replace_adds", "replace_maxpool", "replace_relus", "replace_transformer_layers",
]  # fmt: skip
