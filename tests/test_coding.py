"""Input coding (seed 003 §4.1 / SPEC §5): ISI counts and times, rate, direct, code spike trains."""

from __future__ import annotations

import pytest
import torch

from snnconv.coding import InputEncoder, direct_encode, isi_counts, isi_encode, isi_times, rate_encode, spread_codes


def test_isi_hand_computed_pixels() -> None:
    T = 128
    assert isi_counts(torch.tensor([0, 1, 128, 255]), T).tolist() == [0, 0, 64, 128]  # ⌊128·p/255⌋
    assert isi_times(0, T) == [] and isi_times(1, T) == []
    times = isi_times(128, T)  # ⌊n·255/128⌋
    assert len(times) == 64 and times[:4] == [1, 3, 5, 7] and times[-1] == 127
    assert isi_times(255, T) == list(range(1, T + 1))
    assert isi_times(128, T, alpha=0.5) == [int(n * 255 / 64) for n in range(1, 33)]  # N = ⌊64·128/255⌋ = 32


def test_isi_encode_matches_times_without_collisions() -> None:
    T, pixels = 64, torch.tensor([0.0, 1.0, 37.0, 128.0, 200.0, 255.0])
    for alpha in (1.0, 0.5, 0.3):
        trains = isi_encode(pixels, T, alpha)
        assert trains.shape == (T, 6) and set(trains.unique().tolist()) <= {0.0, 1.0}  # ≤ 1 spike per step
        for i, p in enumerate(pixels.tolist()):
            expected = isi_times(int(p), T, alpha)
            assert (trains[:, i].nonzero().flatten() + 1).tolist() == expected
            assert all(1 <= t <= T for t in expected)
    with pytest.raises(ValueError, match="alpha"):
        isi_counts(pixels, T, alpha=1.5)


def test_rate_and_direct() -> None:
    x = torch.tensor([[0.0, 0.25, 1.0]])
    a = rate_encode(x, 400, torch.Generator().manual_seed(1))
    b = rate_encode(x, 400, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (400, 1, 3)
    assert a[:, 0, 0].sum() == 0 and a[:, 0, 2].sum() == 400 and 70 < a[:, 0, 1].sum() < 130
    assert torch.equal(direct_encode(x, 3), x.expand(3, 1, 3))


@pytest.mark.parametrize("order", ["even", "first", "last", "random"])
def test_spread_codes_sums_and_rate(order: str) -> None:
    codes = torch.tensor([0.0, 1.0, -3.0, 8.0, 19.0, -20.0])
    trains = spread_codes(codes, 8, order, torch.Generator().manual_seed(0))
    assert torch.equal(trains.sum(0), codes)
    assert trains[:, :4].abs().max() <= 1  # |k| <= T: at most one spike per step
    assert torch.equal(trains[:, 4].abs().min(), torch.tensor(2.0))  # 19 = 2·8 + 3


def test_input_encoder_codes_match_fake_quant() -> None:
    scale = 1 / 64
    x = torch.rand(2, 1, 4, 4)
    enc = InputEncoder(scale, -127, 127, "codes")
    fq = torch.fake_quantize_per_tensor_affine(x, scale, 0, -127, 127)
    assert torch.equal(enc.codes(x) * scale, fq)
    out = enc(x.unsqueeze(0).expand(128, *x.shape))
    assert torch.equal(out.sum(0), enc.codes(x))
    isi = InputEncoder(scale, -127, 127, "isi")(x.unsqueeze(0).expand(128, *x.shape))
    torch.testing.assert_close(isi.sum(0) * scale, x, atol=1 / 128 + 1 / 255, rtol=0)
    direct = InputEncoder(scale, -127, 127, "direct")(x.unsqueeze(0).expand(16, *x.shape))
    torch.testing.assert_close(direct.sum(0) * scale, x)
