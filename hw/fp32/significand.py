"""24 x 24 unsigned significand product from three ECP5 hard multipliers and a small fabric one.

Each operand is cut into an 18-bit low piece and a 6-bit high piece. A MULT18X18D multiplies
unsigned 18-bit operands (yosys sets SIGNEDA/SIGNEDB from the ``$mul``'s signedness: an unsigned
18 x 18 ``$mul`` maps to one MULT18X18D, checked with yosys 0.70), so low x low, low x high and
high x low take one each. The 6 x 6 high x high product is built from shifts and adds in LUTs,
because yosys would spend a fourth MULT18X18D on it (it maps every ``$mul``, hardware.md §5.1): the
fourth multiplier that hw.units.dsp_multiply.PipelinedMultiplier's signed-safe 17-bit cut needs is
a quarter of an FP32 lane's DSP budget.

Pipeline (every stage registered, no path through more than one multiplier or one adder):
piece products; then low x low joined with high x high (they do not overlap: a concatenation) and
the two cross products summed; then the cross sum added at bit 18.

Ports:

    in   a, b   24
    out  p      48    a * b of the operands ``latency`` (3) cycles earlier; a new pair every cycle
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..units.pipeline import delay
from ..units.shift_add import shift_add_multiply
from .format import SIG_BITS

LOW_BITS = 18  # one MULT18X18D operand, unsigned mode
DSP_COUNT = 3


class SignificandMultiplier(wiring.Component):
    latency = 3

    def __init__(self):
        super().__init__({"a": In(SIG_BITS), "b": In(SIG_BITS), "p": Out(2 * SIG_BITS)})

    def elaborate(self, platform):
        m = Module()
        a_lo, a_hi = self.a[:LOW_BITS], self.a[LOW_BITS:]
        b_lo, b_hi = self.b[:LOW_BITS], self.b[LOW_BITS:]
        low = delay(m, a_lo * b_lo, 1, "low")
        cross_a = delay(m, a_lo * b_hi, 1, "cross_a")
        cross_b = delay(m, a_hi * b_lo, 1, "cross_b")
        high = delay(m, shift_add_multiply(a_hi, b_hi), 1, "high")
        # low x low fills bits 0-35 and high x high bits 36-47: joined without an adder.
        outer = delay(m, Cat(low, high), 1, "outer")
        cross = delay(m, cross_a + cross_b, 1, "cross")
        upper = outer[LOW_BITS:] + cross
        m.d.comb += self.p.eq(delay(m, Cat(outer[:LOW_BITS], upper)[:2 * SIG_BITS], 1, "product"))
        return m
