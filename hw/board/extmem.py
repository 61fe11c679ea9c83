"""The board's external memory: block RAM behind the core's AXI4 master port, with a host port the
link uses to fill and read it.

One ``Memory`` of ``words`` words of ``bus_bits`` with one synchronous read port and one write port,
so it maps onto ECP5 DP16KD blocks in pseudo dual-port mode. The AXI side serves one read burst and
one write burst at a time (INCR, one beat per cycle, read data one cycle after the address); the host
side (``host_*``) takes both ports over while ``host_sel`` is high, which the link raises only while
the core is idle (no burst is in flight then: the core is done only after its last write response and
its last read beat). Whole words are written: the core's STORE sets every write strobe.

An AXI address beyond ``words`` wraps around and sets the sticky ``range_error`` (cleared by
``clear_errors``); the board's STATUS answer reports it.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.core.axi import axi4_signature


def word_bits(words: int) -> int:
    return max(words - 1, 1).bit_length()


class BlockRamMemory(wiring.Component):
    def __init__(self, bus_bits: int, addr_bits: int, words: int):
        if words & (words - 1):
            raise ValueError(f"the external memory's depth must be a power of two, got {words}")
        self.bus_bits, self.words, self.abits = bus_bits, words, word_bits(words)
        self.byte_bits = (bus_bits // 8).bit_length() - 1
        self.addr_bits = addr_bits
        super().__init__({
            "axi": In(axi4_signature(addr_bits, bus_bits)),
            "host_sel": In(1), "host_addr": In(self.abits), "host_wdata": In(bus_bits), "host_we": In(1),
            "host_rdata": Out(bus_bits),
            "range_error": Out(1), "clear_errors": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        m.submodules.storage = mem = Memory(shape=self.bus_bits, depth=self.words, init=[])
        rport = mem.read_port()
        wport = mem.write_port()

        def word(byte_addr):
            return (byte_addr >> self.byte_bits)[:self.abits]

        def beyond(byte_addr):
            high = (byte_addr >> self.byte_bits)[self.abits:]
            return high != 0 if len(high) else 0

        # The AXI side is held off while the host owns the ports; through a register, since the core is idle
        # then anyway (the link selects the host port only while the core is not busy) and the link's
        # decoded state was the worst path into the core's store unit.
        host_q = Signal()
        m.d.sync += host_q.eq(self.host_sel)

        # ---- reads: one burst at a time ----------------------------------------------------------
        r_active, r_addr, r_left = Signal(), Signal(self.abits), Signal(8)
        rvalid, rlast = Signal(), Signal()
        advance = ~rvalid | axi.rready
        m.d.comb += axi.arready.eq(~r_active & advance & ~host_q)
        start = axi.arvalid & axi.arready
        beat_addr = Mux(r_active, r_addr, word(axi.araddr))
        beat_left = Mux(r_active, r_left, axi.arlen)
        m.d.comb += [axi.rvalid.eq(rvalid), axi.rlast.eq(rlast), axi.rdata.eq(rport.data), axi.rresp.eq(0),
                     axi.rid.eq(0)]
        with m.If(advance & ~host_q):
            m.d.sync += [rvalid.eq(r_active | start), rlast.eq(beat_left == 0)]
            with m.If(r_active | start):
                m.d.sync += [r_addr.eq(beat_addr + 1), r_left.eq(beat_left - 1), r_active.eq(beat_left != 0)]

        # ---- writes: one burst at a time, its response before the next address -------------------
        w_active, w_addr, b_pending = Signal(), Signal(self.abits), Signal()
        m.d.comb += [axi.awready.eq(~w_active & ~b_pending & ~host_q), axi.wready.eq(w_active),
                     axi.bvalid.eq(b_pending), axi.bresp.eq(0), axi.bid.eq(0)]
        with m.If(axi.awvalid & axi.awready):
            m.d.sync += [w_active.eq(1), w_addr.eq(word(axi.awaddr))]
        beat = axi.wvalid & axi.wready
        with m.If(beat):
            m.d.sync += w_addr.eq(w_addr + 1)
            with m.If(axi.wlast):
                m.d.sync += [w_active.eq(0), b_pending.eq(1)]
        with m.If(axi.bvalid & axi.bready):
            m.d.sync += b_pending.eq(0)

        # ---- the two storage ports: the host's while host_sel, else the AXI side's ---------------
        m.d.comb += [rport.addr.eq(Mux(self.host_sel, self.host_addr, beat_addr)),
                     rport.en.eq(self.host_sel | advance),
                     self.host_rdata.eq(rport.data),
                     wport.addr.eq(Mux(self.host_sel, self.host_addr, w_addr)),
                     wport.data.eq(Mux(self.host_sel, self.host_wdata, axi.wdata)),
                     wport.en.eq(Mux(self.host_sel, self.host_we, beat))]

        with m.If(self.clear_errors):
            m.d.sync += self.range_error.eq(0)
        with m.If((start & beyond(axi.araddr)) | (axi.awvalid & axi.awready & beyond(axi.awaddr))):
            m.d.sync += self.range_error.eq(1)
        return m
