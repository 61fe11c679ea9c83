"""The host register port: run control, status, counters and the three instruction RAM windows.

A 32-bit port addressed in 32-bit words (byte offset = 4 x word address); writes take effect at the
end of the cycle ``reg_we`` is high, reads return in ``reg_rdata`` the cycle after ``reg_addr``.

    word    name            access  meaning
    0x0000  CTRL            W       bit 0: start a run (ignored while busy)
    0x0001  STATUS          R       bit 0: busy, bit 1: done (a run finished since the last start)
    0x0002  CYCLES_LO       R       cycles the last / current run has been busy, bits 31..0
    0x0003  CYCLES_HI       R       bits 63..32
    0x0004  COUNT_LOAD      R       instructions the LOAD unit has executed in this run (END included)
    0x0005  COUNT_COMPUTE   R       ... the COMPUTE unit
    0x0006  COUNT_STORE     R       ... the STORE unit
    0x0007  INFO            R       rows | cols << 8 | act_bits << 16 | weight_bits << 20 | log2(bus bytes) << 24
    0x0008  DIGEST_LO       R       CoreConfig.digest, low 32 bits (programs name the core they target)
    0x0009  DIGEST_HI       R       high 32 bits
    0x4000  LOAD program    W       instruction i, bits [32 w, 32 w + 32): word 0x4000 + 4 i + w
    0x8000  COMPUTE program W       the same for the COMPUTE unit
    0xC000  STORE program   W       the same for the STORE unit

A run starts in the cycle after the CTRL write (run cycle 0) with every unit at instruction 0 and
every token counter at 0; it ends in the cycle the last of the three units executes END (the COMPUTE
unit's END waits until its outputs are written). CYCLES counts run cycles 0 .. end, both included.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import CoreConfig
from .streams import UNITS

ADDR_BITS = 16
CTRL, STATUS, CYCLES_LO, CYCLES_HI, COUNT_LOAD, COUNT_COMPUTE, COUNT_STORE, INFO, DIGEST_LO, DIGEST_HI = range(10)
COUNT = {"load": COUNT_LOAD, "compute": COUNT_COMPUTE, "store": COUNT_STORE}
PROG_BASE = {"load": 0x4000, "compute": 0x8000, "store": 0xC000}
PROG_WINDOW_BITS = 14
STATUS_BUSY, STATUS_DONE = 1, 2
COUNT_BITS = 32


def info_word(config: CoreConfig) -> int:
    return (config.rows | config.cols << 8 | config.act_bits << 16 | config.weight_bits << 20
            | ((config.bus_bits // 8).bit_length() - 1) << 24)


def program_writes(unit: str, words) -> list[tuple[int, int]]:
    """(register address, data) pairs that write a unit's encoded 128-bit instructions."""
    return [(PROG_BASE[unit] + 4 * i + w, (word >> (32 * w)) & 0xFFFF_FFFF)
            for i, word in enumerate(words) for w in range(4)]


class HostRegisters(wiring.Component):
    """Decodes the port; owns busy/done, the cycle counter and the instruction counts."""

    def __init__(self, config: CoreConfig):
        self.config = config
        super().__init__({
            "reg_addr": In(ADDR_BITS), "reg_wdata": In(32), "reg_we": In(1), "reg_rdata": Out(32),
            "run_start": Out(1),      # high in run cycle 0
            "busy": Out(1), "done": Out(1),
            "finishing": In(1),       # the run's last cycle (the last END executes)
            "executed": In(len(UNITS)),  # one pulse per instruction each unit starts
            # instruction RAM writes: the unit (one-hot), instruction index, 32-bit word within it
            "prog_we": Out(len(UNITS)), "prog_index": Out(PROG_WINDOW_BITS - 2), "prog_word": Out(2),
            "prog_data": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        cycles = Signal(64)
        counts = [Signal(COUNT_BITS, name=f"count_{u}") for u in UNITS]
        addr, wdata = self.reg_addr, self.reg_wdata

        start = self.reg_we & (addr == CTRL) & wdata[0] & ~self.busy
        m.d.sync += self.run_start.eq(start)
        with m.If(start):
            m.d.sync += [self.busy.eq(1), self.done.eq(0), cycles.eq(0)] + [c.eq(0) for c in counts]
        with m.Elif(self.busy):
            m.d.sync += cycles.eq(cycles + 1)
            for count, pulse in zip(counts, self.executed):
                m.d.sync += count.eq(count + pulse)
            with m.If(self.finishing):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]

        unit = addr[PROG_WINDOW_BITS:]
        for i, name in enumerate(UNITS):
            m.d.comb += self.prog_we[i].eq(self.reg_we & (unit == PROG_BASE[name] >> PROG_WINDOW_BITS))
        m.d.comb += [self.prog_index.eq(addr[2:PROG_WINDOW_BITS]), self.prog_word.eq(addr[:2]),
                     self.prog_data.eq(wdata)]

        digest = int(cfg.digest, 16)
        readable = {STATUS: Cat(self.busy, self.done), CYCLES_LO: cycles[:32], CYCLES_HI: cycles[32:],
                    INFO: Const(info_word(cfg), 32), DIGEST_LO: Const(digest & 0xFFFF_FFFF, 32),
                    DIGEST_HI: Const(digest >> 32, 32)}
        readable.update({COUNT[u]: c for u, c in zip(UNITS, counts)})
        with m.Switch(addr):
            for where, value in readable.items():
                with m.Case(where):
                    m.d.sync += self.reg_rdata.eq(value)
            with m.Default():
                m.d.sync += self.reg_rdata.eq(0)
        return m
