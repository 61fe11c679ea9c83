"""HLUQ processing element: one output channel of a linear layer whose inputs are HLUQ codes.

A k-bit code c with L log levels contributes (sw.ref.kernels.hluq_terms):

    c = 0          nothing
    1 <= c <= L    log path      w << (c - 1)
    c > L          log path      w << (L - 1)   and   uniform path  (c - L) * w

The log path is a barrel shift and the uniform path a shift-add product with a (k-1)-bit operand,
so the PE needs no hard multiplier per term. The two partials are combined as
bias + m_log P_log + m_uni P_uni (``combine``; bias_acc already holds the per-output constant
m * sum w), equal to ``sw.ref.layers.linear_accumulator`` for that output channel.

Ports (widths from ``hw.widths.HluqWidths``; b = weight bits):

    in   valid, first, last     stream control (see ``combine``)
    in   code        unsigned(k)        HLUQ activation code
    in   weight      signed(b + 1)      code_w - z_w of this output channel
    in   multipliers [2] unsigned(M)    group_multiplier: [m_log, m_uni]
    in   bias        signed(B)          bias_acc, sampled with the last term
    out  acc         signed(acc_bits)   valid while/after ``done``
    out  done        1                  one cycle, ``latency`` = 2 + the combine's latency after the last term
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..widths import HluqWidths, gemm_widths
from .combine import GroupAccumulator, connect_accumulator, pe_timing
from .shift_add import shift_add_multiply


class HluqPE(wiring.Component):
    def __init__(self, widths: HluqWidths):
        self.widths = widths
        self.accumulator = GroupAccumulator(widths)
        self.latency, self.min_interval = pe_timing(widths)
        super().__init__({
            "valid": In(1), "first": In(1), "last": In(1),
            "code": In(unsigned(widths.act_bits)),
            "weight": In(signed(widths.weight_bits + 1)),
            "multipliers": In(data.ArrayLayout(unsigned(widths.mult_bits), 2)),
            "bias": In(signed(widths.bias_bits)),
            "acc": Out(signed(widths.acc_bits)),
            "done": Out(1),
        })

    timing = staticmethod(pe_timing)

    @classmethod
    def from_layer(cls, layer) -> "HluqPE":
        widths = gemm_widths(layer)
        if not isinstance(widths, HluqWidths):
            raise ValueError(f"layer '{layer.name}' has {layer.input.TAG} inputs; use GroupedMacLane")
        return cls(widths)

    def elaborate(self, platform):
        m = Module()
        m.submodules.accumulator = acc = self.accumulator
        w = self.widths
        levels, code, weight = w.log_levels, self.code, self.weight

        # Two stages, so that the code decode and the shift / shift-add are not one path: the decoded
        # operands, then the terms.
        uniform, log_on = Signal(), Signal()
        shift = Signal(max(1, (levels - 1).bit_length()))
        weight_1 = Signal.like(weight)
        m.d.sync += [uniform.eq(code > levels), log_on.eq(code != 0), weight_1.eq(weight),
                     shift.eq(Mux(code > levels, levels - 1, code - 1))]
        log_term = Mux(log_on, weight_1 << shift, 0)
        if w.uniform_max:
            operand = Signal(w.uniform_max.bit_length())
            m.d.sync += operand.eq(code - levels)
            uniform_term = Mux(uniform, shift_add_multiply(operand, weight_1), 0)
        else:  # L = 2^k - 1: every nonzero code is a log code
            uniform_term = Const(0, 1)

        log_reg = Signal(signed(w.term_bits))
        uniform_reg = Signal(signed(w.term_bits))
        m.d.sync += [log_reg.eq(log_term), uniform_reg.eq(uniform_term)]
        connect_accumulator(m, self, acc)
        m.d.comb += [acc.terms[0].eq(log_reg), acc.terms[1].eq(uniform_reg)]
        return m
