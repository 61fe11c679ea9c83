"""float32 adder, round to nearest even, bit-exact with numpy's ``np.float32(x) + np.float32(y)`` for
every non-NaN result (NaN results are the canonical NaN, see hw/fp32/__init__.py).

Pipeline (``latency`` = 6, one new pair every cycle):

    1  order by magnitude (the 31 low bits of a float32 compare as an integer), exponent difference
    2  align the smaller significand: three extra bits (guard, round, sticky) are enough for round to
       nearest even, because an exponent difference of 2 or more cancels at most one leading bit and a
       smaller one shifts out nothing that the extra bits do not hold exactly
    3  add or subtract the significands; beside it, a marker bit where the normalizing shift must stop
       so the exponent stays >= 1 (a sum below the normal range is exact and comes out as a subnormal
       without a denormalizing shift)
    4  leading zeros of the sum with the marker OR-ed in: the limited shift without a comparison
    5  normalizing shift, exponent of the hidden bit
    6  RoundPack (no denormalize)

An exact zero sum is +0 unless both operands are -0 (IEEE 754 §6.3, round to nearest).

Ports:

    in   x, y   32   float32 words
    out  s      32   float32 word of x + y, ``latency`` cycles after the operands
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..units.pipeline import delay
from .bits import leading_zeros, shift_left, shift_right_sticky
from .format import SIG_BITS, WORD_BITS, unpack
from .round import RoundPack, feed_registered

EXTRA = 3  # guard, round, sticky
ALIGNED_BITS = SIG_BITS + EXTRA
SUM_BITS = ALIGNED_BITS + 1  # carry of an addition


class Fp32Adder(wiring.Component):
    def __init__(self):
        self.rounder = RoundPack(sticky_bits=EXTRA, denormalize=False)
        self.latency = 5 + self.rounder.latency
        super().__init__({"x": In(WORD_BITS), "y": In(WORD_BITS), "s": Out(WORD_BITS)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.rounder = rnd = self.rounder
        x, y = unpack(self.x), unpack(self.y)

        # 1: big has the larger magnitude, so the difference of significands is never negative.
        swap = self.y[:WORD_BITS - 1] > self.x[:WORD_BITS - 1]
        big, small = unpack(delay(m, Mux(swap, self.y, self.x), 1, "big")), \
            unpack(delay(m, Mux(swap, self.x, self.y), 1, "small"))
        shift = delay(m, Mux(swap, y.exp - x.exp, x.exp - y.exp)[:8], 1, "align_shift")
        side = {"nan": x.is_nan | y.is_nan | (x.is_inf & y.is_inf & (x.sign ^ y.sign)),
                "inf": x.is_inf | y.is_inf, "zero_sign": x.sign & y.sign}
        side = {name: delay(m, value, 1, name) for name, value in side.items()}
        side.update(big_sign=big.sign, exp=big.exp, subtract=big.sign ^ small.sign)

        # 2
        aligned, lost = shift_right_sticky(Cat(Const(0, EXTRA), small.sig), shift)
        aligned = delay(m, aligned | lost, 1, "aligned")
        big_sig = delay(m, Cat(Const(0, EXTRA), big.sig), 1, "big_sig")
        side = {name: delay(m, value, 1, name) for name, value in side.items()}

        # 3: the sum's bit SUM_BITS - 1 (the carry) stands for exponent exp + 1, so a shift by more
        # than exp would take the exponent below 1; the marker stops the count there.
        total = delay(m, Mux(side["subtract"], big_sig - aligned, big_sig + aligned)[:SUM_BITS], 1, "total")
        marker = delay(m, (Const(1 << (SUM_BITS - 1), SUM_BITS) >> side["exp"]), 1, "marker")
        side = {name: delay(m, value, 1, name) for name, value in side.items()}

        # 4
        limited, _ = leading_zeros(total | marker)
        limited = delay(m, limited, 1, "norm_shift")
        zero = ~total.any()
        sign = delay(m, Mux(zero, side["zero_sign"], side["big_sign"]), 1, "sum_sign")
        zero = delay(m, zero, 1, "sum_zero")
        total = delay(m, total, 1, "sum")
        side = {name: delay(m, value, 1, name) for name, value in side.items()}

        # 5
        normalized = shift_left(total, limited)
        kept = SUM_BITS - SIG_BITS
        feed_registered(m, rnd, sign=sign, exp=side["exp"] + 1 - limited, sig=normalized[kept:],
                        guard=normalized[kept - 1], sticky=normalized[:kept - 1], force_nan=side["nan"],
                        force_inf=side["inf"], force_zero=zero)
        m.d.comb += self.s.eq(rnd.result)
        return m
