"""Per-group partial sums and their once-per-output combination: acc = bias + sum_g m_g * P_g.

This is the back half of the grouped MAC lane (one partial per CAG group) and of the HLUQ PE (log and
uniform partials): sw.ref.kernels.combine_partials plus the layer's bias_acc.

Stream protocol, one set of G terms per cycle:

* ``valid``: ``terms[g]`` is added to partial g this cycle;
* ``first`` (with ``valid``): this term set starts a new output (the partials restart from it);
* ``last`` (with ``valid``): this term set ends the output; ``bias`` is sampled with it.

The combine works on a snapshot of the partials, one group per cycle, so the next output's terms can
stream in while it runs. Each step is its own register stage, so that at 100 MHz on ECP5 no path
holds more than one of: the group select, a hard multiplier, an adder:

    load       snapshot <- partials, bias held                      (1 cycle after the last term)
    select     P_g, m_g of group g = 0..G-1 into operand registers  (G cycles)
    multiply   m_g * P_g in MULT18X18D pieces (``dsp_multiply``)   (``multiplier.latency`` cycles)
    accumulate total <- (bias if g = 0 else total) + product; after group G-1 into ``acc``

If the last term set is presented in cycle t, ``done`` is high for one cycle in cycle t + ``latency``
(G + 3 + multiplier latency) and ``acc`` holds that output until the next ``done``. The next output's
last term set may come in cycle t + ``min_interval`` at the earliest: after the group loop has read
the snapshot (G + 1) and after the first product has taken the held bias; the group multipliers must
stay put until ``done``.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..widths import CombineWidths
from .dsp_multiply import PipelinedMultiplier, multiplier_latency
from .pipeline import delay


def _operand_shapes(widths: CombineWidths):
    return signed(widths.partial_bits), unsigned(widths.mult_bits)


def combine_timing(widths: CombineWidths) -> tuple[int, int]:
    """(latency, min_interval) of a ``GroupAccumulator`` with these widths."""
    bias_read = 3 + multiplier_latency(*_operand_shapes(widths))  # last term to the first accumulate
    return widths.groups + bias_read, max(widths.groups + 1, bias_read)


TERM_STAGES = 2  # the PEs' register stages in front of the accumulator: operands, then terms


def pe_timing(widths: CombineWidths) -> tuple[int, int]:
    """(latency, min_interval) of a PE that feeds a ``GroupAccumulator`` through TERM_STAGES registers."""
    latency, min_interval = combine_timing(widths)
    return TERM_STAGES + latency, min_interval


def connect_accumulator(m: Module, pe: wiring.Component, acc: "GroupAccumulator") -> None:
    """A PE's stream controls and bias into its accumulator, late enough to arrive with its terms; the
    group multipliers in and the result out."""
    for name in ("valid", "first", "last", "bias"):
        m.d.sync += getattr(acc, name).eq(delay(m, getattr(pe, name), TERM_STAGES - 1, name))
    m.d.comb += [acc.multipliers.eq(pe.multipliers), pe.acc.eq(acc.acc), pe.done.eq(acc.done)]


class GroupAccumulator(wiring.Component):
    def __init__(self, widths: CombineWidths):
        self.widths = widths
        groups = widths.groups
        self.multiplier = PipelinedMultiplier(*_operand_shapes(widths))
        self.latency, self.min_interval = combine_timing(widths)
        super().__init__({
            "valid": In(1), "first": In(1), "last": In(1),
            "terms": In(data.ArrayLayout(signed(widths.term_bits), groups)),
            "multipliers": In(data.ArrayLayout(unsigned(widths.mult_bits), groups)),
            "bias": In(signed(widths.bias_bits)),
            "acc": Out(signed(widths.acc_bits)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        w, groups = self.widths, self.widths.groups
        partials = [Signal(signed(w.partial_bits), name=f"partial{g}") for g in range(groups)]
        with m.If(self.valid):
            for g, partial in enumerate(partials):
                m.d.sync += partial.eq(Mux(self.first, 0, partial) + self.terms[g])

        # Registered so the snapshot below sees the partials with the last terms already added.
        load = Signal()
        bias = Signal(signed(w.bias_bits))
        m.d.sync += load.eq(self.valid & self.last)
        with m.If(self.valid & self.last):
            m.d.sync += bias.eq(self.bias)

        snapshot = Array(Signal(signed(w.partial_bits), name=f"snapshot{g}") for g in range(groups))
        multipliers = Array(self.multipliers[g] for g in range(groups))
        index = Signal(range(max(groups, 2)))
        running = Signal()
        with m.If(load):
            m.d.sync += [s.eq(p) for s, p in zip(snapshot, partials)]
            m.d.sync += [index.eq(0), running.eq(1)]
        with m.Elif(running):
            m.d.sync += index.eq(index + 1)
            with m.If(index == groups - 1):
                m.d.sync += running.eq(0)

        m.submodules.multiplier = mul = self.multiplier
        m.d.sync += [mul.a.eq(snapshot[index]), mul.b.eq(multipliers[index])]
        # Step flags travel beside the operands: (valid, first group, last group).
        flags = delay(m, Cat(running, running & (index == 0), running & (index == groups - 1)), 1 + mul.latency,
                      "step")
        step_valid, step_first, step_last = flags[0], flags[1], flags[2]

        total = Signal(signed(w.acc_bits))
        total_next = Mux(step_first, bias, total) + mul.p
        m.d.sync += self.done.eq(step_valid & step_last)
        with m.If(step_valid):
            m.d.sync += total.eq(total_next)
            with m.If(step_last):
                m.d.sync += self.acc.eq(total_next)
        return m
