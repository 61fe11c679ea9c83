"""The board's end of the host link: parses request frames from the UART receiver, executes them on
the core's register port and the external memory's host port, and answers every one of them
(``hw/board/protocol.py`` has the frame format).

Received bytes go through a small FIFO into the parser: HUNT (skip bytes until SOF), HEADER (seven
bytes), PAYLOAD (staged in a byte-wide buffer of ``stage_bytes``, one DP16KD at 2048), CRC (two bytes;
the CRC register must read 0 after them). Between bytes of a frame a counter runs; at
``timeout_cycles`` without a byte the frame is answered with ERR_TIMEOUT. A checked request then runs:
WRITE_REGS / WRITE_MEM gather each register (4 bytes) or memory word (``bus_bytes``) from the staging
buffer and write it, so a frame that fails any check writes nothing; START writes CTRL. The answer
streams its header, then for READ_REGS / READ_MEM / STATUS each register, word or the status words
through a shift register, then its CRC.
"""

from __future__ import annotations

from functools import reduce
from operator import xor

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.core import regs

from . import protocol as P
from .extmem import word_bits

RX_FIFO_DEPTH = 16


def crc16_next(crc, byte):
    """The CRC register after ``byte`` (an XOR tree per bit, from ``protocol.crc16_masks``)."""
    bits = []
    for crc_mask, byte_mask in P.crc16_masks():
        terms = [crc[i] for i in range(16) if crc_mask >> i & 1] + [byte[i] for i in range(8) if byte_mask >> i & 1]
        bits.append(reduce(xor, terms))
    return Cat(*bits)


class HostLink(wiring.Component):
    def __init__(self, bus_bits: int, mem_words: int, stage_bytes: int = 2048, timeout_cycles: int = 1 << 20,
                 clock_khz: int = 0, divisor: int = 0):
        if stage_bytes & (stage_bytes - 1) or stage_bytes < bus_bits // 8:
            raise ValueError(f"the staging buffer holds a power of two of bytes, at least one bus word; got {stage_bytes}")
        self.bus_bits, self.bus_bytes, self.mem_words = bus_bits, bus_bits // 8, mem_words
        self.stage_bytes, self.timeout_cycles = stage_bytes, timeout_cycles
        self.clock_khz, self.divisor = clock_khz, divisor
        self.mem_abits = word_bits(mem_words)
        super().__init__({
            "rx_data": In(8), "rx_valid": In(1), "rx_framing_error": In(1),
            "tx_data": Out(8), "tx_valid": Out(1), "tx_ready": In(1),
            "reg_addr": Out(regs.ADDR_BITS), "reg_wdata": Out(32), "reg_we": Out(1), "reg_rdata": In(32),
            "core_busy": In(1), "core_done": In(1),
            "mem_sel": Out(1), "mem_addr": Out(self.mem_abits), "mem_wdata": Out(bus_bits), "mem_we": Out(1),
            "mem_rdata": In(bus_bits),
            "axi_range_error": In(1), "clear_errors": Out(1),
            "error": Out(1),        # sticky: an error answer or a receive error since the last STATUS
        })

    def elaborate(self, platform):
        m = Module()
        bus_bytes, stage_bytes = self.bus_bytes, self.stage_bytes
        m.submodules.rx_fifo = fifo = SyncFIFO(width=8, depth=RX_FIFO_DEPTH)
        m.submodules.stage = stage = Memory(shape=8, depth=stage_bytes, init=[])
        st_w, st_r = stage.write_port(), stage.read_port()

        overrun, framing, link_error = Signal(), Signal(), Signal()
        m.d.comb += [fifo.w_data.eq(self.rx_data), fifo.w_en.eq(self.rx_valid)]
        with m.If(self.rx_valid & ~fifo.w_rdy):
            m.d.sync += overrun.eq(1)
        with m.If(self.rx_framing_error):
            m.d.sync += framing.eq(1)

        cmd, addr, count = Signal(8), Signal(32), Signal(16)
        header = Signal(56)
        hdr_left = Signal(range(8))
        plen = Signal(16 + (bus_bytes.bit_length() - 1))
        idx = Signal(len(plen))
        crc = Signal(16)
        crc_left = Signal(2)
        status = Signal(8)
        errors = Signal(32)
        timer = Signal(range(self.timeout_cycles + 1))
        units_left = Signal(16)
        unit_bytes = Signal(range(max(bus_bytes, 4 * P.STATUS_WORDS) + 1))
        byte_left = Signal.like(unit_bytes)
        ridx = Signal(range(stage_bytes))
        acc = Signal(self.bus_bits)
        out_shift = Signal(max(self.bus_bits, 32 * P.STATUS_WORDS))
        out_index = Signal(range(P.ANSWER_HEADER))

        byte = fifo.r_data
        crc_in = crc16_next(crc, byte)
        is_write_regs, is_write_mem = cmd == P.WRITE_REGS, cmd == P.WRITE_MEM
        is_read_regs, is_read_mem = cmd == P.READ_REGS, cmd == P.READ_MEM
        is_mem = is_write_mem | is_read_mem
        known = (cmd >= 1) & (cmd <= max(P.COMMANDS))
        answer_count = Signal(16)
        mem_end = Signal(34)
        m.d.comb += mem_end.eq(addr + count)

        # defaults: the register port reads ``addr``; the memory's host port addresses ``addr``
        m.d.comb += [self.reg_addr.eq(addr[:regs.ADDR_BITS]), self.mem_addr.eq(addr[:self.mem_abits]),
                     self.mem_wdata.eq(acc), st_r.addr.eq(ridx), st_w.addr.eq(idx[:len(st_w.addr)]),
                     st_w.data.eq(byte)]

        def receiving(then):
            """In a frame: take a byte (CRC, timer), or count towards the timeout."""
            with m.If(fifo.r_rdy):
                m.d.comb += fifo.r_en.eq(1)
                m.d.sync += [crc.eq(crc_in), timer.eq(0)]
                then()
            with m.Elif(timer == self.timeout_cycles):
                m.d.sync += [status.eq(P.ERR_TIMEOUT), answer_count.eq(0)]
                m.next = "ANSWER"
            with m.Else():
                m.d.sync += timer.eq(timer + 1)

        tx_take = self.tx_valid & self.tx_ready

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += fifo.r_en.eq(1)
                with m.If(fifo.r_rdy & (byte == P.SOF_REQUEST)):
                    m.d.sync += [crc.eq(P.CRC_INIT), timer.eq(0), hdr_left.eq(P.REQUEST_HEADER - 1), cmd.eq(0)]
                    m.next = "HEADER"

            with m.State("HEADER"):
                def header_byte():
                    m.d.sync += [header.eq(Cat(header[8:], byte)), hdr_left.eq(hdr_left - 1)]
                    with m.If(hdr_left == 1):
                        m.next = "PARSE"
                receiving(header_byte)

            with m.State("PARSE"):
                new_cmd, new_count = header[:8], header[40:56]
                m.d.sync += [cmd.eq(new_cmd), addr.eq(header[8:40]), count.eq(new_count), idx.eq(0),
                             crc_left.eq(2)]
                length = Mux(new_cmd == P.WRITE_REGS, new_count << 2,
                             Mux(new_cmd == P.WRITE_MEM, new_count << (bus_bytes.bit_length() - 1), 0))
                m.d.sync += plen.eq(length)
                with m.If(length != 0):
                    m.next = "PAYLOAD"
                with m.Else():
                    m.next = "CRC"

            with m.State("PAYLOAD"):
                def payload_byte():
                    m.d.comb += st_w.en.eq(idx < stage_bytes)
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == plen - 1):
                        m.next = "CRC"
                receiving(payload_byte)

            with m.State("CRC"):
                def crc_byte():
                    m.d.sync += crc_left.eq(crc_left - 1)
                    with m.If(crc_left == 1):
                        m.next = "CHECK"
                receiving(crc_byte)

            with m.State("CHECK"):
                m.d.sync += [ridx.eq(0), units_left.eq(count), answer_count.eq(0),
                             unit_bytes.eq(Mux(is_write_regs, 4, bus_bytes))]
                with m.If(crc != 0):
                    m.d.sync += status.eq(P.ERR_CRC)
                    m.next = "ANSWER"
                with m.Elif(~known):
                    m.d.sync += status.eq(P.ERR_COMMAND)
                    m.next = "ANSWER"
                with m.Elif((is_mem | (cmd == P.START)) & self.core_busy):
                    m.d.sync += status.eq(P.ERR_BUSY)
                    m.next = "ANSWER"
                with m.Elif((is_mem & (mem_end > self.mem_words)) | (plen > stage_bytes)):
                    m.d.sync += status.eq(P.ERR_RANGE)
                    m.next = "ANSWER"
                with m.Else():
                    m.d.sync += status.eq(P.OK)
                    with m.If(is_write_regs | is_write_mem):
                        m.next = "GATHER_ADDR"
                    with m.Elif(cmd == P.START):
                        m.next = "START"
                    with m.Else():
                        m.d.sync += answer_count.eq(Mux(cmd == P.STATUS, P.STATUS_WORDS, count))
                        m.next = "ANSWER"

            # ---- WRITE_REGS / WRITE_MEM: staged bytes -> registers or memory words ---------------
            with m.State("GATHER_ADDR"):
                m.d.comb += self.mem_sel.eq(is_write_mem)
                with m.If(units_left == 0):
                    m.next = "ANSWER"
                with m.Else():
                    m.d.sync += byte_left.eq(unit_bytes)
                    m.next = "GATHER"
            with m.State("GATHER"):   # the staging buffer's read port has ridx of the previous cycle
                m.d.comb += self.mem_sel.eq(is_write_mem)
                m.d.sync += [ridx.eq(ridx + 1), byte_left.eq(byte_left - 1)]
                m.next = "GATHER_TAKE"
            with m.State("GATHER_TAKE"):
                m.d.comb += self.mem_sel.eq(is_write_mem)
                m.d.sync += acc.eq(Cat(acc[8:], st_r.data))
                with m.If(byte_left == 0):
                    m.next = "COMMIT"
                with m.Else():
                    m.next = "GATHER"
            with m.State("COMMIT"):
                m.d.comb += [self.mem_sel.eq(is_write_mem), self.mem_we.eq(is_write_mem),
                             self.reg_we.eq(is_write_regs), self.reg_wdata.eq(acc[-32:])]
                m.d.sync += [addr.eq(addr + 1), units_left.eq(units_left - 1)]
                m.next = "GATHER_ADDR"

            with m.State("START"):
                m.d.comb += [self.reg_addr.eq(regs.CTRL), self.reg_wdata.eq(1), self.reg_we.eq(1)]
                m.next = "ANSWER"

            # ---- the answer ---------------------------------------------------------------------
            with m.State("ANSWER"):
                m.d.sync += [crc.eq(P.CRC_INIT), out_index.eq(0), units_left.eq(answer_count)]
                with m.If(status != P.OK):
                    m.d.sync += [errors.eq(errors + 1), link_error.eq(1)]
                m.next = "ANSWER_HEADER"
            with m.State("ANSWER_HEADER"):
                header_bytes = [P.SOF_ANSWER, cmd, status, answer_count[:8], answer_count[8:]]
                with m.Switch(out_index):
                    for i, value in enumerate(header_bytes):
                        with m.Case(i):
                            m.d.comb += self.tx_data.eq(value)
                m.d.comb += self.tx_valid.eq(1)
                with m.If(tx_take):
                    with m.If(out_index != 0):
                        m.d.sync += crc.eq(crc16_next(crc, self.tx_data))
                    m.d.sync += out_index.eq(out_index + 1)
                    with m.If(out_index == P.ANSWER_HEADER - 1):
                        m.next = "FETCH"
            with m.State("FETCH"):   # the register port / memory take the address
                m.d.comb += self.mem_sel.eq(is_read_mem)
                with m.If(units_left == 0):
                    m.d.sync += crc_left.eq(2)
                    m.next = "ANSWER_CRC"
                with m.Else():
                    m.next = "FETCH_WAIT"
            with m.State("FETCH_WAIT"):   # the core's register port is one register stage away (system.py)
                m.d.comb += self.mem_sel.eq(is_read_mem)
                m.next = "LATCH"
            with m.State("LATCH"):
                m.d.comb += self.mem_sel.eq(is_read_mem)
                flags = Cat(self.core_busy, self.core_done, Const(0, 6), self.axi_range_error, framing, overrun,
                            link_error)
                info = Cat(Const(self.divisor, 16), Const(stage_bytes.bit_length() - 1, 8), Const(P.VERSION, 8))
                status_words = Cat(flags.as_unsigned(), Const(0, 20), errors, Const(self.mem_words, 32),
                                   Const(self.clock_khz, 32), info, Const(self.timeout_cycles, 32))
                with m.If(is_read_regs):
                    m.d.sync += [out_shift.eq(self.reg_rdata), byte_left.eq(4)]
                with m.Elif(is_read_mem):
                    m.d.sync += [out_shift.eq(self.mem_rdata), byte_left.eq(bus_bytes)]
                with m.Else():   # STATUS: read once, clears the sticky flags
                    m.d.sync += [out_shift.eq(status_words), byte_left.eq(4 * P.STATUS_WORDS),
                                 units_left.eq(1), framing.eq(0), overrun.eq(0), link_error.eq(0)]
                    m.d.comb += self.clear_errors.eq(1)
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.tx_data.eq(out_shift[:8]), self.tx_valid.eq(1)]
                with m.If(tx_take):
                    m.d.sync += [crc.eq(crc16_next(crc, self.tx_data)), out_shift.eq(out_shift >> 8),
                                 byte_left.eq(byte_left - 1)]
                    with m.If(byte_left == 1):
                        m.d.sync += [addr.eq(addr + 1), units_left.eq(units_left - 1)]
                        m.next = "FETCH"
            with m.State("ANSWER_CRC"):
                m.d.comb += [self.tx_data.eq(Mux(crc_left == 2, crc[8:], crc[:8])), self.tx_valid.eq(1)]
                with m.If(tx_take):
                    m.d.sync += crc_left.eq(crc_left - 1)
                    with m.If(crc_left == 1):
                        m.next = "HUNT"

        m.d.comb += self.error.eq(link_error | framing | overrun | self.axi_range_error)
        return m
