"""QAT preparation with torch.ao FX tooling (seed 003 / SPEC §5): zero points, scales, freezing."""

from __future__ import annotations

import torch
from torch import fx, nn
from torch.ao.nn.intrinsic import qat as nniqat

from snnconv.qat import QATSchedule, fake_quantizers, freeze, prepare_qat, qat_qconfig, record_codes


def small() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(64, 3))  # fmt: skip


def calibrate(q: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        for _ in range(3):
            q(x)


def test_signed_symmetric_zero_point_and_pow2_scales() -> None:
    torch.manual_seed(0)
    x = torch.rand(16, 1, 8, 8)
    q = prepare_qat(small(), x)
    assert isinstance(q, fx.GraphModule)
    assert any(isinstance(m, nniqat.ConvBnReLU2d) for m in q.modules())  # conv-BN-ReLU fused, BN folded
    calibrate(q, x)
    fqs = fake_quantizers(q)
    assert len(fqs) >= 3
    for fq in fqs.values():
        assert int(fq.zero_point) == 0 and (fq.quant_min, fq.quant_max) == (-127, 127)
        s = float(fq.scale)
        assert s == 2.0 ** round(torch.log2(torch.tensor(s)).item())
    _, codes = record_codes(q, x)
    relu_codes = codes["activation_post_process_1"]
    assert relu_codes.min() >= 0 and relu_codes.max() <= 127 and torch.equal(relu_codes, relu_codes.round())


def test_unsigned_zero_point_zero_on_nonnegative_and_float_output_layer() -> None:
    torch.manual_seed(0)
    x = torch.rand(16, 1, 8, 8)
    q = prepare_qat(small(), x, signed=False, pow2=False, per_channel=True)
    calibrate(q, x)
    for fq in fake_quantizers(q).values():
        assert int(fq.zero_point) == 0 and (fq.quant_min, fq.quant_max) == (0, 255)
    assert type(q.get_submodule("5")) is nn.Linear  # logits left in float (they are signed)
    assert qat_qconfig(4).activation().quant_max == 7


def test_freeze_and_schedule_stop_updates() -> None:
    torch.manual_seed(0)
    x = torch.rand(16, 1, 8, 8)
    q = prepare_qat(small(), x)
    calibrate(q, x)
    QATSchedule(freeze_bn=1, freeze_observer=1)({"epoch": 1, "model": q})
    scales = {n: fq.scale.clone() for n, fq in fake_quantizers(q).items()}
    q.train()
    q(x * 5)
    assert all(torch.equal(fq.scale, scales[n]) for n, fq in fake_quantizers(q).items())
    assert not freeze(q).training
