"""Address walks of a LOAD or STORE: its AXI bursts on the external side, its words on the buffer side.

A transfer is ``rows`` rows of ``row_words`` words (``isa.Transfer``). Externally each row is cut
into INCR bursts that stop at a row end and at every 4 KiB boundary (AXI4 forbids crossing one;
with a bus of 256 bits or more that also keeps a burst within 256 beats). The buffer side sees the
same words in the same order, one per beat.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .isa import Transfer
from .layouts import field_width

EXT_BITS = field_width(Transfer, "ext_addr")
BUF_BITS = field_width(Transfer, "buf_addr")
ROWS_BITS = field_width(Transfer, "rows")
ROW_WORDS_BITS = field_width(Transfer, "row_words")


class BurstPlanner(wiring.Component):
    """The bursts of a transfer, one per ``next``; ``valid`` from the cycle after ``start``."""

    def __init__(self, boundary_words: int):
        assert boundary_words & (boundary_words - 1) == 0 and boundary_words <= 256
        self.boundary_bits = boundary_words.bit_length() - 1
        super().__init__({
            "start": In(1), "ext_addr": In(EXT_BITS), "rows": In(ROWS_BITS), "row_words": In(ROW_WORDS_BITS),
            "ext_stride": In(EXT_BITS),
            "valid": Out(1), "addr": Out(EXT_BITS), "len": Out(9), "last": Out(1), "next": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        row_start, left = Signal(EXT_BITS), Signal(ROW_WORDS_BITS)
        rows_left, row_words, stride = Signal(ROWS_BITS), Signal(ROW_WORDS_BITS), Signal(EXT_BITS)
        to_boundary = (1 << self.boundary_bits) - self.addr[:self.boundary_bits]
        row_end = left <= to_boundary
        m.d.comb += [self.valid.eq(rows_left != 0), self.len.eq(Mux(row_end, left, to_boundary)),
                     self.last.eq((rows_left == 1) & row_end)]
        with m.If(self.start):
            m.d.sync += [self.addr.eq(self.ext_addr), row_start.eq(self.ext_addr), left.eq(self.row_words),
                         rows_left.eq(Mux(self.row_words == 0, 0, self.rows)), row_words.eq(self.row_words),
                         stride.eq(self.ext_stride)]
        with m.Elif(self.next):
            with m.If(row_end):
                m.d.sync += [rows_left.eq(rows_left - 1), row_start.eq(row_start + stride),
                             self.addr.eq(row_start + stride), left.eq(row_words)]
            with m.Else():
                m.d.sync += [self.addr.eq(self.addr + self.len), left.eq(left - self.len)]
        return m


class RowWalker(wiring.Component):
    """Buffer word addresses of a transfer, one per ``step``; ``valid`` from the cycle after ``start``."""

    def __init__(self):
        super().__init__({
            "start": In(1), "buf_addr": In(BUF_BITS), "rows": In(ROWS_BITS), "row_words": In(ROW_WORDS_BITS),
            "buf_stride": In(BUF_BITS),
            "valid": Out(1), "addr": Out(BUF_BITS), "last": Out(1), "step": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        row_addr, word = Signal(BUF_BITS), Signal(ROW_WORDS_BITS)
        rows_left, row_words, stride = Signal(ROWS_BITS), Signal(ROW_WORDS_BITS), Signal(BUF_BITS)
        row_end = word + 1 == row_words
        m.d.comb += [self.valid.eq(rows_left != 0), self.last.eq((rows_left == 1) & row_end)]
        with m.If(self.start):
            m.d.sync += [row_addr.eq(self.buf_addr), self.addr.eq(self.buf_addr), word.eq(0),
                         rows_left.eq(Mux(self.row_words == 0, 0, self.rows)), row_words.eq(self.row_words),
                         stride.eq(self.buf_stride)]
        with m.Elif(self.step):
            with m.If(row_end):
                m.d.sync += [word.eq(0), rows_left.eq(rows_left - 1), row_addr.eq(row_addr + stride),
                             self.addr.eq(row_addr + stride)]
            with m.Else():
                m.d.sync += [word.eq(word + 1), self.addr.eq(self.addr + 1)]
        return m
