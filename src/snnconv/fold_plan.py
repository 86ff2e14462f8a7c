"""How the layer-by-layer schedule folds time into the batch (issue 8): stages, their chunks, and the fold budget.

``plan_stages`` splits a network's graph into stages of consecutive nodes that fold more steps towards the output,
from every value's bytes per step (measured on step 1 alone the first time a network sees an input shape, then
remembered: ``remember_sizes`` / ``known_sizes``) and a *fold budget* (bytes a folded activation may take).

Which budget is fastest depends on the machine (caches, memory bandwidth, what else runs on it). The CPU default
is 4 MB: it keeps the peak memory of VGG-16 and ResNet-20 at T = 32 below SpikingJelly's single-step mode. On the
reference VM (2 cores, 2026-12-02) 8 MB was 5-15 % faster on ResNet-20 but took VGG-16 to 1350 MB against
SpikingJelly's 1284, while an earlier day's runs there preferred 4 MB for ResNet-20 too; on 2026-12-04 the
budget ``tune_fold_bytes`` picked changed from run to run, the differences being smaller than the noise.
``snnconv.tune_fold_bytes`` times the ``CANDIDATES`` on the caller's own network, input and machine and returns
the fastest, to pass as ``simulate(..., fold_bytes=...)``. Every plan gives bit-identical results (the engine's
invariant, tested), so the budget changes only speed and memory.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch.fx as fx
from torch import nn

#: default fold budget on CPU / on GPUs, which want large batches; layers with larger weights may fold up to their
#: weight size (see ``plan_stages``)
FOLD_BYTES = 4 * 2**20
FOLD_BYTES_GPU = 256 * 2**20
#: the budgets ``snnconv.tune_fold_bytes`` tries by default, and how many timed calls each gets
CANDIDATES = (2 * 2**20, 4 * 2**20, 8 * 2**20, 16 * 2**20)
SAMPLES = 2


@dataclass(frozen=True)
class Stage:
    """Consecutive graph nodes run together on chunks of ``chunk`` steps; ``live_out``: values later stages read."""

    nodes: list[fx.Node]
    chunk: int
    live_out: frozenset[str]


def signature(stages: list[Stage]) -> tuple[tuple[int, int], ...]:
    """What makes two plans do the same work: each stage's length and chunk."""
    return tuple((len(s.nodes), s.chunk) for s in stages)


def distinct_budgets(program: Any, sizes: dict[fx.Node, int], budgets: tuple[int, ...], steps: int) -> list[int]:
    """The budgets whose plans differ pairwise, smallest first (a larger budget with a smaller one's plan does the
    same work with more memory)."""
    seen: dict[tuple, int] = {}
    for budget in sorted(budgets):
        seen.setdefault(signature(plan_stages(program, sizes, budget, steps)), budget)
    return list(seen.values())


#: per network: input key -> (the program's fingerprint, bytes per step by node name)
_KNOWN: weakref.WeakKeyDictionary[nn.Module, dict[tuple, tuple]] = weakref.WeakKeyDictionary()


def known_sizes(net: nn.Module, program: Any, key: tuple) -> dict[fx.Node, int] | None:
    """The sizes an earlier call measured for this input ``key``, if the graph and its modules are still the ones
    they were measured on (``program.fingerprint``: same nodes, arguments and module objects); else None."""
    known = _KNOWN.get(net, {}).get(key)
    if known is None or known[0] != program.fingerprint:
        return None
    by_name = known[1]
    return {n: by_name[n.name] for n in program.nodes if n.name in by_name}


def remember_sizes(net: nn.Module, program: Any, key: tuple, sizes: dict[fx.Node, int]) -> None:
    """Keep the sizes measured on step 1 for later calls with the same input ``key``."""
    _KNOWN.setdefault(net, {})[key] = (program.fingerprint, {n.name: b for n, b in sizes.items()})


def weight_bytes(modules: dict[str, nn.Module], node: fx.Node) -> int:
    """Bytes of a conv/linear layer's own parameters (0 for other nodes)."""
    mod = modules.get(node.target) if node.op == "call_module" else None
    if not isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)):
        return 0
    return sum(p.numel() * p.element_size() for p in mod.parameters(recurse=False))


def plan_stages(program: Any, sizes: dict[fx.Node, int], fold_bytes: int, steps: int) -> list[Stage]:
    """Split the graph into stages of consecutive nodes, each run on chunks of as many steps as its nodes allow
    (at most ``steps``); chunks grow from stage to stage. A stage runs as soon as the previous one has delivered
    at least its chunk (so it may fold up to one previous chunk more) and once more on what is left at the end.

    A convolution may fold as many steps as keep its (input or output) activation within max(``fold_bytes``,
    its weight bytes): early CNN layers (large activations, small weights) fold few steps (VGG-16's 8 MB first
    activations: one at a time, as the ANN runs them), while late layers (small activations, large weights:
    VGG's 512-channel convs) read their weights once per chunk instead of once per step. Other nodes (linear
    layers, neurons, pooling, additions) may fold up to the largest weight of the network (memory the model
    already takes). Every node's chunk is bounded by
    the chunks of all later nodes (so stages grow along the graph). Values that cross a stage boundary are
    buffered until the next stage has a full chunk; a boundary is only placed where those values are
    time-dependent tensors whose buffered size fits the same budget.
    """
    nodes = program.nodes
    weights = [weight_bytes(program.modules, n) for n in nodes]
    cap = max([fold_bytes, *weights])
    need = []
    for n, w in zip(nodes, weights, strict=True):
        b = max([sizes.get(n, 0)] + [sizes.get(a, 0) for a in n.all_input_nodes if a not in program.static])
        conv = n.op == "call_module" and isinstance(program.modules.get(n.target), nn.modules.conv._ConvNd)
        budget = max(fold_bytes, w) if conv else cap
        need.append(max(1, min(steps, budget // b)) if b > 0 else steps)
    for i in range(len(nodes) - 2, -1, -1):  # a node's chunk must fit every later node (suffix minimum)
        need[i] = min(need[i], need[i + 1])
    index = {n: i for i, n in enumerate(nodes)}
    last_use = {n: max((index[u] for u in n.users), default=-1) for n in nodes}
    bounds, chunks = [0], [need[0]]
    for i in range(1, len(nodes)):
        chunk = need[i]
        if chunk <= chunks[-1]:
            continue
        crossing = [n for n in nodes[bounds[-1] : i] if last_use[n] >= i and n not in program.static]
        crossing += [n for n in nodes[: bounds[-1]] if last_use[n] >= i and n not in program.static]
        if any(sizes.get(n, -1) < 0 for n in crossing) or sum(sizes[n] for n in crossing) * chunk > cap:
            continue
        bounds.append(i)
        chunks.append(chunk)
    bounds.append(len(nodes))
    stages = []
    for k, chunk in enumerate(chunks):
        end = bounds[k + 1]
        live = frozenset(n.name for n in nodes[:end] if last_use[n] >= end and n not in program.static)
        stages.append(Stage(nodes[bounds[k] : end], chunk, live))
    return stages
