"""The fixed-point representation every rescale in a bundle uses, and the limits readers size for.

A real rescale factor r > 0 (e.g. s_in * s_w / s_out) is stored as

    r ~= M * 2^(-shift),   2^30 <= M < 2^31  (a normalized 31-bit unsigned multiplier), 17 <= shift <= 78

and an accumulator, |acc| < 2^47, becomes codes in one rounding (``sw/ref/arith.py`` computes it):

    q = clamp(((acc * M + 2^(shift - 1)) >> shift) + zero_point, q_min, q_max)

The exporter, the integer reference and the hardware generator all take these constants from here.
"""

from __future__ import annotations

import math

MULTIPLIER_BITS = 31
MULTIPLIER_MIN = 1 << (MULTIPLIER_BITS - 1)
# acc * M is formed exactly in int64 from M's 15 high and 16 low bits, so the shift must exceed 16.
SHIFT_MIN = 17
# The rounding constant 2^(shift - 17) plus acc * M_hi (< 2^62) must stay below 2^63.
SHIFT_MAX = 78
# |acc| < 2^47: acc * M_hi (< 2^62) and acc * M_lo (< 2^63) stay exact in int64.
MAX_ACC_BITS = 47
# Activation, weight and softmax codes are stored as uint8.
CODE_BITS_MIN, CODE_BITS_MAX = 2, 8


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(M, shift) with real ~= M * 2^-shift and 2^30 <= M < 2^31.

    Example: 0.1 -> M = 1717986918, shift = 34 (1717986918 / 2^34 = 0.1 to 1e-10 relative).
    """
    if not (real > 0 and math.isfinite(real)):
        raise ValueError(f"rescale factor must be positive and finite, got {real}")
    mantissa, exponent = math.frexp(real)  # real = mantissa * 2^exponent, 0.5 <= mantissa < 1
    multiplier = round(mantissa * (1 << MULTIPLIER_BITS))
    if multiplier == 1 << MULTIPLIER_BITS:  # mantissa rounded up to 1.0
        multiplier //= 2
        exponent += 1
    shift = MULTIPLIER_BITS - exponent
    if not SHIFT_MIN <= shift <= SHIFT_MAX:
        raise ValueError(f"rescale factor {real} is out of the supported range (shift {shift})")
    return multiplier, shift
