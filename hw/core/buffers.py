"""The four on-chip buffers, each one write and one synchronous read port (simple dual-port block RAM):
the DMA side (LOAD writes ACT/WGT/PARAM, STORE reads OUT) and the compute side.

- OUT has a write enable per ``out_granule_bits``, so a packed GEMM's row lands in its part of a word.
- ACT is two banks of even and odd words, so the two words a row vector may span are read together.
- PARAM is ``bus_bits / 128`` banks of 128-bit slots, so any ``slots_per_word`` consecutive slots (a
  run of column constants at any alignment) are read together; a LOAD writes all banks at one index.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import SLOT_BITS, CoreConfig
from .isa import Buffer
from .params import CoreParams
from .transfer import BUF_BITS


class Buffers(wiring.Component):
    def __init__(self, config: CoreConfig):
        self.config, self.params = config, CoreParams(config)
        bus, spw, bits = config.bus_bits, self.params.slots_per_word, self.params.word_addr_bits
        self.act = [Memory(shape=bus, depth=config.act_words // 2, init=[]) for _ in range(2)]
        self.wgt = Memory(shape=bus, depth=config.wgt_words, init=[])
        self.param = [Memory(shape=SLOT_BITS, depth=config.param_words, init=[]) for _ in range(spw)]
        self.out = Memory(shape=bus, depth=config.out_words, init=[])
        super().__init__({
            "ld_buffer": In(2), "ld_addr": In(BUF_BITS), "ld_data": In(bus), "ld_en": In(1),
            "st_addr": In(BUF_BITS), "st_en": In(1), "st_data": Out(bus),
            "act_addr": In(bits["act"] - 1).array(2), "act_data": Out(bus).array(2),
            "wgt_addr": In(bits["wgt"]), "wgt_data": Out(bus),
            "param_addr": In(bits["param"]).array(spw), "param_data": Out(SLOT_BITS).array(spw),
            "out_addr": In(bits["out"]), "out_data": In(bus), "out_en": In(bus // config.out_granule_bits),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.config.bus_bits
        loading = {b: self.ld_en & (self.ld_buffer == b) for b in Buffer}

        for bank, mem in enumerate(self.act):
            m.submodules[f"act{bank}"] = mem
            w, r = mem.write_port(), mem.read_port()
            m.d.comb += [w.addr.eq(self.ld_addr[1:]), w.data.eq(self.ld_data),
                         w.en.eq(loading[Buffer.ACT] & (self.ld_addr[0] == bank)),
                         r.addr.eq(self.act_addr[bank]), self.act_data[bank].eq(r.data)]

        m.submodules.wgt = self.wgt
        w, r = self.wgt.write_port(), self.wgt.read_port()
        m.d.comb += [w.addr.eq(self.ld_addr), w.data.eq(self.ld_data), w.en.eq(loading[Buffer.WGT]),
                     r.addr.eq(self.wgt_addr), self.wgt_data.eq(r.data)]

        for bank, mem in enumerate(self.param):
            m.submodules[f"param{bank}"] = mem
            w, r = mem.write_port(), mem.read_port()
            m.d.comb += [w.addr.eq(self.ld_addr), w.data.eq(self.ld_data[bank * 128:(bank + 1) * 128]),
                         w.en.eq(loading[Buffer.PARAM]),
                         r.addr.eq(self.param_addr[bank]), self.param_data[bank].eq(r.data)]

        m.submodules.out = self.out
        # a write enable per granule: a packed GEMM writes one row into part of a word
        w, r = self.out.write_port(granularity=self.config.out_granule_bits), self.out.read_port()
        m.d.comb += [w.addr.eq(self.out_addr), w.data.eq(self.out_data), w.en.eq(self.out_en),
                     r.addr.eq(self.st_addr), r.en.eq(self.st_en), self.st_data.eq(r.data)]
        assert bus % 128 == 0
        return m
