"""Small products built from shifts and adds, so they stay in LUT fabric.

yosys maps every ``$mul`` to a MULT18X18D on ECP5, even a 4x4 one (hardware.md §5.1), and the part has
only 28-156 of them; a product of narrow operands (the 6 x 6 top piece of the FP32 significand
product) is cheaper as a few adders than as a hard multiplier. The hard multipliers stay with the wide
products.
"""

from __future__ import annotations

from amaranth.hdl import Const, Mux, Value


def balanced_sum(values: list[Value]) -> Value:
    """Adder tree: log2(n) adder levels instead of an n-deep ripple chain."""
    values = list(values)
    if not values:
        return Const(0, 1)
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i] for i in range(0, len(values), 2)]
    return values[0]


def shift_add_multiply(a: Value, b: Value) -> Value:
    """Exact a * b (either operand signed or unsigned), one adder level per bit of the narrower one.

    The result has the shape Amaranth gives ``a * b``, so callers can swap in ``*`` unchanged."""
    a, b = Value.cast(a), Value.cast(b)
    product_shape = (a * b).shape()  # shape only: this expression is never added to the design
    if len(b) > len(a):
        a, b = b, a
    if len(b) == 0:
        return Const(0, product_shape)
    partials = [Mux(b[i], a << i, 0) for i in range(len(b))]
    if b.shape().signed:  # the top bit of a two's complement number weighs -2^(n-1)
        partials[-1] = -partials[-1]
    total = balanced_sum(partials)
    # The exact product fits product_shape, so its low bits are the product (modular arithmetic).
    width = product_shape.width
    return total[:width].as_signed() if product_shape.signed else total[:width]

