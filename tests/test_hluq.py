"""HLUQ hybrid log/uniform quantizer: code layout, round trip, region boundary, monotonicity, the
fixed underflow rule, and the (r, g) search."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from sw.quant.hluq import (GRID_RATES, HLUQQuantizer, hluq_codes, hluq_fake_quantize, hluq_scales, hluq_values,
                           log_codes)

M = -0.17  # GELU's minimum, the usual shift


@pytest.mark.parametrize("bits", [4, 5, 6])
@pytest.mark.parametrize("g", GRID_RATES)
def test_every_code_round_trips_and_levels_increase(bits, g):
    l_log = log_codes(bits, g)
    s_log, s_uni = hluq_scales(M, 0.8, bits, 0.3, g)
    codes = torch.arange(2**bits, dtype=torch.float32)
    # Shift-free (as the hardware sees codes): all 2^k levels distinct, increasing, and round-tripping.
    shifted = hluq_values(codes, 0.0, s_log, s_uni, bits, l_log)
    assert torch.equal(hluq_codes(shifted, 0.0, s_log, s_uni, bits, l_log), codes)
    assert torch.all(shifted[1:] > shifted[:-1])
    # With the shift m, float32 cannot hold m + s_log * 2^-j for the deepest log levels (j up to 31 at
    # 6 bits); every level it can hold still round-trips.
    values = hluq_values(codes, M, s_log, s_uni, bits, l_log)
    held = (values - M).abs() > 1e-6
    held[0] = True
    assert torch.equal(hluq_codes(values, M, s_log, s_uni, bits, l_log)[held], codes[held])
    assert torch.all(values[1:] >= values[:-1])
    assert values[0] == M and values[l_log] == pytest.approx(M + float(s_log))
    # the top level lies within one uniform step of the calibration maximum
    assert abs(values[-1].item() - 0.8) < float(s_uni)


def test_region_boundary():
    bits, g = 4, 0.25
    l_log = log_codes(bits, g)
    s_log, s_uni = hluq_scales(0.0, 1.0, bits, 0.3, g)
    x = torch.tensor([s_log, s_log * 0.99, s_log + 0.4 * s_uni, s_log + 0.6 * s_uni, s_log / 2, s_log / 2**3.6])
    assert hluq_codes(x, 0.0, s_log, s_uni, bits, l_log).tolist() == [l_log, l_log, l_log, l_log + 1, l_log - 1, 0]


def test_inputs_below_the_minimum_clamp_to_it_and_outputs_are_monotone():
    bits, g = 4, 0.5
    s_log, s_uni = hluq_scales(M, 0.8, bits, 0.1, g)
    x = torch.linspace(-0.5, 1.5, 4001)
    y = hluq_fake_quantize(x, M, s_log, s_uni, bits, log_codes(bits, g))
    assert torch.all(y[1:] >= y[:-1])
    assert torch.all(y[x <= M] == M) and y.max() <= 0.8 + 1e-6


def test_large_uniform_values_are_not_collapsed():
    """The reference kernel tests underflow (code >= L_log) on every element, so at 4 bits any
    uniform-region value above L_log in absolute units fell back to the breakpoint (methods.md §3.1)."""
    bits, r, g = 4, 0.1, 0.125
    l_log = log_codes(bits, g)  # 2
    s_log, s_uni = hluq_scales(0.0, 4.8, bits, r, g)
    x = torch.tensor([2.5, 3.0, 4.0, 4.8])
    y = hluq_fake_quantize(x, 0.0, s_log, s_uni, bits, l_log)
    assert torch.all((y - x).abs() <= s_uni / 2 + 1e-5)
    assert not torch.any(y == s_log)


def test_search_keeps_the_pair_with_the_smallest_consumer_error():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.gelu(torch.randn(64, 32, generator=g) * 2)
    layer = nn.Linear(32, 8)
    q = HLUQQuantizer(4, layer)
    q.observing = True
    q(x)
    q(x * 0.8)
    q.observing = False
    q.finalize()
    best = min(range(len(q.candidates)), key=lambda i: q.loss_sum[i])
    r, grid = q.candidates[best]
    assert q.log_levels == log_codes(4, grid)
    lo, hi = q.range_sum[0] / 2, q.range_sum[1] / 2
    s_log, s_uni = hluq_scales(lo, hi, 4, r, grid)
    assert float(q.s_log) == pytest.approx(float(s_log)) and float(q.s_uni) == pytest.approx(float(s_uni))
    q.enabled = True
    out = q(x)
    assert torch.equal(out, hluq_fake_quantize(x, q.lo, q.s_log, q.s_uni, 4, q.log_levels))


def test_hluq_sits_on_every_mlp_second_linear(litemedsam):
    from sw.quant.config import make_config
    from sw.quant.prepare import iter_quantizers, quantize_model

    qmodel = quantize_model(litemedsam, make_config("ptq4sam-l", "w4a4", post_act_quantizer="hluq"))
    hluq = [n for n, q in iter_quantizers(qmodel) if isinstance(q, HLUQQuantizer)]
    assert len(hluq) == 10 + 2
    assert all(n.endswith(("mlp.fc2.input_quantizer", "mlp.lin2.input_quantizer")) for n in hluq)


@pytest.mark.parametrize("bits", [4, 6])
@pytest.mark.parametrize("g", GRID_RATES)
def test_fused_fake_quantize_equals_codes_then_values_bit_for_bit(bits, g):
    l_log = log_codes(bits, g)
    s_log, s_uni = hluq_scales(M, 2.5, bits, 0.3, g)
    gen = torch.Generator().manual_seed(bits)
    levels = hluq_values(torch.arange(2**bits, dtype=torch.float32), M, s_log, s_uni, bits, l_log)
    # GELU-like data, every level, the region boundary and values beyond both ends of the range
    x = torch.cat([torch.randn(50_000, generator=gen) * 0.7, levels, levels + 1e-7,
                   torch.tensor([M, M - 1.0, M + float(s_log), 9.0, 0.0])])
    with torch.no_grad():
        fused = hluq_fake_quantize(x, M, s_log, s_uni, bits, l_log)
    assert torch.equal(fused, hluq_values(hluq_codes(x, M, s_log, s_uni, bits, l_log), M, s_log, s_uni, bits, l_log))
