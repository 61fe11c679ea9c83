"""Combinational bit tools shared by the float32 units: leading-zero count and a right shift that
remembers whether any 1 fell off (the sticky bit of round to nearest even)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Value


def _count(value: Value) -> tuple[Value, Value]:
    """(all zero, leading zeros) of a power-of-two-wide ``value``, as a tree: log2(width) mux levels
    instead of the width-deep priority chain an if/elif ladder would synthesize to."""
    if len(value) == 2:
        return ~(value[0] | value[1]), ~value[1]
    half = len(value) // 2
    low_zero, low_count = _count(value[:half])
    high_zero, high_count = _count(value[half:])
    return high_zero & low_zero, Cat(Mux(high_zero, low_count, high_count), high_zero)


def leading_zeros(value: Value) -> tuple[Value, Value]:
    """(leading zeros of ``value``, whether ``value`` is 0); the count is meaningless when it is 0."""
    value = Value.cast(value)
    if len(value) < 2:
        raise ValueError(f"leading_zeros needs at least 2 bits, got {len(value)}")
    padded = 1 << (len(value) - 1).bit_length()
    # Zeros below the value change no count of a nonzero value.
    zero, count = _count(Cat(Const(0, padded - len(value)), value))
    return count, zero


def shift_right_sticky(value: Value, amount: Value) -> tuple[Value, Value]:
    """(``value`` >> ``amount`` in ``len(value)`` bits, whether a 1 was shifted out); any amount,
    an amount of ``len(value)`` or more shifts everything out."""
    value, amount = Value.cast(value), Value.cast(amount)
    width = len(value)
    low_bits = width.bit_length()  # amounts below 2**low_bits go through the barrel shifter
    low = amount[:low_bits]
    over = amount[low_bits:].any() if len(amount) > low_bits else Const(0, 1)
    below = ~(Const((1 << width) - 1, width) << low)[:width]  # the bits a shift by ``low`` drops
    shifted = Mux(over, 0, (value >> low)[:width])
    lost = Mux(over, value.any(), (value & below).any())
    return shifted, lost


def shift_left(value: Value, amount: Value) -> Value:
    """``value`` << ``amount`` kept to ``len(value)`` bits (callers shift out only zeros)."""
    value = Value.cast(value)
    return (value << amount)[:len(value)]
