"""One unit's instruction RAM and fetch stage.

The RAM is four 32-bit wide memories (one per 32-bit word of a 128-bit instruction), so a host write
of one word is a plain write and each maps to block RAM. Fetch reads the next instruction when the
unit takes the current one: an instruction taken in cycle t makes the next one available in t + 2
(``CoreParams.FETCH_INTERVAL``); the first one is available in run cycle 2.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import PROG_WORD_BITS
from .regs import PROG_WINDOW_BITS


class InstructionFetch(wiring.Component):
    def __init__(self, depth: int):
        self.depth = depth
        self.rams = [Memory(shape=32, depth=depth, init=[]) for _ in range(PROG_WORD_BITS // 32)]
        super().__init__({
            "run_start": In(1),
            "take": In(1),                 # the unit starts ``inst`` in this cycle
            "inst": Out(PROG_WORD_BITS), "valid": Out(1),
            "prog_we": In(1), "prog_index": In(PROG_WINDOW_BITS - 2), "prog_word": In(2), "prog_data": In(32),
        })

    def elaborate(self, platform):
        m = Module()
        addr_bits = (self.depth - 1).bit_length()
        pc = Signal(addr_bits)
        request = self.run_start | self.take
        addr = Mux(self.run_start, 0, pc)
        pending = Signal()
        data = []
        for w, ram in enumerate(self.rams):
            m.submodules[f"ram{w}"] = ram
            write = ram.write_port()
            m.d.comb += [write.addr.eq(self.prog_index), write.data.eq(self.prog_data),
                         write.en.eq(self.prog_we & (self.prog_word == w))]
            read = ram.read_port()  # holds its data between requests
            m.d.comb += [read.addr.eq(addr), read.en.eq(request)]
            data.append(read.data)
        m.d.comb += self.inst.eq(Cat(*data))
        m.d.sync += pending.eq(request)
        with m.If(request):
            m.d.sync += pc.eq(addr + 1)
        with m.If(self.run_start | self.take):
            m.d.sync += self.valid.eq(0)
        with m.Elif(pending):
            m.d.sync += self.valid.eq(1)
        return m
