"""The STORE unit: OUT -> external memory through the AXI write channels.

A STORE taken in cycle t reads its first OUT word in t + 1 (synchronous read) and presents it in
t + 3; from then one beat per cycle while the slave is ready. A burst's address (AW) is presented with
its first beat. The STORE finishes (signals, frees the unit) in the cycle the response of its last
burst arrives: with the simulation memory t + 2 + beats + mem_write_latency (t + 1 when empty).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .axi import BURST_INCR, size_code
from .config import CoreConfig
from .front import header, take_tokens, tokens_ready, track_end, unit_members
from .isa import Opcode, Transfer
from .layouts import view
from .params import CoreParams
from .transfer import BUF_BITS, EXT_BITS, BurstPlanner, RowWalker


class StoreUnit(wiring.Component):
    def __init__(self, config: CoreConfig):
        self.params = p = CoreParams(config)
        self.config = config
        super().__init__(unit_members() | {
            "awaddr": Out(p.ext_byte_addr_bits), "awlen": Out(8), "awsize": Out(3), "awburst": Out(2),
            "awvalid": Out(1), "awready": In(1),
            "wdata": Out(config.bus_bits), "wstrb": Out(config.bus_bits // 8), "wlast": Out(1), "wvalid": Out(1),
            "wready": In(1), "bvalid": In(1), "bready": Out(1),
            "raddr": Out(BUF_BITS), "ren": Out(1), "rdata": In(config.bus_bits),   # OUT read port
        })

    def elaborate(self, platform):
        m = Module()
        p, bus = self.params, self.config.bus_bits
        m.submodules.planner = planner = BurstPlanner(p.boundary_words)
        m.submodules.walker = walker = RowWalker()
        h, t = header(self), view(Transfer, self.inst)
        busy, signal = Signal(), Signal()
        op = h.opcode
        m.d.comb += self.take.eq(self.inst_valid & ~busy & ~self.ended & tokens_ready(self))
        take_tokens(m, self)
        track_end(m, self, op == Opcode.END)
        start = self.take & (op == Opcode.STORE)
        for unit in (planner, walker):
            m.d.comb += [unit.start.eq(start), unit.rows.eq(t.rows), unit.row_words.eq(t.row_words)]
        m.d.comb += [planner.ext_addr.eq(t.ext_addr), planner.ext_stride.eq(t.ext_stride),
                     walker.buf_addr.eq(t.buf_addr), walker.buf_stride.eq(t.buf_stride)]
        with m.If(start):
            m.d.sync += [busy.eq(1), signal.eq(h.signal_prev)]

        # Each beat read from OUT carries its burst's framing and, on a first beat, the AW fields.
        beat_layout = data.StructLayout({"valid": 1, "first": 1, "last": 1, "addr": EXT_BITS, "len": 9})
        arriving = Signal(beat_layout)
        head, skid = Signal(beat_layout), Signal(beat_layout)
        head_data, skid_data = Signal(bus), Signal(bus)
        w_done, aw_done = Signal(), Signal()
        complete = head.valid & (w_done | self.wready) & (~head.first | aw_done | self.awready)

        # Issue a read only when the two registers can hold it whatever the slave does.
        held = head.valid.as_unsigned() + skid.valid + arriving.valid - complete
        issue = busy & walker.valid & (held < 2)
        burst_left = Signal(9)
        first = burst_left == 0
        length = Mux(first, planner.len, burst_left)
        m.d.comb += [self.raddr.eq(walker.addr), self.ren.eq(issue), walker.step.eq(issue),
                     planner.next.eq(issue & first)]
        m.d.sync += [arriving.valid.eq(issue), arriving.first.eq(first), arriving.last.eq(length == 1),
                     arriving.addr.eq(planner.addr), arriving.len.eq(planner.len)]
        with m.If(issue):
            m.d.sync += burst_left.eq(length - 1)

        with m.If(~head.valid | complete):
            with m.If(skid.valid):
                m.d.sync += [head.eq(skid), head_data.eq(skid_data), skid.eq(arriving), skid_data.eq(self.rdata)]
            with m.Else():
                m.d.sync += [head.eq(arriving), head_data.eq(self.rdata)]
        with m.Elif(arriving.valid):
            m.d.sync += [skid.eq(arriving), skid_data.eq(self.rdata)]
        with m.If(complete):
            m.d.sync += [w_done.eq(0), aw_done.eq(0)]
        with m.Else():
            m.d.sync += [w_done.eq(w_done | (self.wvalid & self.wready)),
                         aw_done.eq(aw_done | (self.awvalid & self.awready))]

        byte_bits = (bus // 8).bit_length() - 1
        m.d.comb += [self.wdata.eq(head_data), self.wstrb.eq(-1), self.wlast.eq(head.last),
                     self.wvalid.eq(head.valid & ~w_done),
                     self.awvalid.eq(head.valid & head.first & ~aw_done), self.awaddr.eq(head.addr << byte_bits),
                     self.awlen.eq(head.len - 1), self.awsize.eq(size_code(bus)), self.awburst.eq(BURST_INCR),
                     self.bready.eq(1)]

        responses = Signal(16)   # bursts whose response is still due
        b_fire = self.bvalid & self.bready
        aw_fire = self.awvalid & self.awready
        m.d.sync += responses.eq(responses + aw_fire - b_fire)
        drained = ~walker.valid & ~arriving.valid & ~head.valid & ~skid.valid
        finish = busy & drained & ((responses == 0) | ((responses == 1) & b_fire))
        with m.If(finish):
            m.d.sync += busy.eq(0)
        sync_taken = self.take & (op != Opcode.STORE) & (op != Opcode.END)
        m.d.comb += [self.signal_prev.eq((finish & signal) | (sync_taken & h.signal_prev)),
                     self.signal_next.eq(0)]
        return m
