"""Per-column constants: prefetch of each column block's K constant slots, and where they are held.

A GEMM's column block (b, ob) has K slots at ``col_base + b*col_b + ob*col_ob + k``. The prefetcher
reads them in ``slot_reads`` = ceil(K / slots_per_word) PARAM reads (the slot banks deliver
``slots_per_word`` consecutive slots at any alignment) into the *staging* registers, block after block
in loop order, each as soon as staging is free. Staging hands its two parts on separately:

- the column operand zero points go to the array's ``zp`` registers just before the block's first
  term reaches the column decode (``take_zp``); from that term's issue (``claim``) staging is not
  ``ready`` for another block;
- the lanes' part (bias, multiplier, shift, out_zero_point) goes to the lanes' F0 registers when the
  lanes start the block's first output pass (``f0_load``). A raw GEMM has no lane part.

A prefetch starts when both parts of the previous block are gone; staging is ``ready`` (for the
array's first term of the block) in the cycle after its last read's data arrives.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import SLOT_BITS, CoreConfig
from .isa import ColumnSlot, DescOtherStrides, Gemm
from .lane import column_constants_layout
from .layouts import field_width, layout_of
from .params import CoreParams

SLOT_ADDR_BITS = 16


class ColumnConstants(wiring.Component):
    def __init__(self, config: CoreConfig):
        self.config, self.params = config, CoreParams(config)
        p = self.params
        k, spw = config.cols, p.slots_per_word
        super().__init__({
            "run_start": In(1),
            "arm": In(1),                      # a GEMM's blocks, from its setup (after the descriptor reads)
            "arm_col_base": In(field_width(Gemm, "col_base")),
            "arm_col_b": In(signed(field_width(DescOtherStrides, "col_b"))),
            "arm_col_ob": In(signed(field_width(DescOtherStrides, "col_ob"))),
            "arm_n_batch": In(16), "arm_n_ob": In(16), "arm_empty": In(1), "arm_raw": In(1),
            "param_addr": Out(p.word_addr_bits["param"]).array(spw), "param_data": In(SLOT_BITS).array(spw),
            "reading": Out(1),
            "ready": Out(1), "claim": In(1), "take_zp": In(1), "f0_load": In(1),
            "zp": Out(8).array(k), "f0": Out(column_constants_layout()).array(k),
        })

    def elaborate(self, platform):
        m = Module()
        p, cfg = self.params, self.config
        k, spw, reads = cfg.cols, p.slots_per_word, p.slot_reads
        lg = spw.bit_length() - 1
        slot_layout = layout_of(ColumnSlot)

        # ---- which block comes next --------------------------------------------------------------
        left, raw = Signal(name="left"), Signal(name="raw")
        b, ob, n_batch, n_ob = (Signal(16, name=n) for n in ("b", "ob", "n_batch", "n_ob"))
        col_b, col_ob, base_b, cur = (Signal(SLOT_ADDR_BITS, name=n) for n in ("col_b", "col_ob", "base_b", "cur"))

        # ---- staging ------------------------------------------------------------------------------
        staging = [Signal(slot_layout, name=f"staging{i}") for i in range(reads * spw)]
        zp_valid, lane_valid = Signal(name="zp_valid"), Signal(name="lane_valid")
        claimed = Signal(name="claimed")   # the array has issued the block's first term
        reading, count = Signal(name="reading"), Signal(range(max(reads, 2)), name="count")
        arriving, last_arrival = Signal(name="arriving"), Signal(name="last_arrival")
        begin = left & ~reading & ~arriving & ~zp_valid & ~lane_valid & ~self.arm
        read_now = begin | reading          # a block's reads are back to back from ``begin``
        index = Mux(reading, count, 0)

        with m.If(self.run_start):
            m.d.sync += [left.eq(0), reading.eq(0), arriving.eq(0), zp_valid.eq(0), lane_valid.eq(0)]
        with m.Else():
            # Arming the next GEMM's blocks must not swallow what the previous GEMM's last block does in
            # the same cycle (its lanes taking their part, ``f0_load``): staging would stay full and the
            # next block's prefetch would never begin.
            with m.If(self.arm):
                m.d.sync += [left.eq(~self.arm_empty), raw.eq(self.arm_raw), b.eq(0), ob.eq(0),
                             n_batch.eq(self.arm_n_batch), n_ob.eq(self.arm_n_ob),
                             col_b.eq(self.arm_col_b), col_ob.eq(self.arm_col_ob),
                             base_b.eq(self.arm_col_base), cur.eq(self.arm_col_base)]
            with m.Elif(read_now):
                m.d.sync += [reading.eq(index != reads - 1), count.eq(index + 1)]
                with m.If(index == reads - 1):
                    # the block is read: step to the next one in (b, ob) order
                    with m.If(ob + 1 == n_ob):
                        m.d.sync += [ob.eq(0), b.eq(b + 1), base_b.eq(base_b + col_b), cur.eq(base_b + col_b),
                                     left.eq(b + 1 != n_batch)]
                    with m.Else():
                        m.d.sync += [ob.eq(ob + 1), cur.eq(cur + col_ob)]
            with m.If(last_arrival):
                m.d.sync += [zp_valid.eq(1), lane_valid.eq(~raw)]
            with m.If(self.claim):
                m.d.sync += claimed.eq(1)
            with m.If(self.take_zp):
                m.d.sync += [zp_valid.eq(0), claimed.eq(0)]
            with m.If(self.f0_load):
                m.d.sync += lane_valid.eq(0)
        m.d.sync += [arriving.eq(read_now & ~self.run_start),
                     last_arrival.eq(read_now & (index == reads - 1) & ~self.run_start)]

        # The run of slots [s, s + spw) sits in bank (s + j) mod spw at index (s + j) >> lg.
        start = cur + (index << lg)
        offset = start[:lg] if lg else 0
        for bank in range(spw):
            m.d.comb += self.param_addr[bank].eq((start >> lg) + (bank < offset if lg else 0))
        m.d.comb += self.reading.eq(read_now)
        offset_then = Signal(max(lg, 1))
        m.d.sync += offset_then.eq(offset)
        banks = Array(self.param_data)
        run = [banks[(offset_then + j)[:lg]] if lg else self.param_data[0] for j in range(spw)]
        with m.If(arriving):
            for i in range(len(staging)):
                source = staging[i + spw] if i + spw < len(staging) else run[i + spw - len(staging)]
                m.d.sync += staging[i].eq(source)

        m.d.comb += self.ready.eq(zp_valid & ~claimed)
        for col in range(k):
            with m.If(self.take_zp):
                m.d.sync += self.zp[col].eq(staging[col].zero_point)
            with m.If(self.f0_load):
                m.d.sync += [self.f0[col].bias.eq(staging[col].bias), self.f0[col].multiplier.eq(staging[col].multiplier),
                             self.f0[col].shift.eq(staging[col].shift),
                             self.f0[col].out_zero_point.eq(staging[col].out_zero_point)]
        return m
