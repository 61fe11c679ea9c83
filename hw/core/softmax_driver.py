"""The COMPUTE unit's side of the softmax path (cores with ``softmax_lanes``): a QK^T's raw rows into the
path's tile store, and a SOFTMAX instruction's codes out of the unit into OUT.

Store writes: a ``to_store`` GEMM's output pass hands its rows here instead of to OUT; the row with OUT
row address a (the descriptor makes a = key block x R + tile row) goes to row a mod R, key block a div R.

SOFTMAX, taken in cycle t (``start``, the instruction on ``inst``): its fields are held from t + 1, when
the path starts reading rows 0 .. n_rows - 1 of ``keys`` keys; the unit's codes are packed ``act_bits``
each into OUT words, P codes a beat (P divides a word's codes), every row from a new word, words written
in order from ``out_base``. A word is written the cycle after its last beat; ``done`` is high in the
cycle of the last write (in t + 1 for an empty tile, which writes nothing).

With a grid bias to load (``bias_load``, ``bias_side`` s > 0; cores with ``softmax_bias_side``) the path
starts only once the table's s^2 entries are copied in, one a cycle, from the PARAM slots from word
``bias_addr`` on, which the driver reads through the COMPUTE unit's PARAM port (``param_read``: idle while a
SOFTMAX holds the unit). Later SOFTMAXes of the same table use the path's copy. On a core with
``softmax_relative_side`` a SOFTMAX with ``bias_load`` first copies its tile's n_rows x s relative-term
pairs the same way, a pair a cycle, from the PARAM words from ``bias_addr`` on (s: the key row's slots,
``relative_words`` beats of P; ``isa.Softmax``).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..softmax.grid_bias import SIDE_BITS
from ..softmax.path import SoftmaxPath
from ..softmax.unit import CODE_BITS, UnitWidths
from .config import BIAS_BITS, RELATIVE_PAIR_BITS, RELATIVE_TERM_BITS, SLOT_BITS, SOFTMAX_SCORE_BITS, CoreConfig
from .isa import Softmax, relative_row_slots
from .layouts import layout_of
from .params import CoreParams


def softmax_widths(config: CoreConfig) -> UnitWidths:
    """The unit a core's softmax path is built with: 16-bit scores; biases of ``BIAS_BITS`` where the path
    adds a grid bias, of the unit's default width (a height plus a width term) otherwise."""
    return UnitWidths(lanes=config.softmax_lanes, max_keys=config.softmax_max_keys, score_bits=SOFTMAX_SCORE_BITS,
                      bias_bits=BIAS_BITS if config.softmax_bias_side else UnitWidths.bias_bits)


class SoftmaxDriver(wiring.Component):
    def __init__(self, config: CoreConfig):
        self.config, self.params = config, CoreParams(config)
        p = self.params
        super().__init__({
            "w_en": In(1), "w_addr": In(p.out_addr_bits), "w_row": In(config.bus_bits),
            "start": In(1), "inst": In(layout_of(Softmax)),
            "out_en": Out(1), "out_addr": Out(p.word_addr_bits["out"]), "out_data": Out(config.bus_bits),
            "busy": Out(1), "done": Out(1),
            "param_read": Out(1), "param_addr": Out(p.word_addr_bits["param"]), "param_data": In(config.bus_bits),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        rows, cols, bits, bus = cfg.rows, cfg.cols, cfg.act_bits, cfg.bus_bits
        widths = softmax_widths(cfg)
        lanes = widths.lanes
        m.submodules.path = path = SoftmaxPath(cols, rows, widths, cfg.softmax_relative_side,
                                               grid_bias=bool(cfg.softmax_bias_side))

        row_bits = (rows - 1).bit_length()
        m.d.comb += [path.w_en.eq(self.w_en), path.w_row.eq(self.w_addr[:row_bits]),
                     path.w_block.eq(self.w_addr[row_bits:]), path.w_scores.eq(self.w_row[:cols * SOFTMAX_SCORE_BITS])]

        inst = Signal(layout_of(Softmax))
        busy, go = Signal(), Signal()
        m.d.sync += go.eq(self.start)
        with m.If(self.start):
            m.d.sync += [inst.eq(self.inst), busy.eq(1)]
        m.d.comb += [path.multiplier.eq(inst.multiplier), path.shift.eq(inst.shift), path.tau_shift.eq(inst.tau_log2),
                     path.zero_code.eq(inst.zero_code), path.offset.eq(inst.offset),
                     path.n_rows.eq(inst.n_rows), path.keys.eq(inst.keys)]
        empty = (inst.n_rows == 0) | (inst.keys == 0)
        if cfg.softmax_bias_side:
            m.d.comb += path.start.eq(self._copy_table(m, path, inst) | (go & ~_loads_table(inst)))
        elif cfg.softmax_relative_side:
            words = relative_words(cfg, inst)
            m.d.comb += [path.start.eq(self._copy_terms(m, path, inst, words) | (go & ~inst.bias_load)),
                         path.relative.eq(inst.bias_load), path.rel_words.eq(words), path.key_pad.eq(inst.query_col)]
        else:
            m.d.comb += path.start.eq(go)

        # the packer: beat after beat into a word's groups of P codes; a word leaves when full or at a row's end
        groups = bus // bits // lanes
        group = Signal(range(max(groups, 2)))
        acc = [Signal(lanes * bits, name=f"group{g}") for g in range(groups)]
        codes = Cat(*(Mux(path.out_keep[i], path.out_codes[i * CODE_BITS:][:bits], 0) for i in range(lanes)))
        beat = path.out_valid
        filled = [Mux(group == g, codes, acc[g]) for g in range(groups)]
        complete = beat & (path.out_last | (group == groups - 1))
        word, write, addr = Signal(bus), Signal(), Signal.like(self.out_addr)
        rows_out = Signal(range(rows + 1))
        with m.If(self.start):
            m.d.sync += [addr.eq(self.inst.out_base), rows_out.eq(0), group.eq(0)]
        m.d.sync += write.eq(complete)
        with m.If(complete):
            m.d.sync += [word.eq(Cat(*filled)), group.eq(0), addr.eq(addr + 1)] + [a.eq(0) for a in acc]
        with m.Elif(beat):
            m.d.sync += [group.eq(group + 1)] + [a.eq(f) for a, f in zip(acc, filled)]
        with m.If(beat & path.out_last):
            m.d.sync += rows_out.eq(rows_out + 1)
        write_addr = Signal.like(addr)
        m.d.sync += write_addr.eq(addr)
        m.d.comb += [self.out_en.eq(write), self.out_addr.eq(write_addr), self.out_data.eq(word)]

        # done: the tile's last word written (or, for an empty tile, the cycle after start)
        last_write = write & (rows_out == inst.n_rows) & ~path.busy
        finish = busy & ~self.start & Mux(empty, go, last_write)
        with m.If(finish):
            m.d.sync += busy.eq(0)
        m.d.comb += [self.done.eq(finish), self.busy.eq(busy)]
        return m

    def _copy_table(self, m: Module, path: SoftmaxPath, inst) -> Signal:
        """With ``bias_load``, the grid bias table into the path: entry e = dy s + dx, the low bits of PARAM
        slot e from word ``bias_addr``; high in the cycle of the last entry's write."""
        side = inst.bias_side
        written, dy, dx, slot, last = self._copy(
            m, inst, _loads_table(self.inst), outer_last=side - 1, inner_last=side - 1, outer=SIDE_BITS,
            inner=SIDE_BITS, count=2 * SIDE_BITS, per_word=self.config.slots_per_param_word, stride=SLOT_BITS)
        m.d.comb += [path.t_en.eq(written), path.t_dy.eq(dy), path.t_dx.eq(dx), path.t_entry.eq(slot[:BIAS_BITS]),
                     path.side.eq(side), path.query_row.eq(inst.query_row), path.query_col.eq(inst.query_col)]
        return last

    def _copy_terms(self, m: Module, path: SoftmaxPath, inst, words) -> Signal:
        """With ``bias_load``, the tile's relative terms into the path's store: pair e = r s + i (s = ``words``
        beats of P key slots), q pairs a PARAM word from ``bias_addr``; high in the cycle of the last pair's
        write."""
        cfg = self.config
        side = cfg.softmax_relative_side
        written, row, index, pair, last = self._copy(
            m, inst, self.inst.bias_load, outer_last=inst.n_rows - 1,
            inner_last=(words << (cfg.softmax_lanes.bit_length() - 1)) - 1,     # s - 1
            outer=range(max(cfg.rows, 2)), inner=max((side - 1).bit_length(), 1), count=range(cfg.rows * side + 1),
            per_word=cfg.bus_bits // RELATIVE_PAIR_BITS, stride=RELATIVE_PAIR_BITS)
        m.d.comb += [path.rel_en.eq(written), path.rel_row.eq(row), path.rel_index.eq(index),
                     path.rel_height.eq(pair[:RELATIVE_TERM_BITS].as_signed()),
                     path.rel_width.eq(pair[RELATIVE_TERM_BITS:].as_signed())]
        return last

    def _copy(self, m: Module, held, loads, *, outer_last, inner_last, outer, inner, count, per_word: int, stride: int):
        """A copy into the path before a SOFTMAX's rows, one item a cycle through the COMPUTE unit's PARAM
        port. The SOFTMAX is taken in cycle t, when ``loads`` (of the instruction then) and a tile that is not
        empty start the copy; ``held`` is the instruction as held from t + 1. Item e = o n + i (o <=
        ``outer_last``, i < n = ``inner_last`` + 1) is bits [k stride, (k + 1) stride) of word ``bias_addr`` +
        e div ``per_word`` (k = e mod ``per_word``), read in cycle t + 1 + e. Returns, for the cycle after each
        read: the write's enable, o, i, the item, and whether it is the last."""
        taken = self.inst
        lg = (per_word - 1).bit_length()
        copying, e, o, i = Signal(), Signal(count), Signal(outer), Signal(inner)
        with m.If(self.start):
            m.d.sync += [copying.eq(loads & (taken.n_rows != 0) & (taken.keys != 0)), e.eq(0), o.eq(0), i.eq(0)]
        with m.Elif(copying):
            row_end = i == inner_last
            m.d.sync += [e.eq(e + 1), i.eq(Mux(row_end, 0, i + 1)), o.eq(o + row_end)]
            with m.If(row_end & (o == outer_last)):
                m.d.sync += copying.eq(0)
        m.d.comb += [self.param_read.eq(copying), self.param_addr.eq(held.bias_addr + (e >> lg))]
        written, at_o, at_i, pick, last = Signal(), Signal.like(o), Signal.like(i), Signal(max(lg, 1)), Signal()
        m.d.sync += [written.eq(copying), at_o.eq(o), at_i.eq(i), pick.eq(e[:lg] if lg else 0),
                     last.eq(copying & (i == inner_last) & (o == outer_last))]
        items = [self.param_data[k * stride:][:stride] for k in range(per_word)]
        return written, at_o, at_i, Array(items)[pick] if lg else items[0], last


def relative_words(config: CoreConfig, inst):
    """Beats of P key slots in a key row of a relative SOFTMAX (``isa.relative_row_slots``), of its view."""
    return Mux(inst.bias_side == 0, config.softmax_relative_side // config.softmax_lanes, inst.bias_side)


def copy_cycles(config: CoreConfig, inst) -> int:
    """Cycles a SOFTMAX (``isa.Softmax``) of a non-empty tile spends copying into the path before its rows."""
    if config.softmax_relative_side:
        slots = relative_row_slots(config.softmax_relative_side, config.softmax_lanes, inst.bias_side)
        return inst.bias_load * inst.n_rows * slots
    return inst.bias_load * inst.bias_side ** 2


def _loads_table(inst):
    """A SOFTMAX that copies its grid-bias table into the path before its rows (an empty tile copies none)."""
    return inst.bias_load & (inst.bias_side != 0)
