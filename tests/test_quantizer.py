"""The uniform quantizer and observers in isolation (methods.md §1.2)."""

from __future__ import annotations

import pytest
import torch

from sw.quant.observers import AvgMinMaxObserver, MinMaxObserver, MSEObserver, PercentileObserver
from sw.quant.quantizer import UniformQuantizer, fake_quantize, qparams_from_range, quantize_codes


def test_qparams_formula_matches_spec():
    scale, zp = qparams_from_range(torch.tensor(-1.0), torch.tensor(3.0), 4)
    assert scale.item() == pytest.approx(4.0 / 15)
    assert zp.item() == round(1.0 / (4.0 / 15))  # -round(m/s) = round(3.75) = 4
    # a range that excludes zero is widened to contain it
    scale, zp = qparams_from_range(torch.tensor(2.0), torch.tensor(5.0), 8)
    assert zp.item() == 0 and scale.item() == pytest.approx(5.0 / 255)
    # degenerate range: scale floor 1e-8
    scale, _ = qparams_from_range(torch.tensor(0.0), torch.tensor(0.0), 8)
    assert scale.item() == pytest.approx(1e-8)


def test_rounding_is_half_to_even_and_clamped():
    scale, zp = torch.tensor(1.0), torch.tensor(2.0)
    x = torch.tensor([0.5, 1.5, 2.5, -2.5, 100.0, -100.0])
    codes = quantize_codes(x, scale, zp, 4)
    assert codes.tolist() == [2.0, 4.0, 4.0, 0.0, 15.0, 0.0]


@pytest.mark.parametrize("bits", [4, 5, 6, 8])
@pytest.mark.parametrize("ch_axis", [None, 0, 1])
@pytest.mark.parametrize("kind", ["minmax", "avgminmax", "percentile", "mse"])
def test_output_lies_on_grid(bits, ch_axis, kind):
    g = torch.Generator().manual_seed(bits)
    x = torch.randn(6, 50, 3, generator=g) * torch.linspace(0.1, 5, 3) + 0.3
    observer = {"minmax": MinMaxObserver(ch_axis), "avgminmax": AvgMinMaxObserver(ch_axis), "percentile": PercentileObserver(99.0, ch_axis),
                "mse": MSEObserver(bits, 2.0, 50, ch_axis)}[kind]
    q = UniformQuantizer(bits, observer, ch_axis)
    q.observing = True
    q(x)
    q(x * 1.5)
    q.observing = False
    q.finalize()
    q.enabled = True
    y = q(x * 2)
    codes = q.codes(y)
    assert torch.all(codes == torch.round(codes)) and codes.min() >= 0 and codes.max() <= 2**bits - 1
    scale, zp = q._shaped(q.scale, y), q._shaped(q.zero_point, y)
    assert torch.equal((codes - zp) * scale, y)  # exactly representable: no float leakage
    assert torch.all(zp == torch.round(zp))


def test_disabled_quantizer_is_identity_and_uncalibrated_refuses():
    q = UniformQuantizer(8, MinMaxObserver())
    x = torch.randn(10)
    assert q(x) is x
    q.enabled = True
    with pytest.raises(RuntimeError):
        q(x)


def test_minmax_keeps_extremes_and_percentile_clips_outliers():
    x = torch.cat([torch.linspace(-1, 1, 10000), torch.tensor([50.0])])
    mm, avg, pc = MinMaxObserver(), AvgMinMaxObserver(), PercentileObserver(99.9)
    for observer in (mm, avg, pc):
        observer.observe(x)
        observer.observe(x / 10)
    assert mm.range()[1].item() == 50.0
    assert avg.range()[1].item() == pytest.approx(27.5)  # mean of the two calls' maxima
    assert pc.range()[1].item() < 1.01


def test_mse_observer_clips_heavy_tail_and_beats_minmax_error():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, generator=g)
    x[0] = 40.0
    mse, mm = MSEObserver(4, 2.0, 100), MinMaxObserver()
    mse.observe(x)
    mm.observe(x)

    def err(observer):
        s, z = qparams_from_range(*observer.range(), 4)
        return (fake_quantize(x, s, z, 4) - x).pow(2).mean().item()

    assert mse.range()[1].item() < 40.0
    assert err(mse) < err(mm)
