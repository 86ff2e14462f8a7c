"""ReLU → QCFS fine-tuning (seed 001 A.9): weights copied by name, λ from activation percentiles."""

from __future__ import annotations

import json

import pytest
import torch

from snnconv import QCFS, make_act
from snnconv.cli import main
from snnconv.errors import ConversionError
from snnconv.finetune import init_qcfs_from_relu
from snnconv.models import create


def _loader(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 1, 8, 8, generator=g), torch.zeros(16, dtype=torch.long)) for _ in range(n)]


def test_weights_copied_and_thresholds_are_percentiles():
    torch.manual_seed(0)
    relu = create("mlp", in_channels=1, input_size=8, act=make_act("relu")).eval()
    qcfs = create("mlp", in_channels=1, input_size=8, act=make_act("qcfs", levels=4))
    acts = {}
    for name, m in relu.named_modules():
        if isinstance(m, torch.nn.ReLU):
            m.register_forward_hook(lambda m, i, o, name=name: acts.setdefault(name, []).append(o.flatten().clone()))
    loader = _loader()
    lams = init_qcfs_from_relu(qcfs, relu, loader, percentile=99.0, batches=3)
    for k, v in relu.state_dict().items():
        assert torch.equal(qcfs.state_dict()[k], v)
    for name, q in qcfs.named_modules():
        if isinstance(q, QCFS):
            expected = float(torch.quantile(torch.cat(acts[name]), 0.99))
            assert lams[name] == pytest.approx(expected, rel=1e-6)
            assert q.theta().item() == pytest.approx(expected, rel=1e-6)
    # with many levels and λ at the 100th percentile, QCFS reproduces the ReLU network on the same data
    fine = create("mlp", in_channels=1, input_size=8, act=make_act("qcfs", levels=4096)).eval()
    init_qcfs_from_relu(fine, relu, loader, percentile=100.0, batches=3)
    x = loader[0][0]
    torch.testing.assert_close(fine(x), relu(x), rtol=0.02, atol=0.02)


def test_mismatched_architecture_is_refused():
    relu = create("mlp", in_channels=1, input_size=8, act=make_act("relu"), width=0.5)
    qcfs = create("small_cnn", in_channels=1, input_size=8)
    with pytest.raises(ConversionError, match="same --model, --width and --dataset"):
        init_qcfs_from_relu(qcfs, relu, _loader())


def test_cli_relu_then_qcfs_finetune_and_sparsity_on_digits(tmp_path):
    common = ["--model", "mlp", "--dataset", "digits", "--lr", "0.05", "--seed", "1"]
    assert main(["train", *common, "--act", "relu", "--epochs", "2", "--out", str(tmp_path / "relu")]) == 0
    assert main(["train", *common, "--act", "qcfs", "--levels", "4", "--epochs", "1", "--init-from",
                 str(tmp_path / "relu"), "--sparsity", "1e-6", "--out", str(tmp_path / "ft")]) == 0  # fmt: skip
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["init_from"] == str(tmp_path / "relu") and config["sparsity"] == 1e-6
    history = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["test_acc"] > 0.5  # fine-tuning from a trained ReLU net starts far above chance
