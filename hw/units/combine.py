"""Per-group partial sums and their once-per-output combination: acc = bias + sum_g m_g * P_g.

This is the back half of the grouped MAC lane (one partial per CAG group) and of the HLUQ PE (log and
uniform partials): sw.ref.kernels.combine_partials plus the layer's bias_acc.

Stream protocol, one set of G terms per cycle:

* ``valid``: ``terms[g]`` is added to partial g this cycle;
* ``first`` (with ``valid``): this term set starts a new output (the partials restart from it);
* ``last`` (with ``valid``): this term set ends the output; ``bias`` is sampled with it.

The combine works on a snapshot of the partials with one multiplier, one group per cycle, so the next
output's terms can stream in while it runs. If the last term set is presented in cycle t, ``done`` is
high for one cycle in cycle t + ``latency`` (G + 3) and ``acc`` holds that output until the next
``done``. The next output's last term set may come in cycle t + ``min_interval`` (G + 1) at the
earliest; the group multipliers must stay put until ``done``.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..widths import CombineWidths


class GroupAccumulator(wiring.Component):
    def __init__(self, widths: CombineWidths):
        self.widths = widths
        groups = widths.groups
        self.latency = groups + 3
        self.min_interval = groups + 1
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
        total = Signal(signed(w.acc_bits))
        selected = snapshot[index] * multipliers[index]  # the one hard multiplier of the unit
        product = Signal(selected.shape())
        product_valid, product_last = Signal(), Signal()

        m.d.sync += [product_valid.eq(running), product_last.eq(running & (index == groups - 1))]
        with m.If(running):
            m.d.sync += [product.eq(selected), index.eq(index + 1)]
            with m.If(index == groups - 1):
                m.d.sync += running.eq(0)

        # The final sum goes straight to the output register, so a new load may reset total meanwhile.
        m.d.sync += self.done.eq(product_valid & product_last)
        with m.If(product_valid & product_last):
            m.d.sync += self.acc.eq(total + product)
        with m.Elif(product_valid):
            m.d.sync += total.eq(total + product)

        with m.If(load):
            m.d.sync += [s.eq(p) for s, p in zip(snapshot, partials)]
            m.d.sync += [total.eq(bias), index.eq(0), running.eq(1)]
        return m
