"""Integer kernels: exact products, and every code's integer operand equal to the fake-quant level."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sw.quant.agq import agq_values
from sw.quant.hluq import hluq_values
from sw.ref.kernels import (agq_weights, combine_partials, conv2d_partial, depthwise_conv2d_partial, hluq_terms,
                            int_matmul, linear_partials)


@pytest.mark.parametrize("magnitude", [2**7, 2**18])  # up to 46-bit sums, beyond float32's 24
def test_int_matmul_is_exact(magnitude):
    rng = np.random.default_rng(0)
    a = rng.integers(-magnitude, magnitude, (5, 300))
    b = rng.integers(-magnitude, magnitude, (300, 4))
    want = [[sum(int(x) * int(y) for x, y in zip(a[i], b[:, j])) for j in range(4)] for i in range(5)]
    assert int_matmul(a, b).tolist() == want


def test_int_matmul_refuses_an_overflowing_product():
    with pytest.raises(OverflowError):
        int_matmul(np.full((1, 4), 2**30), np.full((4, 1), 2**20))


@pytest.mark.parametrize("bits,levels", [(4, 2), (4, 4), (4, 8), (6, 16)])
def test_hluq_shift_and_multiply_paths_give_every_level(bits, levels):
    m, s_log, s_uni = -0.17, 0.9, 0.13
    codes = np.arange(2**bits)
    log_term, uni_term = hluq_terms(codes, levels)
    integer_value = m + log_term * (s_log * 2.0 ** -(levels - 1)) + uni_term * s_uni
    want = hluq_values(torch.tensor(codes, dtype=torch.float64), m, s_log, s_uni, bits, levels).numpy()
    np.testing.assert_allclose(integer_value, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tau", [1, 2, 4])
@pytest.mark.parametrize("bits", [4, 6])
def test_agq_lut_and_shift_give_every_level(tau, bits):
    frac = 0 if tau == 1 else 15
    lut = np.array([round(2**frac * 2 ** (-r / tau)) for r in range(tau)])
    max_shift = (2**bits - 2) // tau
    codes = np.arange(2**bits)
    value = agq_weights(codes, tau, lut, max_shift, bits) * 2.0 ** -(frac + max_shift)
    want = agq_values(torch.tensor(codes, dtype=torch.float64), 1.0, tau, bits).numpy()
    assert value[-1] == 0 and want[-1] == 0  # the all-ones code is zero
    np.testing.assert_allclose(value, want, rtol=0 if tau == 1 else 2**-15.5, atol=0)


def test_agq_codes_beyond_the_largest_shift_contribute_nothing():
    weights = agq_weights(np.array([0, 3, 4, 5, 15]), 1, np.array([1]), 4, 4)
    assert weights.tolist() == [16, 2, 1, 0, 0]


def test_grouped_partials_equal_the_per_group_sum():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 16, (6, 10))
    weight = rng.integers(-8, 8, (3, 10))
    groups = np.array([0, 1, 0, 2, 2, 1, 0, 1, 2, 0])
    zero = np.array([3, 7, 0])
    partials = linear_partials(codes, weight, "cag", zero_point=zero, groups=groups)
    acc = combine_partials(partials, np.array([1, 1, 1]))
    assert np.array_equal(acc, (codes - zero[groups]) @ weight.T)
    scaled = combine_partials(partials, np.array([5, 1, 3]))
    assert np.array_equal(scaled, ((codes - zero[groups]) * np.array([5, 1, 3])[groups]) @ weight.T)


@pytest.mark.parametrize("stride,padding,groups", [(1, 1, 1), (2, 1, 4), (2, 0, 1), (1, 1, 8)])
def test_integer_conv_matches_torch_with_zero_point_padding(stride, padding, groups):
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 256, (2, 8, 9, 9))
    weight = rng.integers(-127, 128, (8, 8 // groups, 3, 3))
    zero = 37
    want = F.conv2d(torch.tensor(codes - zero, dtype=torch.float64), torch.tensor(weight, dtype=torch.float64),
                    stride=stride, padding=padding, groups=groups).numpy()
    got = conv2d_partial(codes, zero, weight, stride, padding, groups)
    assert np.array_equal(got, want.astype(np.int64))
    if groups == 8:
        assert np.array_equal(depthwise_conv2d_partial(codes, zero, weight, stride, padding), got)
