"""Requantizer: accumulator -> output code, bit-exact with ``sw.ref.arith.requantize``.

    q = clamp(((acc * M + 2^(shift-1)) >> shift) + zero_point, q_min, q_max)     (>> floors)

The rounding constant is never built: with t = floor(acc * M / 2^(shift-1)),
floor((acc * M + 2^(shift-1)) / 2^shift) = floor((t + 1) / 2), because the bits below 2^(shift-1)
cannot carry into the halved sum. So the datapath is one multiply, one barrel shift by shift - 1 and
an increment, at any accumulator width (no 47-bit limit as in the numpy reference).

Three register stages, one result per cycle (widths from ``hw.widths.RequantWidths``, A = acc bits):

    1. product  = acc * M                          signed(A + 31)   (the hard multiplier)
    2. floored  = product >> (shift - 1)           signed(A + 15)   (16 constant + 0..61 variable)
    3. out      = clamp(((floored + 1) >> 1) + zero_point)

Ports:

    in   valid                 1
    in   acc                   signed(A)
    in   multiplier            unsigned(31)    M; per output channel, so a port
    in   shift                 unsigned(7)     17..78 (other values give undefined results)
    in   zero_point            signed          in [q_min, q_max]
    out  out                   unsigned or signed (signed when q_min < 0)
    out  out_valid             1               ``latency`` = 3 cycles after valid
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..widths import MULTIPLIER_BITS, SHIFT_MAX, SHIFT_MIN, RequantWidths, requant_widths


class Requantizer(wiring.Component):
    latency = 3

    def __init__(self, widths: RequantWidths):
        self.widths = widths
        out_shape = signed(widths.out_bits) if widths.out_signed else unsigned(widths.out_bits)
        super().__init__({
            "valid": In(1),
            "acc": In(signed(widths.acc_bits)),
            "multiplier": In(unsigned(MULTIPLIER_BITS)),
            "shift": In(unsigned(widths.shift_bits)),
            "zero_point": In(signed(widths.zero_point_bits)),
            "out": Out(out_shape),
            "out_valid": Out(1),
        })

    @classmethod
    def from_layer(cls, layer, acc_bits: int | None = None) -> "Requantizer":
        return cls(requant_widths(layer, acc_bits))

    def elaborate(self, platform):
        m = Module()
        w = self.widths

        product = Signal(signed(w.product_bits))
        amount = Signal(range(SHIFT_MAX - SHIFT_MIN + 1))
        zero_1 = Signal.like(self.zero_point)
        m.d.sync += [product.eq(self.acc * self.multiplier), amount.eq(self.shift - SHIFT_MIN),
                     zero_1.eq(self.zero_point)]

        floored = Signal(signed(w.floored_bits))
        zero_2 = Signal.like(self.zero_point)
        m.d.sync += [floored.eq((product >> (SHIFT_MIN - 1)) >> amount), zero_2.eq(zero_1)]

        value = ((floored + 1) >> 1) + zero_2
        m.d.sync += self.out.eq(Mux(value < w.q_min, w.q_min, Mux(value > w.q_max, w.q_max, value)))

        valid_1, valid_2 = Signal(), Signal()
        m.d.sync += [valid_1.eq(self.valid), valid_2.eq(valid_1), self.out_valid.eq(valid_2)]
        return m
