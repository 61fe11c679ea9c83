"""The LOAD unit: external memory -> ACT / WGT / PARAM through the AXI read channels.

A LOAD taken in cycle t requests its first burst in t + 1 and one more per cycle while fewer than
``CoreParams.read_outstanding`` bursts are in flight; every beat is written to the buffer in the
cycle it arrives, and the LOAD finishes (signals, frees the unit) in the cycle of its last beat. With
the simulation memory that is cycle t + mem_read_latency + beats (t + 1 for an empty transfer).
SYNC finishes in the cycle it is taken; END stops the unit.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from .axi import BURST_INCR, size_code
from .config import CoreConfig
from .front import header, take_tokens, tokens_ready, track_end, unit_members
from .isa import Opcode, Transfer
from .layouts import view
from .params import CoreParams
from .transfer import BUF_BITS, BurstPlanner, RowWalker


class LoadUnit(wiring.Component):
    def __init__(self, config: CoreConfig):
        self.params = p = CoreParams(config)
        self.config = config
        super().__init__(unit_members() | {
            "araddr": Out(p.ext_byte_addr_bits), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2),
            "arvalid": Out(1), "arready": wiring.In(1),
            "rdata": wiring.In(config.bus_bits), "rlast": wiring.In(1), "rvalid": wiring.In(1), "rready": Out(1),
            "buffer": Out(2), "waddr": Out(BUF_BITS), "wdata": Out(config.bus_bits), "wen": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.planner = planner = BurstPlanner(p.boundary_words)
        m.submodules.walker = walker = RowWalker()
        h, t = header(self), view(Transfer, self.inst)
        busy, buffer, signal = Signal(), Signal(2), Signal()

        op = h.opcode
        m.d.comb += self.take.eq(self.inst_valid & ~busy & ~self.ended & tokens_ready(self))
        take_tokens(m, self)
        track_end(m, self, op == Opcode.END)
        start = self.take & (op == Opcode.LOAD)
        for unit in (planner, walker):
            m.d.comb += [unit.start.eq(start), unit.rows.eq(t.rows), unit.row_words.eq(t.row_words)]
        m.d.comb += [planner.ext_addr.eq(t.ext_addr), planner.ext_stride.eq(t.ext_stride),
                     walker.buf_addr.eq(t.buf_addr), walker.buf_stride.eq(t.buf_stride)]
        with m.If(start):
            m.d.sync += [busy.eq(1), buffer.eq(t.buffer), signal.eq(h.signal_next)]

        # Reads in flight: one more than the latency keeps the data stream gapless (params.py).
        outstanding = Signal(range(p.read_outstanding + 1))
        byte_bits = (self.config.bus_bits // 8).bit_length() - 1
        m.d.comb += [self.arvalid.eq(busy & planner.valid & (outstanding < p.read_outstanding)),
                     self.araddr.eq(planner.addr << byte_bits), self.arlen.eq(planner.len - 1),
                     self.arsize.eq(size_code(self.config.bus_bits)), self.arburst.eq(BURST_INCR),
                     planner.next.eq(self.arvalid & self.arready), self.rready.eq(1)]
        beat = self.rvalid & self.rready
        m.d.sync += outstanding.eq(outstanding + planner.next - (beat & self.rlast))

        m.d.comb += [self.buffer.eq(buffer), self.waddr.eq(walker.addr), self.wdata.eq(self.rdata),
                     self.wen.eq(beat), walker.step.eq(beat)]
        finish = busy & (~walker.valid | (beat & walker.last))
        with m.If(finish):
            m.d.sync += busy.eq(0)
        # A SYNC signals in the cycle it is taken, a LOAD in the cycle it finishes.
        sync_taken = self.take & (op != Opcode.LOAD) & (op != Opcode.END)
        m.d.comb += [self.signal_next.eq((finish & signal) | (sync_taken & h.signal_next)),
                     self.signal_prev.eq(0)]
        return m
