"""Requantizer: accumulator -> output code, bit-exact with ``sw.ref.arith.requantize``.

    q = clamp(((acc * M + 2^(shift-1)) >> shift) + zero_point, q_min, q_max)     (>> floors)

The rounding constant is never built: with t = floor(acc * M / 2^(shift-1)),
floor((acc * M + 2^(shift-1)) / 2^shift) = floor((t + 1) / 2), because the bits below 2^(shift-1)
cannot carry into the halved sum; and floor((t + 1) / 2) + z = floor((t + 1 + 2z) / 2), so the
increment and the zero point are one addition. So the datapath is one multiply, one barrel shift by
shift - 1 and one add, at any accumulator width (no 47-bit limit as in the numpy reference).

Register stages, one result per cycle (widths from ``hw.widths.RequantWidths``, A = acc bits); each
stage holds one multiplier piece, adder or shifter, so that it fits a 100 MHz clock on ECP5:

    1..L  product = acc * M                     signed(A + 31)  (``dsp_multiply``: L = its latency)
    L+1   floored = product >> (shift - 1)      signed(A + 15)  (16 constant + 0..61 variable)
    L+2   value   = (floored + 1 + 2 z) >> 1
    L+3   out     = clamp(value, q_min, q_max)

Ports:

    in   valid                 1
    in   acc                   signed(A)
    in   multiplier            unsigned(31)    M; per output channel, so a port
    in   shift                 unsigned(7)     17..78 (other values give undefined results)
    in   zero_point            signed          in [q_min, q_max]
    out  out                   unsigned or signed (signed when q_min < 0)
    out  out_valid             1               ``latency`` = L + 3 cycles after valid
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sw.bundle.fixed_point import MULTIPLIER_BITS, SHIFT_MAX, SHIFT_MIN

from ..widths import RequantWidths, requant_widths
from .dsp_multiply import PipelinedMultiplier, multiplier_latency
from .pipeline import delay


class Requantizer(wiring.Component):
    def __init__(self, widths: RequantWidths):
        self.widths = widths
        self.multiply = PipelinedMultiplier(signed(widths.acc_bits), unsigned(MULTIPLIER_BITS))
        self.latency = self.latency_of(widths)
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

    @staticmethod
    def latency_of(widths: RequantWidths) -> int:
        return multiplier_latency(signed(widths.acc_bits), unsigned(MULTIPLIER_BITS)) + 3

    @classmethod
    def from_layer(cls, layer, acc_bits: int | None = None) -> "Requantizer":
        return cls(requant_widths(layer, acc_bits))

    def elaborate(self, platform):
        m = Module()
        w = self.widths
        m.submodules.multiply = mul = self.multiply
        m.d.comb += [mul.a.eq(self.acc), mul.b.eq(self.multiplier)]

        # The per-output constants and valid travel beside the product to the stage that uses them.
        amount = delay(m, (self.shift - SHIFT_MIN)[:(SHIFT_MAX - SHIFT_MIN).bit_length()], mul.latency, "amount")
        zero = delay(m, self.zero_point, mul.latency + 1, "zero")
        valid = delay(m, self.valid, mul.latency + 2, "valid")

        floored = Signal(signed(w.floored_bits))
        m.d.sync += floored.eq((mul.p >> (SHIFT_MIN - 1)) >> amount)

        value = Signal(signed(w.floored_bits))
        m.d.sync += value.eq((floored + (zero << 1) + 1) >> 1)

        m.d.sync += self.out.eq(Mux(value < w.q_min, w.q_min, Mux(value > w.q_max, w.q_max, value)))
        m.d.sync += self.out_valid.eq(valid)
        return m
