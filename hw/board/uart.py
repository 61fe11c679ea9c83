"""A plain 8N1 UART (amaranth-stdio is not installable from the registry): a fixed number of clocks
per bit, ``divisor`` (the board picks a core clock that the baud rate divides evenly).

``UartRx`` synchronizes the line through two flip-flops, starts on a falling edge, checks the start bit
half a bit later, samples the eight data bits (LSB first) at their middles and the stop bit: ``valid``
pulses one cycle with ``data``; a stop bit of 0 pulses ``framing_error`` instead (the byte is dropped).
``UartTx`` sends one byte per ``valid & ready`` handshake; the line idles high.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class UartRx(wiring.Component):
    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError(f"a UART needs at least 4 clocks per bit, got {divisor}")
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "data": Out(8), "valid": Out(1), "framing_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        sync1, line = Signal(init=1), Signal(init=1)
        m.d.sync += [sync1.eq(self.rx), line.eq(sync1)]
        count = Signal(range(self.divisor))
        bit = Signal(range(9))
        shift = Signal(8)
        tick = count == 0
        with m.If(~tick):
            m.d.sync += count.eq(count - 1)
        m.d.sync += [self.valid.eq(0), self.framing_error.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += count.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(tick):
                    with m.If(line):            # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [count.eq(self.divisor - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(tick):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), count.eq(self.divisor - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(tick):
                    with m.If(line):
                        m.d.sync += [self.data.eq(shift), self.valid.eq(1)]
                    with m.Else():
                        m.d.sync += self.framing_error.eq(1)
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError(f"a UART needs at least 4 clocks per bit, got {divisor}")
        self.divisor = divisor
        super().__init__({"tx": Out(1, init=1), "data": In(8), "valid": In(1), "ready": Out(1)})

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(self.divisor))
        left = Signal(range(11))          # bits still to send, start and stop included
        shift = Signal(10, init=0x3FF)
        m.d.comb += [self.ready.eq(left == 0), self.tx.eq(shift[0])]
        with m.If(left == 0):
            with m.If(self.valid):
                m.d.sync += [shift.eq(Cat(0, self.data, 1)), left.eq(10), count.eq(self.divisor - 1)]
        with m.Elif(count == 0):
            m.d.sync += [shift.eq(Cat(shift[1:], 1)), left.eq(left - 1), count.eq(self.divisor - 1)]
        with m.Else():
            m.d.sync += count.eq(count - 1)
        return m
