"""NIR export/import (issue 9): exact round trip, and loading the file with snnTorch's NIR importer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import snnconv
from helpers import randomize
from snnconv.errors import ConversionError
from snnconv.models import create

nir = pytest.importorskip("nir")
from snnconv.nir_io import export_nir, import_nir, to_nir  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest


def _snn(name: str, kind: str = "qcfs", dtype=torch.float32):
    torch.manual_seed(0)
    ann = create(name, in_channels=1, input_size=16, width=0.25, act=snnconv.make_act(kind, levels=4))
    return snnconv.convert(randomize(ann).to(dtype))


@pytest.mark.parametrize("name, kind", [("small_cnn", "qcfs"), ("resnet20", "csqcfs"), ("vgg11", "qcfs")])
def test_round_trip_is_exact(tmp_path, name, kind):
    snn = _snn(name, kind)
    path = tmp_path / "net.nir"
    graph = export_nir(snn, path, (1, 16, 16))
    assert isinstance(graph.nodes["input"], nir.Input) and isinstance(graph.nodes["output"], nir.Output)
    ifs = [n for n in graph.nodes.values() if isinstance(n, nir.IF)]
    assert len(ifs) == len(snn.neurons())
    assert all(n.metadata["reset"] == "subtract" and n.metadata["v_init_fraction"] == 0.5 for n in ifs)
    back = import_nir(path)
    assert list(back.neurons()) == list(snn.neurons())
    x = torch.rand(3, 1, 16, 16)
    a, b = snnconv.simulate(snn, x, 6), snnconv.simulate(back, x, 6)
    assert torch.equal(a.logits, b.logits)
    assert all(torch.equal(a.spike_counts[k], b.spike_counts[k]) for k in a.spike_counts)
    assert graph.metadata["snnconv_method"] == "if"


def test_residual_adds_are_summed_edges(tmp_path):
    graph = to_nir(_snn("resnet20"), (1, 16, 16))
    adds = [k for k, n in graph.nodes.items() if n.metadata.get("snnconv_kind") == "Add"]
    assert adds and all(sum(b == k for _, b in graph.edges) == 2 for k in adds)
    assert all(isinstance(graph.nodes[k], nir.Scale) and np.all(graph.nodes[k].scale == 1) for k in adds)


def test_unsupported_layers_are_rejected():
    snn = snnconv.convert(nn.Sequential(nn.Linear(4, 4), snnconv.QCFS(4, 1.0), nn.Linear(4, 2)), fold_batchnorm=False)
    snn.graph.add_submodule("0", nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)))
    snn.graph.recompile()
    with pytest.raises(ConversionError, match="no NIR mapping"):
        to_nir(snn, (4,))


@pytest.mark.parametrize("options", [{"method": "bitserial", "T": 2}, {"method": "if", "binary_spikes": True},
                                     {"method": "if", "calibration": "cos", "rho": 2}])  # fmt: skip
def test_neurons_nir_cannot_express_are_refused(options):
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(4, 4), snnconv.QCFS(3, 1.0), nn.Linear(4, 2))
    snn = snnconv.convert(randomize(ann), **options)
    with pytest.raises(ConversionError, match="has no NIR node"):
        to_nir(snn, (4,))


def test_fold_scales_matches_and_is_not_reimported(tmp_path):
    snn = _snn("small_cnn")
    folded = to_nir(snn, (1, 16, 16), fold_scales=True)
    assert not any(n.metadata.get("snnconv_kind") == "spike_value" for n in folded.nodes.values())
    nir.write(str(tmp_path / "f.nir"), folded)
    with pytest.raises(ConversionError, match="fold_scales"):
        import_nir(tmp_path / "f.nir")


class _Stateful(nn.Module):
    """snnTorch's IF import returns (spk, mem) from a Leaky without init_hidden; keep only the spikes."""

    def __init__(self, leaky: nn.Module, beta: float | None) -> None:
        super().__init__()
        self.leaky = leaky
        self.counts: list[float] = []
        if beta is not None:
            leaky.beta = torch.tensor(beta)

    def forward(self, x):
        spk = self.leaky(x)[0]
        self.counts.append(float(spk.detach().sum()))
        return spk


def _run_snntorch(net, x, T, beta=None):
    import snntorch

    wrapped = []
    for name, mod in list(net.named_children()):
        if isinstance(mod, snntorch.Leaky):
            wrapped.append(_Stateful(mod, beta))
            setattr(net, name, wrapped[-1])
    preds = []
    for sample in x:  # snnTorch's Flatten import keeps NIR's start_dim=0, so run unbatched samples
        for m in net.modules():
            if isinstance(m, snntorch.Leaky):
                m.reset_mem()
        with torch.no_grad():
            outs = [net(sample)[0] for _ in range(T)]
        preds.append(torch.stack(outs).cumsum(0).argmax(-1))
    counts = [torch.tensor(w.counts).view(len(x), T).sum(0) for w in wrapped]  # per layer: (T,) batch sums
    return torch.stack(preds, 1), counts  # (T, B)


def test_snntorch_loads_and_runs(tmp_path, capsys):
    snntorch_import = pytest.importorskip("snntorch.import_nir")
    snn = _snn("small_cnn")
    path = tmp_path / "net.nir"
    export_nir(snn, path, (1, 16, 16), fold_scales=True)  # snnTorch has no nir.Scale
    net = snntorch_import.import_from_nir(nir.read(str(path)))
    x, T = torch.rand(8, 1, 16, 16), 8
    result = snnconv.simulate(snn, x, T)
    ours = result.logits.argmax(-1)
    try:
        net(x[0])
        runs_as_is = "yes"
    except Exception as exc:  # snnTorch 1.0's IF → Leaky(init_hidden=False) returns a tuple
        runs_as_is = f"no ({type(exc).__name__}: {str(exc)[:80]})"
    for beta, label in ((None, "as imported (Leaky beta=0.9)"), (1.0, "beta forced to 1 (IF)")):
        net = snntorch_import.import_from_nir(nir.read(str(path)))
        theirs, counts = _run_snntorch(net, x, T, beta)
        assert theirs.shape == ours.shape and len(counts) == len(result.spike_counts)
        agree = (theirs == ours).float().mean(1)
        pairs = list(zip(counts, result.spike_counts.values(), strict=True))
        ratio = [round(float(c.sum() / max(1.0, float(o.sum()))), 3) for c, o in pairs]
        same_steps = [float((c == o).float().mean()) for c, o in pairs]
        with capsys.disabled():
            print(
                f"\n[snnTorch NIR import, T={T}] runs as imported: {runs_as_is}; {label}: prediction agreement "
                f"with snnconv per step {[round(float(a), 2) for a in agree]}; spikes theirs/ours per layer {ratio}; "
                f"fraction of steps with identical layer spike counts {same_steps}"
            )
