"""float32 multiplier, round to nearest even, bit-exact with numpy's ``np.float32(a) * np.float32(b)``
for every non-NaN result (NaN results are the canonical NaN, see hw/fp32/__init__.py).

Pipeline (``latency`` = 9, one new pair every cycle):

    1    significands with their hidden bits, so the hard multipliers start from registers
    2-4  significand product (SignificandMultiplier: 3 MULT18X18D), exponents and specials beside it
    5    leading zeros of the 48-bit product (more than one only with a subnormal operand)
    6    normalizing shift, exponent of the hidden bit
    7-9  RoundPack with denormalize: products below the normal range become subnormals or zeros

Ports:

    in   a, b   32   float32 words
    out  p      32   float32 word of a * b, ``latency`` cycles after the operands
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..units.pipeline import delay
from .bits import leading_zeros, shift_left
from .format import BIAS, SIG_BITS, WORD_BITS, unpack
from .round import RoundPack, feed_registered
from .significand import SignificandMultiplier

PRODUCT_BITS = 2 * SIG_BITS
KEPT = PRODUCT_BITS - SIG_BITS  # bit of the normalized product where the kept significand starts


class Fp32Multiplier(wiring.Component):
    rounder_class = RoundPack  # the tests swap in a wrong rounding rule to show they catch it

    def __init__(self):
        self.significands = SignificandMultiplier()
        self.rounder = self.rounder_class(sticky_bits=KEPT - 1, denormalize=True)
        self.latency = 1 + self.significands.latency + 2 + self.rounder.latency
        super().__init__({"a": In(WORD_BITS), "b": In(WORD_BITS), "p": Out(WORD_BITS)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.significands = sig = self.significands
        m.submodules.rounder = rnd = self.rounder
        a, b = unpack(self.a), unpack(self.b)
        m.d.comb += [sig.a.eq(delay(m, a.sig, 1, "sig_a")), sig.b.eq(delay(m, b.sig, 1, "sig_b"))]

        side = {"sign": a.sign ^ b.sign, "exp_sum": a.exp + b.exp,
                "nan": a.is_nan | b.is_nan | (a.is_inf & b.is_zero) | (a.is_zero & b.is_inf),
                "inf": a.is_inf | b.is_inf, "zero": a.is_zero | b.is_zero}
        side = {name: delay(m, value, 1 + sig.latency + 1, name) for name, value in side.items()}

        lz, _ = leading_zeros(sig.p)  # a nonzero product unless an operand is zero (flagged above)
        lz = delay(m, lz, 1, "lz")
        product = delay(m, sig.p, 1, "product")

        # The hidden bit lands on bit 47; the product of the effective exponents and significands is
        # p * 2^(ea + eb - 2*127 - 46), so the hidden bit's biased exponent is ea + eb - 126 - lz.
        normalized = shift_left(product, lz)
        feed_registered(m, rnd, sign=side["sign"], exp=side["exp_sum"] - (BIAS - 1) - lz,
                        sig=normalized[KEPT:], guard=normalized[KEPT - 1], sticky=normalized[:KEPT - 1],
                        force_nan=side["nan"], force_inf=side["inf"], force_zero=side["zero"])
        m.d.comb += self.p.eq(rnd.result)
        return m
