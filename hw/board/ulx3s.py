"""The ULX3S (LFE5U-85F) top level, on ``amaranth_boards.ulx3s.ULX3S_85F_Platform``.

    clk25 (G2) -> EHXPLLL -> core clock ``sync`` (dividers from ``pll.pll_setting``)
    reset: held while the PLL is unlocked or the PWR button (D6) is pressed, released synchronously
    uart rx (M1) / tx (L4): the FT231X USB-UART, at a baud rate that divides the core clock evenly
    led 0..6: ``system.BoardSystem``'s LEDs; led 7: PLL locked

``uart_tx_enable`` (L3) is left alone: the board's constraints make it an FPGA input. The external
memory is block RAM (``extmem.py``); its default depth is the largest power of two whose DP16KD blocks
fit beside the core's buffers (``default_mem_words``, an estimate from the buffer sizes; the build
report states what synthesis used).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import ClockDomain, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib.cdc import ResetSynchronizer

from hw.core.config import LANE_ACC_BITS, PROG_WORD_BITS, SLOT_BITS, CoreConfig
from hw.units.block_ram import ebr_blocks

from .pll import PllSetting, pll_setting, uart_baud
from .system import BoardSystem, LinkSettings

BOARD = "ulx3s-85f"
OSCILLATOR_HZ = 25_000_000
DEVICE_EBR = 208
EBR_MARGIN = 4        # blocks kept free for what the estimate misses (FIFOs yosys puts in block RAM)
LINK_TIMEOUT_S = 0.02


def core_ebr_estimate(config: CoreConfig) -> int:
    """Block RAMs of the core's buffers: ACT in two banks, WGT, OUT, PARAM in constant-slot banks, the
    three instruction RAMs, and each column lane's row memories (``hw/core/lane.py``: the PE sums and two
    48-bit accumulators, ``rows`` deep), which the w4-16x16 preset spends 96 blocks on; none when the
    lanes keep them in LUT RAM (``lane_ram = "lut"``)."""
    bus = config.bus_bits
    slots = config.slots_per_param_word
    sum_bits = (2 if {"hluq", "agq"} & set(config.formats) else 1) * config.pe_acc_bits
    lane = 0
    if config.lane_ram == "block":
        lane = ebr_blocks(sum_bits, config.rows) + 2 * ebr_blocks(LANE_ACC_BITS, config.rows)
    return (2 * ebr_blocks(bus, config.act_words // 2) + ebr_blocks(bus, config.wgt_words)
            + ebr_blocks(bus, config.out_words) + slots * ebr_blocks(SLOT_BITS, config.param_words)
            + 3 * ebr_blocks(PROG_WORD_BITS, config.prog_words) + config.cols * lane)


def default_mem_words(config: CoreConfig, stage_bytes: int = 2048) -> int:
    budget = DEVICE_EBR - core_ebr_estimate(config) - ebr_blocks(8, stage_bytes) - EBR_MARGIN
    words = 256
    while ebr_blocks(config.bus_bits, 2 * words) <= budget:
        words *= 2
    if ebr_blocks(config.bus_bits, words) > budget:
        raise ValueError(f"core {config.digest} leaves {budget} DP16KD blocks, too few for an external memory")
    return words


@dataclass(frozen=True)
class BoardDesign:
    """Everything a board build is a function of (besides the core's RTL)."""

    config: CoreConfig
    pll: PllSetting
    link: LinkSettings
    mem_words: int

    @property
    def clock_hz(self) -> int:
        return self.pll.output_hz

    def to_dict(self) -> dict:
        return {"board": BOARD, "core": self.config.to_dict(), "core_digest": self.config.digest,
                "pll": {"input_hz": self.pll.input_hz, "clki_div": self.pll.clki_div, "clkfb_div": self.pll.clkfb_div,
                        "clkop_div": self.pll.clkop_div, "output_hz": self.clock_hz, "vco_hz": float(self.pll.vco)},
                "uart": {"baud": int(self.link.baud), "divisor": self.link.divisor,
                         "timeout_cycles": self.link.timeout_cycles, "stage_bytes": self.link.stage_bytes},
                "mem_words": self.mem_words, "mem_bytes": self.mem_words * self.config.bus_bytes}


def board_design(config: CoreConfig, clock_mhz: float, mem_words: int | None = None,
                 baud: int | None = None) -> BoardDesign:
    pll = pll_setting(OSCILLATOR_HZ, clock_mhz * 1e6)
    if pll.output != pll.output_hz:
        raise ValueError(f"{clock_mhz} MHz: the nearest PLL output, {float(pll.output) / 1e6} MHz, is not a whole "
                         "number of Hz; ask for another clock")
    baud = baud or uart_baud(pll.output_hz)
    link = LinkSettings.for_clock(pll.output_hz, baud, LINK_TIMEOUT_S)
    return BoardDesign(config, pll, link, mem_words or default_mem_words(config, link.stage_bytes))


class ULX3STop(Elaboratable):
    def __init__(self, design: BoardDesign):
        self.design = design
        self.system = BoardSystem(design.config, design.mem_words, design.link)

    def elaborate(self, platform):
        from amaranth.lib import io

        from .pll import ehxplll

        m = Module()

        def pin(name, direction, number=0):
            m.submodules[f"{name}_{number}_buffer"] = buffer = io.Buffer(direction, platform.request(name, number, dir="-"))
            return buffer

        clkop, locked = Signal(name="pll_clkop"), Signal(name="pll_locked")
        m.submodules.pll = ehxplll(self.design.pll, pin("clk25", "i").i, clkop, locked)
        # nextpnr derives the core clock's constraint from the PLL and clk25's FREQUENCY PORT
        m.domains.sync = sync = ClockDomain("sync")
        m.d.comb += sync.clk.eq(clkop)
        # The synchronized reset reaches most flip-flops of the design (25,626 of 45,957 LSR pins on a
        # 256-MAC core); left on fabric routing, that one net took the routing of every tile it crossed and
        # neither nextpnr router converged. A DCCA puts it on a global network, as the clock is.
        m.domains.reset_sync = reset_sync = ClockDomain("reset_sync", local=True)
        m.d.comb += reset_sync.clk.eq(clkop)
        m.submodules.reset = ResetSynchronizer(~locked | pin("button_pwr", "i").i, domain="reset_sync")
        m.submodules.reset_buffer = Instance("DCCA", i_CLKI=reset_sync.rst, i_CE=Const(1), o_CLKO=sync.rst)

        m.submodules.system = system = self.system
        uart = platform.request("uart", 0, dir={"rx": "-", "tx": "-", "rts": "-", "dtr": "-"})
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [system.uart_rx.eq(rx.i), tx.o.eq(system.uart_tx)]
        for i in range(8):
            m.d.comb += pin("led", "o", i).o.eq(system.leds[i] if i < len(system.leds) else locked)
        return m
