"""Wide products from pieces that each fit one ECP5 hard multiplier, with registers between stages.

yosys cuts a wide ``$mul`` into MULT18X18D pieces itself, but then sums the piece products in fabric
in the same cycle, behind the multipliers' own delay, which limits the clock of every design that
uses them. Here every operand is cut into 17-bit unsigned low pieces and one top piece that
keeps the sign, so each piece product is one ``$mul`` of at most 18 x 18 bits (an unsigned piece
gains a zero sign bit when its partner is signed). Each piece product is registered, then a tree
of registered adders sums them, one tree level per cycle, so no path holds more than one multiplier
or one adder.

Ports (``a_shape``, ``b_shape``: any signed or unsigned shapes):

    in   a, b                    operands
    out  p      (a * b).shape()  a * b of the operands ``latency`` cycles earlier; a new pair every cycle
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Shape, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

DSP_BITS = 18
LOW_PIECE_BITS = DSP_BITS - 1  # an unsigned piece stays a nonnegative 18-bit signed operand


def piece_offsets(shape: Shape) -> list[int]:
    """Bit offsets of the pieces an operand of ``shape`` is cut into (the last piece runs to the top)."""
    shape = Shape.cast(shape)
    top_bits = DSP_BITS if shape.signed else LOW_PIECE_BITS
    offsets = [0]
    while shape.width - offsets[-1] > top_bits:
        offsets.append(offsets[-1] + LOW_PIECE_BITS)
    return offsets


def _pieces(value: Value) -> list[tuple[int, Value]]:
    offsets = piece_offsets(value.shape())
    ends = offsets[1:] + [len(value)]
    pieces = [(lo, value[lo:hi]) for lo, hi in zip(offsets, ends)]
    if value.shape().signed:  # only the top piece carries the sign
        pieces[-1] = (pieces[-1][0], pieces[-1][1].as_signed())
    return pieces


def _extend(value: Value, width: int) -> Value:
    """``value`` sign- or zero-extended to at least ``width`` bits."""
    if len(value) >= width:
        return value
    signed = value.shape().signed
    fill = value[-1] if signed else Const(0, 1)
    wide = Cat(value, fill.replicate(width - len(value)))
    return wide.as_signed() if signed else wide


def _aligned_sum(low: Value, high: Value, shift: int) -> Value:
    """low + (high << shift), with the adder only over the bits where ``high`` can be nonzero."""
    if shift == 0:
        return low + high
    low = _extend(low, shift)
    upper = low.shift_right(shift) + high
    total = Cat(low[:shift], upper)
    return total.as_signed() if upper.shape().signed else total


def adder_levels(count: int) -> int:
    """Levels of a pairwise adder tree over ``count`` values."""
    return max(count - 1, 0).bit_length()


def multiplier_latency(a_shape: Shape, b_shape: Shape) -> int:
    """Cycles from operands to product: the piece products' register, then one per adder level."""
    return 1 + adder_levels(len(piece_offsets(a_shape)) * len(piece_offsets(b_shape)))


class PipelinedMultiplier(wiring.Component):
    def __init__(self, a_shape, b_shape):
        self.a_shape, self.b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        self.latency = multiplier_latency(self.a_shape, self.b_shape)
        product_shape = (Signal(self.a_shape) * Signal(self.b_shape)).shape()  # shape only, not in the design
        super().__init__({"a": In(self.a_shape), "b": In(self.b_shape), "p": Out(product_shape)})

    def elaborate(self, platform):
        m = Module()
        terms = []
        for (a_off, a_piece), (b_off, b_piece) in ((x, y) for x in _pieces(self.a) for y in _pieces(self.b)):
            product = a_piece * b_piece
            reg = Signal(product.shape(), name=f"piece_{a_off}_{b_off}")
            m.d.sync += reg.eq(product)
            terms.append((a_off + b_off, reg))
        level = 0
        while len(terms) > 1:
            terms.sort(key=lambda t: t[0])
            paired = []
            for i in range(0, len(terms), 2):
                if i + 1 == len(terms):
                    (offset, value), = terms[i:]
                    total = value
                else:
                    (offset, low), (high_offset, high) = terms[i:i + 2]
                    total = _aligned_sum(low, high, high_offset - offset)
                reg = Signal(total.shape(), name=f"sum{level}_{i // 2}")
                m.d.sync += reg.eq(total)
                paired.append((offset, reg))
            terms, level = paired, level + 1
        (offset, total), = terms
        assert offset == 0
        # The exact product fits p, so the low bits of the (possibly wider) tree sum are the product.
        m.d.comb += self.p.eq(total[:len(self.p)])
        return m
