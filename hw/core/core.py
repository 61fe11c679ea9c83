"""The programmable core: host registers, three units with their instruction RAMs, the token counters,
the buffers and one AXI4 master port (docs/core.md).

Top-level ports (Verilog names as Amaranth writes them):

    reg_addr[16], reg_wdata[32], reg_we, reg_rdata[32]   host register port (``regs.py``)
    busy, done                                           the run state (also in STATUS)
    m_axi_*                                              AXI4 master (``axi.py``): LOAD reads, STORE writes
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axi import axi4_signature
from .buffers import Buffers
from .compute import ComputeUnit
from .config import CoreConfig
from .fetch import InstructionFetch
from .load_unit import LoadUnit
from .params import CoreParams
from .regs import ADDR_BITS, HostRegisters
from .store_unit import StoreUnit
from .streams import UNITS
from .tokens import COUNTERS, TokenCounters, counter_for

AXI_PREFIX = "m_axi_"


def core_signature(config: CoreConfig) -> dict:
    p = CoreParams(config)
    members = {"reg_addr": In(ADDR_BITS), "reg_wdata": In(32), "reg_we": In(1), "reg_rdata": Out(32),
               "busy": Out(1), "done": Out(1)}
    for name, member in axi4_signature(p.ext_byte_addr_bits, config.bus_bits).members.items():
        members[AXI_PREFIX + name] = member
    return members


class Core(wiring.Component):
    def __init__(self, config: CoreConfig):
        self.config, self.params = config, CoreParams(config)
        super().__init__(core_signature(config))

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.regs = regs = HostRegisters(cfg)
        m.submodules.tokens = tokens = TokenCounters()
        m.submodules.buffers = buffers = Buffers(cfg)
        units = {"load": LoadUnit(cfg), "compute": ComputeUnit(cfg), "store": StoreUnit(cfg)}
        m.d.comb += [regs.reg_addr.eq(self.reg_addr), regs.reg_wdata.eq(self.reg_wdata), regs.reg_we.eq(self.reg_we),
                     self.reg_rdata.eq(regs.reg_rdata), self.busy.eq(regs.busy), self.done.eq(regs.done),
                     tokens.run_start.eq(regs.run_start)]

        for i, name in enumerate(UNITS):
            unit = units[name]
            m.submodules[name] = unit
            m.submodules[f"{name}_fetch"] = fetch = InstructionFetch(cfg.prog_words)
            m.d.comb += [fetch.run_start.eq(regs.run_start), fetch.take.eq(unit.take),
                         fetch.prog_we.eq(regs.prog_we[i]), fetch.prog_index.eq(regs.prog_index),
                         fetch.prog_word.eq(regs.prog_word), fetch.prog_data.eq(regs.prog_data),
                         unit.inst.eq(fetch.inst), unit.inst_valid.eq(fetch.valid), unit.run_start.eq(regs.run_start),
                         regs.executed[i].eq(unit.take)]
            for flag, ok, taken in (("wait_prev", unit.wait_prev_ok, unit.take_prev),
                                    ("wait_next", unit.wait_next_ok, unit.take_next)):
                counter = counter_for(name, flag)
                if counter is None:
                    m.d.comb += ok.eq(1)
                else:
                    m.d.comb += [ok.eq(getattr(tokens, f"{counter}_any")), getattr(tokens, f"{counter}_dec").eq(taken)]
            for flag in ("signal_prev", "signal_next"):
                counter = counter_for(name, flag)
                if counter is not None:
                    m.d.comb += getattr(tokens, f"{counter}_inc").eq(getattr(unit, flag))
        assert all(counter_for(*COUNTERS[c][:2]) == c for c in COUNTERS)

        # In run cycle 0 the units' ``ended`` flags still hold the previous run's END (they clear at its
        # end), so that cycle cannot finish a run.
        ended = [units[u].ended | units[u].ending for u in UNITS]
        m.d.comb += regs.finishing.eq(ended[0] & ended[1] & ended[2] & ~regs.run_start)

        # buffers: LOAD writes, STORE reads OUT, COMPUTE on the other ports
        load, store, compute = units["load"], units["store"], units["compute"]
        m.d.comb += [buffers.ld_buffer.eq(load.buffer), buffers.ld_addr.eq(load.waddr), buffers.ld_data.eq(load.wdata),
                     buffers.ld_en.eq(load.wen),
                     buffers.st_addr.eq(store.raddr), buffers.st_en.eq(store.ren), store.rdata.eq(buffers.st_data),
                     buffers.wgt_addr.eq(compute.wgt_addr), compute.wgt_data.eq(buffers.wgt_data),
                     buffers.out_addr.eq(compute.out_addr), buffers.out_data.eq(compute.out_data),
                     buffers.out_en.eq(compute.out_en)]
        for bank in range(2):
            m.d.comb += [buffers.act_addr[bank].eq(compute.act_addr[bank]), compute.act_data[bank].eq(buffers.act_data[bank])]
        for bank in range(self.params.slots_per_word):
            m.d.comb += [buffers.param_addr[bank].eq(compute.param_addr[bank]),
                         compute.param_data[bank].eq(buffers.param_data[bank])]

        # AXI: the read channels belong to LOAD, the write channels to STORE, one ID (0)
        axi = {name[len(AXI_PREFIX):]: getattr(self, name) for name in core_signature(cfg) if name.startswith(AXI_PREFIX)}
        for name in ("araddr", "arlen", "arsize", "arburst", "arvalid", "rready"):
            m.d.comb += axi[name].eq(getattr(load, name))
        for name in ("arready", "rdata", "rlast", "rvalid"):
            m.d.comb += getattr(load, name).eq(axi[name])
        for name in ("awaddr", "awlen", "awsize", "awburst", "awvalid", "wdata", "wstrb", "wlast", "wvalid", "bready"):
            m.d.comb += axi[name].eq(getattr(store, name))
        for name in ("awready", "wready", "bvalid"):
            m.d.comb += getattr(store, name).eq(axi[name])
        m.d.comb += [axi["arid"].eq(0), axi["awid"].eq(0)]
        return m
