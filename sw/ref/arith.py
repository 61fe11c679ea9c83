"""Fixed-point requantization as the hardware computes it (the representation and its limits are the
bundle contract's, ``sw/bundle/fixed_point.py``).

    y = (acc * M + 2^(shift - 1)) >> shift          (arithmetic shift: round half toward +infinity)
    q = clamp(y + zero_point, q_min, q_max)

One rounding, not two (gemmlowp's high-mul then shift rounds twice). Accumulators may hold up to 47
bits plus sign (grouped layers scale their partial sums by 16-bit group ratios); the 78-bit product
acc * M is formed exactly in int64 by splitting M into 15 high and 16 low bits, using
floor(floor(x / 2^16) / 2^(shift-16)) = floor(x / 2^shift). Callers bound their accumulator width
(``accumulator_bits``) and ``requantize`` checks it.
"""

from __future__ import annotations

import math

import numpy as np

from ..bundle.fixed_point import MAX_ACC_BITS, SHIFT_MIN

_SPLIT = SHIFT_MIN - 1
def accumulator_bits(a_bits: int, b_bits: int, terms: int, signed_operands: int = 1) -> int:
    """Bits of a signed accumulator that holds any sum of ``terms`` products of an a_bits x b_bits
    multiply; ``signed_operands`` of the two operands are signed (adds their sign bits once)."""
    product_bits = a_bits + b_bits - (1 if signed_operands == 2 else 0)
    return product_bits + math.ceil(math.log2(max(terms, 1))) + 1


def requantize(acc: np.ndarray, multiplier: int | np.ndarray, shift: int | np.ndarray,
               zero_point: int, q_min: int, q_max: int) -> np.ndarray:
    """Rescale int accumulators to output codes (see the module docstring for the formula)."""
    acc = np.asarray(acc, dtype=np.int64)
    if acc.size and int(np.abs(acc).max()) >= 1 << MAX_ACC_BITS:
        raise OverflowError(f"accumulator magnitude {int(np.abs(acc).max())} needs more than {MAX_ACC_BITS} bits")
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(shift <= _SPLIT):
        raise ValueError(f"requantize needs shift >= {SHIFT_MIN}")
    m_hi, m_lo = multiplier >> _SPLIT, multiplier & ((1 << _SPLIT) - 1)
    # (acc*M + 2^(shift-1)) >> shift with acc*M = (acc*m_hi) * 2^16 + acc*m_lo: the rounding constant
    # sits in the high part (shift - 1 >= 16), the low part is floored by 2^16 first.
    high = acc * m_hi + (np.int64(1) << (shift - 1 - _SPLIT))
    y = (high + ((acc * m_lo) >> _SPLIT)) >> (shift - _SPLIT)
    return np.clip(y + zero_point, q_min, q_max)
