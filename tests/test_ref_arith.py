"""Fixed-point requantization: multiplier normalization, rounding rule, overflow check."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from sw.bundle.fixed_point import quantize_multiplier
from sw.ref.arith import accumulator_bits, requantize


@pytest.mark.parametrize("real", [1e-6, 0.001, 0.0123, 0.1, 0.5, 0.75, 0.999999999, 1.0, 3.7, 1000.0])
def test_multiplier_is_normalized_and_accurate(real):
    m, shift = quantize_multiplier(real)
    assert (1 << 30) <= m < (1 << 31)
    assert m / 2**shift == pytest.approx(real, rel=2**-30)


def test_bad_factors_are_refused():
    for bad in (0.0, -1.0, float("inf"), float("nan"), 1e30):
        with pytest.raises(ValueError):
            quantize_multiplier(bad)


def test_requantize_matches_exact_rational_rounding():
    rng = np.random.default_rng(0)
    acc = np.concatenate([rng.integers(-(1 << 31), 1 << 31, 10000), rng.integers(-(1 << 47) + 1, 1 << 47, 10000)])
    for real in (0.0123, 0.5, 0.3333, 2.5):
        m, shift = quantize_multiplier(real)
        got = requantize(acc, m, shift, 0, -(1 << 62), 1 << 62)
        # exact: floor(acc * m / 2^shift + 1/2) with Python integers
        want = np.array([(int(a) * m + (1 << (shift - 1))) >> shift for a in acc])
        assert np.array_equal(got, want)
        # and within one code of the real-valued product
        assert np.all(np.abs(got - acc * real) <= 0.5 + np.abs(acc) * real * 2**-29)


def test_ties_round_toward_plus_infinity_and_clamp():
    m, shift = quantize_multiplier(0.5)
    assert requantize(np.array([1, 3, -1, -3]), m, shift, 0, -10, 10).tolist() == [1, 2, 0, -1]
    assert requantize(np.array([100, -100]), m, shift, 3, 0, 15).tolist() == [15, 0]


def test_overflow_is_reported():
    with pytest.raises(OverflowError):
        requantize(np.array([1 << 47]), *quantize_multiplier(0.1), 0, 0, 255)


def test_accumulator_bits_bound_is_tight_for_worst_case():
    # 4-bit unsigned activations x 4-bit signed weights over 768 terms
    bits = accumulator_bits(4, 4, 768, signed_operands=1)
    worst = 15 * 8 * 768  # |code| <= 15, |w| <= 8
    assert worst < 2 ** (bits - 1) and bits == 4 + 4 + math.ceil(math.log2(768)) + 1


def test_reference_package_never_imports_torch():
    code = "import sys, sw.ref.arith; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
