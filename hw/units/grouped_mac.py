"""Grouped-scale MAC lane: one output channel of a linear/conv layer with uniform or CAG inputs.

Per cycle one (activation code, signed weight, group) triple: the group's activation zero point is
subtracted, the product goes to that group's partial sum, and after the last term the partials are
combined as bias + sum_g m_g P_g (see ``combine``). The result equals
``sw.ref.layers.linear_accumulator`` (``conv_accumulator`` for convs) for that output channel.

Ports (widths from ``hw.widths.MacWidths``; a = activation bits, b = weight bits):

    in   valid, first, last     stream control (see ``combine``)
    in   code        unsigned(a)        activation code
    in   weight      signed(b + 1)      code_w - z_w of this output channel
    in   group       unsigned           CAG group of the code's channel (< groups; ignored if 1 group)
    in   zero_points [groups] unsigned(a)   per-group activation zero point (the layer's z for uniform)
    in   multipliers [groups] unsigned(M)   group multipliers m_g
    in   bias        signed(B)          bias_acc of this output channel, sampled with the last term
    out  acc         signed(acc_bits)   the accumulator, valid while/after ``done``
    out  done        1                  one cycle, ``latency`` = 2 + the combine's latency after the last term

The lane adds two register stages (operands, then the term) in front of the group accumulator.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..widths import MacWidths, gemm_widths
from .combine import TERM_STAGES, GroupAccumulator, connect_accumulator, pe_timing
from .pipeline import delay
from .shift_add import shift_add_multiply


class GroupedMacLane(wiring.Component):
    def __init__(self, widths: MacWidths):
        self.widths = widths
        groups = widths.groups
        self.accumulator = GroupAccumulator(widths)
        self.latency, self.min_interval = pe_timing(widths)
        super().__init__({
            "valid": In(1), "first": In(1), "last": In(1),
            "code": In(unsigned(widths.act_bits)),
            "weight": In(signed(widths.weight_bits + 1)),
            "group": In(unsigned(max(1, (groups - 1).bit_length()))),
            "zero_points": In(data.ArrayLayout(unsigned(widths.act_bits), groups)),
            "multipliers": In(data.ArrayLayout(unsigned(widths.mult_bits), groups)),
            "bias": In(signed(widths.bias_bits)),
            "acc": Out(signed(widths.acc_bits)),
            "done": Out(1),
        })

    timing = staticmethod(pe_timing)

    @classmethod
    def from_layer(cls, layer) -> "GroupedMacLane":
        widths = gemm_widths(layer)
        if not isinstance(widths, MacWidths):
            raise ValueError(f"layer '{layer.name}' has {layer.input.TAG} inputs; use HluqPE")
        return cls(widths)

    def elaborate(self, platform):
        m = Module()
        m.submodules.accumulator = acc = self.accumulator
        groups = self.widths.groups
        if groups == 1:
            zero_point = self.zero_points[0]
        else:
            zero_point = Array(self.zero_points[g] for g in range(groups))[self.group]
        # Two stages, so that the zero-point select and subtraction and the shift-add tree are not
        # one path: the operands, then the term.
        operand = Signal(signed(self.widths.act_bits + 1))
        weight = Signal.like(self.weight)
        m.d.sync += [operand.eq(self.code - zero_point), weight.eq(self.weight)]
        term = Signal(signed(self.widths.term_bits))
        m.d.sync += term.eq(shift_add_multiply(operand, weight))
        group = delay(m, self.group, TERM_STAGES, "group")
        connect_accumulator(m, self, acc)
        for g in range(groups):
            m.d.comb += acc.terms[g].eq(term if groups == 1 else Mux(group == g, term, 0))
        return m
