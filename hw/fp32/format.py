"""IEEE 754 binary32 fields and the values the units produce for special results.

A float32 word is ``sign | exponent (8) | fraction (23)``. Subnormals (exponent field 0) weigh like
exponent 1 without the hidden bit, so every unit works with the *effective* exponent max(field, 1)
and the 24-bit significand; that is what keeps them exact through the subnormal range, as numpy is
(numpy does not flush subnormals to zero).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Value

FRAC_BITS = 23
SIG_BITS = FRAC_BITS + 1  # with the hidden bit
EXP_BITS = 8
EXP_ALL_ONES = (1 << EXP_BITS) - 1  # infinities and NaNs
BIAS = 127
WORD_BITS = 32
INF_BITS = EXP_ALL_ONES << FRAC_BITS  # 0x7F800000
# Every NaN a unit produces, whatever its operands' payloads: numpy's own NaN bits follow the x86
# operand-order and default-NaN rules, which a datapath need not copy (see hw/fp32/__init__.py).
CANONICAL_NAN = INF_BITS | 1 << (FRAC_BITS - 1)  # 0x7FC00000, positive quiet NaN


@dataclass(frozen=True)
class Fields:
    """Combinational view of one float32 word."""

    sign: Value
    exp: Value  # effective exponent: max(field, 1), 8 bits
    sig: Value  # 24-bit significand, hidden bit included (0 for zeros and subnormals)
    is_zero: Value
    is_inf: Value
    is_nan: Value


def unpack(word: Value) -> Fields:
    word = Value.cast(word)
    if len(word) != WORD_BITS:
        raise ValueError(f"a float32 word has {WORD_BITS} bits, got {len(word)}")
    frac, field, sign = word[:FRAC_BITS], word[FRAC_BITS:WORD_BITS - 1], word[WORD_BITS - 1]
    field_zero = field == 0
    field_ones = field == EXP_ALL_ONES
    frac_zero = frac == 0
    return Fields(sign=sign, exp=field | field_zero, sig=Cat(frac, ~field_zero),
                  is_zero=field_zero & frac_zero, is_inf=field_ones & frac_zero, is_nan=field_ones & ~frac_zero)


def signed_zero(sign: Value) -> Value:
    return Cat(Const(0, WORD_BITS - 1), sign)


def signed_inf(sign: Value) -> Value:
    return Cat(Const(INF_BITS, WORD_BITS - 1), sign)
