"""The core joined to the simulation memory: what the Amaranth tests and the Verilator co-simulation run.

Ports: the core's register port and run state, and the memory's backdoor (``mem_bd_addr``,
``mem_bd_wdata``, ``mem_bd_we``, ``mem_bd_rdata``; one word per cycle, read data one cycle after the
address). The memory itself is ``self.simmem.storage`` (see ``simmem.py`` for direct access).
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import CoreConfig
from .core import AXI_PREFIX, Core
from .regs import ADDR_BITS
from .simmem import SimMemory


class SimTop(wiring.Component):
    def __init__(self, config: CoreConfig, mem_words: int, init=None, verilog_storage: bool = False):
        self.config = config
        self.core = Core(config)
        self.simmem = SimMemory(config, mem_words, init, verilog_storage)
        super().__init__({
            "reg_addr": In(ADDR_BITS), "reg_wdata": In(32), "reg_we": In(1), "reg_rdata": Out(32),
            "busy": Out(1), "done": Out(1),
            "mem_bd_addr": In(self.simmem.word_bits), "mem_bd_wdata": In(config.bus_bits), "mem_bd_we": In(1),
            "mem_bd_rdata": Out(config.bus_bits),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.simmem = mem = self.simmem
        m.d.comb += [core.reg_addr.eq(self.reg_addr), core.reg_wdata.eq(self.reg_wdata), core.reg_we.eq(self.reg_we),
                     self.reg_rdata.eq(core.reg_rdata), self.busy.eq(core.busy), self.done.eq(core.done),
                     mem.bd_addr.eq(self.mem_bd_addr), mem.bd_wdata.eq(self.mem_bd_wdata), mem.bd_we.eq(self.mem_bd_we),
                     self.mem_bd_rdata.eq(mem.bd_rdata)]
        for name, member in mem.axi.signature.members.items():
            port, theirs = getattr(core, AXI_PREFIX + name), getattr(mem.axi, name)
            if member.flow == In:   # driven by the master
                m.d.comb += theirs.eq(port)
            else:
                m.d.comb += port.eq(theirs)
        return m
