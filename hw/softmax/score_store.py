"""The store between the core's array and the softmax unit: one tile's rows of integer scores, held until
each row is complete, then read into the unit ``lanes`` keys per beat in key order.

The array finishes a tile of R rows x K keys (one key per lane of the core); its lanes deliver the tile's
rows one per cycle, each with K scores at once. So the store has one memory per lane: memory k holds the
scores of keys k, K + k, 2K + k, ... of every row, at address (row, key div K). The unit reads a row's
keys j .. j + P - 1 (P = ``lanes``, a divisor of K): one key block, P consecutive memories, the same
address in all of them, so each unit lane picks its score from K / P memories.

SAM ViT's decomposed relative-position term (``relative_side`` = s, the largest key grid's side) is stored
as its two per-row tables of up to s terms each: height terms in one memory, at (row, key row), width terms
in another as words of P terms, at (row, key column div P). A key row is ``rel_words`` beats of P key
slots (s / P for the largest grid; a narrower grid's rows are padded to whole beats, and the reader masks
the padding), so a beat's P keys share their key row; its bias for lane i is the height term plus the width
term of lane i, in ``bias_bits`` (the unit's bias input).

Ports (each P- or K-wide field packs lane i at bits [i w, (i + 1) w)):

    in   w_en, w_row, w_block, w_scores [K x score_bits]        a row of a tile: keys w_block K + k
    in   rel_en, rel_row, rel_index, rel_height, rel_width       relative terms of key row / column rel_index
    in   rel_words                                               beats of a key row (held for a tile)
    in   r_en, r_first, r_row                                    a beat of row r_row; r_first: its first
    out  r_row_end                                               this beat ends a key row (combinational)
    out  out_valid, out_scores [P x score_bits], out_bias [P x bias_bits]   READ_LATENCY cycles later

The read side counts beats itself (key block, lane group, key row and column), so a reader only says
where a row starts. Sizes: ``tile_store_ebr`` in sw/estimate/softmax_unit.py prices the same memories.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

READ_LATENCY = 2      # the memories' synchronous read, then the lane pick (and the bias sum) registered


def _bits(n: int) -> int:
    """Address bits of an index below n (at least 1)."""
    return max((n - 1).bit_length(), 1)


class ScoreStore(wiring.Component):
    def __init__(self, cols: int, rows: int, max_keys: int, score_bits: int, lanes: int,
                 relative_side: int = 0, bias_bits: int = 18):
        if lanes < 1 or cols % lanes or lanes & (lanes - 1):
            raise ValueError(f"lanes must be a power of two dividing cols {cols}, got {lanes}")
        if relative_side and (relative_side % lanes or relative_side * relative_side < max_keys):
            raise ValueError(f"relative side {relative_side} must be a multiple of lanes {lanes} and cover "
                             f"{max_keys} keys")
        self.cols, self.rows, self.max_keys, self.score_bits = cols, rows, max_keys, score_bits
        self.lanes, self.relative_side, self.bias_bits = lanes, relative_side, bias_bits
        self.blocks = -(-max_keys // cols)
        members = {
            "w_en": In(1), "w_row": In(range(max(rows, 2))), "w_block": In(range(max(self.blocks, 2))),
            "w_scores": In(cols * score_bits),
            "r_en": In(1), "r_first": In(1), "r_row": In(range(max(rows, 2))),
            "out_valid": Out(1), "out_scores": Out(lanes * score_bits),
        }
        if relative_side:
            members.update({"rel_en": In(1), "rel_row": In(range(max(rows, 2))),
                            "rel_index": In(range(max(relative_side, 2))),
                            "rel_height": In(signed(bias_bits)), "rel_width": In(signed(bias_bits)),
                            "rel_words": In(range(relative_side // lanes + 1)), "r_row_end": Out(1),
                            "out_bias": Out(lanes * bias_bits)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        k, p, b = self.cols, self.lanes, self.score_bits
        groups = k // p
        block_bits, row_bits = _bits(self.blocks), _bits(self.rows)

        # the read side's place in the row: this beat's key block and lane group (0 on a row's first beat)
        block, group = Signal(block_bits), Signal(range(max(groups, 2)))
        cur_block = Signal(block_bits)
        cur_group = Signal(range(max(groups, 2)))
        m.d.comb += [cur_block.eq(Mux(self.r_first, 0, block)), cur_group.eq(Mux(self.r_first, 0, group))]
        with m.If(self.r_en):
            last_group = cur_group == groups - 1
            m.d.sync += [group.eq(Mux(last_group, 0, cur_group + 1)), block.eq(cur_block + last_group)]

        picked = []
        for lane in range(k):
            mem = Memory(shape=b, depth=self.rows << block_bits, init=[])
            m.submodules[f"scores{lane}"] = mem
            write, read = mem.write_port(), mem.read_port()
            m.d.comb += [write.addr.eq(Cat(self.w_block[:block_bits], self.w_row[:row_bits])),
                         write.data.eq(self.w_scores[lane * b:(lane + 1) * b]), write.en.eq(self.w_en),
                         read.addr.eq(Cat(cur_block, self.r_row[:row_bits])), read.en.eq(self.r_en)]
            picked.append(read.data)
        group_then = Signal.like(cur_group)
        m.d.sync += group_then.eq(cur_group)
        with m.Switch(group_then):
            for g in range(groups):
                with m.Case(g):
                    m.d.sync += self.out_scores.eq(Cat(*picked[g * p:(g + 1) * p]))
        valid = Signal()
        m.d.sync += [valid.eq(self.r_en), self.out_valid.eq(valid)]
        if self.relative_side:
            self._relative(m, row_bits)
        return m

    def _relative(self, m: Module, row_bits: int):
        side, p, w = self.relative_side, self.lanes, self.bias_bits
        index_bits, word_bits = _bits(side), _bits(side // p)
        lane_bits = (p - 1).bit_length()
        heights = Memory(shape=w, depth=self.rows << index_bits, init=[])
        widths = Memory(shape=p * w, depth=self.rows << word_bits, init=[])
        m.submodules.heights, m.submodules.widths = heights, widths
        h_write = heights.write_port()
        w_write = widths.write_port(granularity=w)
        m.d.comb += [h_write.addr.eq(Cat(self.rel_index[:index_bits], self.rel_row[:row_bits])),
                     h_write.data.eq(self.rel_height), h_write.en.eq(self.rel_en),
                     w_write.addr.eq(Cat(self.rel_index[lane_bits:][:word_bits], self.rel_row[:row_bits])),
                     w_write.data.eq(self.rel_width.as_unsigned().replicate(p))]
        lane_of = self.rel_index[:lane_bits] if lane_bits else 0
        for i in range(p):
            m.d.comb += w_write.en[i].eq(self.rel_en & (lane_of == i))

        # key row and key-column word of this beat, counted like the key blocks
        key_row, word = Signal(index_bits), Signal(word_bits)
        cur_row, cur_word = Signal(index_bits), Signal(word_bits)
        m.d.comb += [cur_row.eq(Mux(self.r_first, 0, key_row)), cur_word.eq(Mux(self.r_first, 0, word))]
        last_word = cur_word == self.rel_words - 1
        m.d.comb += self.r_row_end.eq(last_word)
        with m.If(self.r_en):
            m.d.sync += [word.eq(Mux(last_word, 0, cur_word + 1)), key_row.eq(cur_row + last_word)]
        h_read, w_read = heights.read_port(), widths.read_port()
        m.d.comb += [h_read.addr.eq(Cat(cur_row, self.r_row[:row_bits])), h_read.en.eq(self.r_en),
                     w_read.addr.eq(Cat(cur_word, self.r_row[:row_bits])), w_read.en.eq(self.r_en)]
        height = h_read.data.as_signed()
        m.d.sync += self.out_bias.eq(Cat(*[(height + w_read.data[i * w:(i + 1) * w].as_signed())[:w]
                                           for i in range(p)]))
