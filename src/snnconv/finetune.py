"""ReLU → QCFS fine-tuning (seed 001 A.9; SPEC §3): start a QCFS network from a trained ReLU network.

The QCFS model has the same architecture (same registry name, width, dataset), so every weight maps by name;
each QCFS threshold λ is initialised from a percentile of its ReLU layer's activations over a few batches.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from snnconv.errors import ConversionError
from snnconv.hooks import forward_hooks
from snnconv.layers.qcfs import QCFS, inverse_softplus


@torch.no_grad()
def init_qcfs_from_relu(
    qcfs_model: nn.Module, relu_model: nn.Module, loader: Iterable, *, percentile: float = 99.9, batches: int = 4
) -> dict[str, float]:
    """Copy ``relu_model``'s weights into ``qcfs_model`` and set each λ; returns the thresholds by layer."""
    relu_state = relu_model.state_dict()
    own = qcfs_model.state_dict()
    missing = [k for k in own if k not in relu_state and not k.endswith("threshold")]
    if missing:
        raise ConversionError(
            f"init-from: the ReLU run's weights do not match this model (missing {', '.join(missing[:4])}); "
            "use the same --model, --width and --dataset as the ReLU run"
        )
    qcfs_model.load_state_dict({**own, **{k: v for k, v in relu_state.items() if k in own}})
    qcfs_layers = {n: m for n, m in qcfs_model.named_modules() if isinstance(m, QCFS)}
    relu_layers = dict(relu_model.named_modules())
    samples: dict[str, list[torch.Tensor]] = {n: [] for n in qcfs_layers}
    for name in qcfs_layers:
        if name not in relu_layers or not isinstance(relu_layers[name], nn.ReLU):
            raise ConversionError(f"init-from: layer '{name}' of the ReLU run is not a ReLU module")
    record = lambda k, m, i, out: samples[k].append(out.detach().flatten()[:200_000].clone())  # noqa: E731
    with forward_hooks(relu_model, record, {n: relu_layers[n] for n in qcfs_layers}):
        for i, (x, _) in enumerate(loader):
            if i >= batches:
                break
            relu_model(x)
    thresholds = {}
    for name, q in qcfs_layers.items():
        acts = torch.cat(samples[name]).float()
        lam = float(torch.quantile(acts[:1_000_000], percentile / 100.0)) if acts.numel() else 1.0
        lam = max(lam, 1e-3)  # a dead layer still needs a positive threshold
        value = inverse_softplus(lam) if q.positive == "softplus" else torch.tensor(lam)
        q.threshold.fill_(float(value))
        thresholds[name] = lam
    return thresholds
