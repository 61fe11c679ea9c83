"""Where a segment that starts at an arbitrary reduction index begins: (d, i, c) and the ACT offsets.

The issue loop walks j = (c n_i + i) n_d + d by counting d and i, so a segment that starts where the
previous one ended, or at 0, needs nothing. Any other start (allowed by the descriptor, emitted by no
compiler path we know) is computed once per GEMM by this unit, sequentially, with no hard multiplier:

    16 steps   j = q1 n_d + d0          (restoring division)
    16 steps   q1 = c0 n_i + i0
    16 steps   off_c = c0 as_c,  i0 as_i,  d0 as_d   (shift-add, modulo 2^24)
     1 step    off_i = off_c + i0 as_i,  off_d = off_i + d0 as_d

``busy`` is high from the cycle after ``start`` for ``CYCLES`` cycles; the results hold afterwards.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .isa import DescActStrides, DescLoops, Segment
from .layouts import field_width

J_BITS = field_width(Segment, "j_start")
IDX_BITS = field_width(DescLoops, "n_d")
OFF_BITS = field_width(DescActStrides, "c")
STEPS = J_BITS
CYCLES = 3 * STEPS + 1


class SegmentStart(wiring.Component):
    def __init__(self):
        super().__init__({
            "start": In(1), "j": In(J_BITS), "n_d": In(IDX_BITS), "n_i": In(IDX_BITS),
            "s_c": In(signed(OFF_BITS)), "s_i": In(signed(OFF_BITS)), "s_d": In(signed(OFF_BITS)),
            "busy": Out(1),
            "d0": Out(IDX_BITS), "i0": Out(IDX_BITS),
            "off_c": Out(OFF_BITS), "off_i": Out(OFF_BITS), "off_d": Out(OFF_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        phase = Signal(range(4))     # 0: divide by n_d, 1: by n_i, 2: multiply, 3: sums
        step = Signal(range(STEPS))
        rem, quo = Signal(IDX_BITS + 1), Signal(J_BITS)
        divisor = Mux(phase == 0, self.n_d, self.n_i)
        shifted = Cat(quo[-1], rem[:IDX_BITS])
        fits = shifted >= divisor
        acc_c, acc_i, acc_d = (Signal(OFF_BITS, name=n) for n in ("acc_c", "acc_i", "acc_d"))
        # multiplicands, most significant bit first (i0 and d0 zero-extended to the same 16 steps)
        mc, mi, md = (Signal(J_BITS, name=n) for n in ("mc", "mi", "md"))

        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), phase.eq(0), step.eq(0), rem.eq(0), quo.eq(self.j)]
        with m.Elif(self.busy):
            m.d.sync += step.eq(step + 1)
            with m.If(phase < 2):
                m.d.sync += [rem.eq(Mux(fits, shifted - divisor, shifted)), quo.eq(Cat(fits, quo[:-1]))]
                with m.If(step == STEPS - 1):
                    m.d.sync += [phase.eq(phase + 1), step.eq(0)]
                    with m.If(phase == 0):   # the quotient becomes the next dividend
                        m.d.sync += [self.d0.eq(Mux(fits, shifted - divisor, shifted)), rem.eq(0),
                                     quo.eq(Cat(fits, quo[:-1]))]
                    with m.Else():
                        i0 = Mux(fits, shifted - divisor, shifted)
                        m.d.sync += [self.i0.eq(i0), mc.eq(Cat(fits, quo[:-1])), mi.eq(i0), md.eq(self.d0),
                                     acc_c.eq(0), acc_i.eq(0), acc_d.eq(0)]
            with m.Elif(phase == 2):   # acc = 2 acc + bit * stride, shifting the multiplicands
                m.d.sync += [acc_c.eq((acc_c << 1) + Mux(mc[-1], self.s_c, 0)),
                             acc_i.eq((acc_i << 1) + Mux(mi[-1], self.s_i, 0)),
                             acc_d.eq((acc_d << 1) + Mux(md[-1], self.s_d, 0)),
                             mc.eq(mc << 1), mi.eq(mi << 1), md.eq(md << 1)]
                with m.If(step == STEPS - 1):
                    m.d.sync += phase.eq(3)
            with m.Else():
                m.d.sync += [self.off_c.eq(acc_c), self.off_i.eq(acc_c + acc_i), self.off_d.eq(acc_c + acc_i + acc_d),
                             self.busy.eq(0)]
        return m
