"""FP32 multiply-add lanes: the multiplier feeding the adder, two roundings, as numpy computes
``np.float32(acc) + np.float32(a) * np.float32(b)`` (the product is rounded to float32, then the sum;
no fused multiply-add).

``Fp32MulAdd`` streams independent triples:

    in   a, b, acc   32
    out  sum         32   acc + a * b of the operands ``latency`` = 15 cycles earlier; one per cycle

``Fp32MacLane`` accumulates, as an FP32 GEMM accumulating in float32 does: the adder's output is fed
back to its own input. The adder takes ``interleave`` (its latency, 6) cycles, so the lane keeps
``interleave`` independent accumulations in flight, one per slot of the adder pipeline: a term
issued in cycle t belongs to slot t mod ``interleave``, and the next term of the same accumulation
is issued ``interleave`` cycles later (or any multiple: a slot without a valid term adds -0, which
leaves every sum as it is, -0 + -0 included). A GEMM fills the slots with ``interleave`` different
outputs (rows or columns of an output tile), each summed in order, so every output equals the
sequential numpy float32 loop ``s = init; for k: s = s + a[k] * b[k]`` bit for bit.

    in   valid, first, last  1    a term; ``first`` starts a slot's sum from ``init``, ``last`` ends it
    in   a, b                32
    in   init                32   the starting value (e.g. 0.0 or a bias), sampled with ``first``
    out  sum                 32   the finished sum, while ``done``
    out  done                1    ``latency`` = 15 cycles after the term with ``last``

Throughput: one multiply-add per cycle per lane while ``interleave`` accumulations are in flight;
one per ``interleave`` cycles for a single accumulation alone. ``mac_lane_cycles`` is the cycle
count of a whole job.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..units.pipeline import delay
from .add import Fp32Adder
from .format import WORD_BITS, signed_zero
from .multiply import Fp32Multiplier

MULTIPLY_LATENCY = 9
ADD_LATENCY = 6
LANE_LATENCY = MULTIPLY_LATENCY + ADD_LATENCY
INTERLEAVE = ADD_LATENCY


def mac_lane_cycles(outputs: int, terms: int) -> int:
    """Cycles for one Fp32MacLane to produce ``outputs`` sums of ``terms`` products each, from the
    first term issued to the last ``done``: groups of INTERLEAVE outputs issue one term per cycle,
    round robin (a last, partial group still spends INTERLEAVE cycles per term), then the pipeline
    drains."""
    if outputs < 1 or terms < 1:
        raise ValueError(f"mac_lane_cycles needs outputs >= 1 and terms >= 1, got {outputs} and {terms}")
    groups = -(-outputs // INTERLEAVE)
    last_group = outputs - (groups - 1) * INTERLEAVE
    # The last term of the last group's last output is issued in cycle issue - 1 (0-based).
    issue = (groups - 1) * INTERLEAVE * terms + (terms - 1) * INTERLEAVE + last_group
    return issue + LANE_LATENCY


class Fp32MulAdd(wiring.Component):
    def __init__(self):
        self.multiplier, self.adder = Fp32Multiplier(), Fp32Adder()
        self.latency = self.multiplier.latency + self.adder.latency
        assert self.latency == LANE_LATENCY
        super().__init__({"a": In(WORD_BITS), "b": In(WORD_BITS), "acc": In(WORD_BITS), "sum": Out(WORD_BITS)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.multiplier = mul = self.multiplier
        m.submodules.adder = add = self.adder
        m.d.comb += [mul.a.eq(self.a), mul.b.eq(self.b),
                     add.x.eq(delay(m, self.acc, mul.latency, "acc")), add.y.eq(mul.p),
                     self.sum.eq(add.s)]
        return m


class Fp32MacLane(wiring.Component):
    def __init__(self):
        self.multiplier, self.adder = Fp32Multiplier(), Fp32Adder()
        self.interleave = self.adder.latency
        self.latency = self.multiplier.latency + self.adder.latency
        assert (self.interleave, self.latency) == (INTERLEAVE, LANE_LATENCY)
        super().__init__({"valid": In(1), "first": In(1), "last": In(1), "a": In(WORD_BITS), "b": In(WORD_BITS),
                          "init": In(WORD_BITS), "sum": Out(WORD_BITS), "done": Out(1)})

    cycles = staticmethod(mac_lane_cycles)

    def elaborate(self, platform):
        m = Module()
        m.submodules.multiplier = mul = self.multiplier
        m.submodules.adder = add = self.adder
        valid = delay(m, self.valid, mul.latency, "valid")
        first = delay(m, self.valid & self.first, mul.latency, "first")
        init = delay(m, self.init, mul.latency, "init")
        # The adder's output in this cycle is the slot's sum from ``interleave`` cycles ago.
        m.d.comb += [mul.a.eq(self.a), mul.b.eq(self.b),
                     add.x.eq(Mux(first, init, add.s)),
                     add.y.eq(Mux(valid, mul.p, signed_zero(1))),
                     self.sum.eq(add.s),
                     self.done.eq(delay(m, self.valid & self.last, self.latency, "done"))]
        return m
