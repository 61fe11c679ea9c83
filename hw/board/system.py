"""Everything of the board design that runs in the core's clock domain: the core, its block-RAM
external memory, the UART and the host link, and the status LEDs. The ULX3S top level
(``hw/board/ulx3s.py``) adds only the PLL, the reset and the pins; the co-simulation
(``sim/board_runner.py``) runs this component as it is.

Ports: ``uart_rx`` (from the host), ``uart_tx`` (to the host), ``leds`` (7 LEDs):

    led 0  heartbeat (about 1 Hz)          led 4  receive activity
    led 1  core busy                       led 5  transmit activity
    led 2  core done                       led 6  (off)
    led 3  error: an error answer, a receive error or an AXI address beyond the memory since the last STATUS
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.core.config import CoreConfig
from hw.core.core import AXI_PREFIX, Core

from .extmem import BlockRamMemory
from .link import HostLink
from .uart import UartRx, UartTx

LEDS = 7


@dataclass(frozen=True)
class LinkSettings:
    """The host link's clocking: core clock, clocks per UART bit, byte timeout, staging buffer."""

    clock_hz: int
    divisor: int                 # clocks per UART bit: baud = clock_hz / divisor exactly
    timeout_cycles: int          # a frame that stops for this long is answered with ERR_TIMEOUT
    stage_bytes: int = 2048

    @property
    def baud(self) -> float:
        return self.clock_hz / self.divisor

    @classmethod
    def for_clock(cls, clock_hz: int, baud: int, timeout_s: float = 0.02, stage_bytes: int = 2048) -> "LinkSettings":
        if clock_hz % baud:
            raise ValueError(f"{baud} baud does not divide the {clock_hz / 1e6:g} MHz clock evenly")
        return cls(clock_hz, clock_hz // baud, max(int(clock_hz * timeout_s), 1), stage_bytes)


class BoardSystem(wiring.Component):
    def __init__(self, config: CoreConfig, mem_words: int, link: LinkSettings):
        self.config, self.mem_words, self.link = config, mem_words, link
        self.core = Core(config)
        super().__init__({"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1), "leds": Out(LEDS)})

    def elaborate(self, platform):
        m = Module()
        cfg, link = self.config, self.link
        m.submodules.core = core = self.core
        m.submodules.extmem = mem = BlockRamMemory(cfg.bus_bits, core.params.ext_byte_addr_bits, self.mem_words)
        m.submodules.rx = rx = UartRx(link.divisor)
        m.submodules.tx = tx = UartTx(link.divisor)
        m.submodules.host = host = HostLink(cfg.bus_bits, self.mem_words, link.stage_bytes, link.timeout_cycles,
                                            link.clock_hz // 1000, link.divisor)

        for name, member in mem.axi.signature.members.items():
            port, theirs = getattr(core, AXI_PREFIX + name), getattr(mem.axi, name)
            m.d.comb += theirs.eq(port) if member.flow == In else port.eq(theirs)
        m.d.comb += [
            rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx),
            host.rx_data.eq(rx.data), host.rx_valid.eq(rx.valid), host.rx_framing_error.eq(rx.framing_error),
            tx.data.eq(host.tx_data), tx.valid.eq(host.tx_valid), host.tx_ready.eq(tx.ready),
            host.reg_rdata.eq(core.reg_rdata), host.core_busy.eq(core.busy), host.core_done.eq(core.done),
            mem.host_sel.eq(host.mem_sel), mem.host_addr.eq(host.mem_addr), mem.host_wdata.eq(host.mem_wdata),
            mem.host_we.eq(host.mem_we), host.mem_rdata.eq(mem.host_rdata),
            host.axi_range_error.eq(mem.range_error), mem.clear_errors.eq(host.clear_errors),
        ]

        # the register port goes through one register stage (the link's FSM to the core's run control was
        # the worst path of the 2 x 2 build); the link waits a cycle more for register reads
        m.d.sync += [core.reg_addr.eq(host.reg_addr), core.reg_wdata.eq(host.reg_wdata), core.reg_we.eq(host.reg_we)]

        heartbeat = Signal(max(link.clock_hz // 2, 2).bit_length())
        m.d.sync += heartbeat.eq(heartbeat + 1)
        stretch = max(link.clock_hz // 20, 1)   # activity LEDs stay on 50 ms
        rx_on, tx_on = Signal(range(stretch + 1)), Signal(range(stretch + 1))
        for counter, event in ((rx_on, rx.valid), (tx_on, tx.valid & tx.ready)):
            with m.If(event):
                m.d.sync += counter.eq(stretch)
            with m.Elif(counter != 0):
                m.d.sync += counter.eq(counter - 1)
        m.d.comb += self.leds.eq(Cat(heartbeat[-1], core.busy, core.done, host.error, rx_on != 0, tx_on != 0, Const(0, 1)))
        return m

