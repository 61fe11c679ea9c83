"""The softmax's path beside the core: the tile store (``score_store``) feeding the unit (``unit``) a row at a
time, so that a tile's rows, written as the array delivers them, leave as codes.

After ``start`` (with the tile's ``n_rows`` and the rows' ``keys``) the feeder reads rows 0 .. n_rows - 1
from the store, ``lanes`` keys per beat, the last beat's lanes past ``keys`` not kept (nor, with relative
terms, the last ``key_pad`` lanes of each key row's last beat: a narrower grid's padding), into a FIFO from
which the unit takes beats when it is ready. A read is issued only while the FIFO has room for it and for
the reads still in the store's pipeline, so nothing is dropped and, the FIFO being deeper than that
pipeline, the unit is never kept waiting once the first beat is through: the rows take the unit's own
cycles (``unit.row_cycles``) plus ``FEED_LATENCY`` once.

The store's write ports and the unit's layer constants and outputs are this component's own; so, with
``grid_bias``, are the grid bias's table writes and grid (``grid_bias.py``), whose biases go with the
store's scores.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..core.config import BIAS_BITS
from ..units.pipeline import delay
from .grid_bias import GridBias
from .score_store import READ_LATENCY, ScoreStore
from .unit import LogSoftmaxUnit, UnitWidths

# a read's round trip to the FIFO's output (the store, the FIFO's write, its output register) and two more:
# the unit never waits on the feeder within a tile
FIFO_DEPTH = READ_LATENCY + 4
FEED_LATENCY = 1 + READ_LATENCY + 1     # issue, the store's read, the FIFO's output register


class SoftmaxPath(wiring.Component):
    def __init__(self, cols: int, rows: int, widths: UnitWidths, relative_side: int = 0, grid_bias: bool = False):
        if relative_side and grid_bias:
            raise ValueError("a path adds either relative-position terms or a grid bias")
        self.store = ScoreStore(cols, rows, widths.max_keys, widths.score_bits, widths.lanes, relative_side,
                                widths.bias_bits)
        self.unit = LogSoftmaxUnit(widths)
        self.grid = GridBias(widths.lanes) if grid_bias else None
        if grid_bias and widths.bias_bits != BIAS_BITS:
            raise ValueError(f"a grid bias feeds {BIAS_BITS}-bit biases, the unit takes {widths.bias_bits}")
        self.widths, self.relative_side = widths, relative_side
        members = {name: member for name, member in self.store.signature.members.items()
                   if name.startswith(("w_", "rel_"))}
        if grid_bias:
            members.update({name: member for name, member in self.grid.signature.members.items()
                            if name.startswith("t_") or name in ("side", "query_row", "query_col")})
        members.update({name: member for name, member in self.unit.signature.members.items()
                        if not name.startswith("in_")})
        if relative_side:       # held for a tile: add its relative terms (the store keeps the last tile's)
            # and the last key_pad lanes of each key row's last beat are padding, not keys
            members.update({"relative": In(1), "key_pad": In(range(widths.lanes))})
        members.update({"start": In(1), "n_rows": In(range(rows + 1)), "keys": In(range(widths.max_keys + 1)),
                        "busy": Out(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        w = self.widths
        p = w.lanes
        m.submodules.store = store = self.store
        m.submodules.unit = unit = self.unit
        grid = self.grid
        if grid is not None:
            m.submodules.grid = grid
        for name in self.signature.members:
            if name.startswith(("w_", "rel_")):
                m.d.comb += getattr(store, name).eq(getattr(self, name))
            elif grid is not None and name in grid.signature.members:
                m.d.comb += getattr(grid, name).eq(getattr(self, name))
            elif hasattr(unit, name) and self.unit.signature.members[name].flow == In:
                m.d.comb += getattr(unit, name).eq(getattr(self, name))
            elif hasattr(unit, name):
                m.d.comb += getattr(self, name).eq(getattr(unit, name))

        # the feeder's place: row and beat; the tile's size, held from start
        row, beat = Signal.like(self.n_rows), Signal(range(w.depth + 1))
        n_rows, beats, keys = Signal.like(self.n_rows), Signal(range(w.depth + 1)), Signal.like(self.keys)
        with m.If(self.start):
            m.d.sync += [row.eq(0), beat.eq(0), n_rows.eq(self.n_rows), keys.eq(self.keys),
                         beats.eq((self.keys + p - 1) // p)]
        active = (row < n_rows) & (beats != 0)

        entry = p * w.score_bits + p * w.bias_bits + p + 1
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=entry, depth=FIFO_DEPTH)
        issue = Signal()
        in_flight = sum(delay(m, issue, i, f"issued{i}") for i in range(1, READ_LATENCY + 1))
        m.d.comb += issue.eq(active & ~self.start & (fifo.level + in_flight < FIFO_DEPTH))
        m.d.comb += [store.r_en.eq(issue), store.r_first.eq(beat == 0), store.r_row.eq(row)]
        last = beat == beats - 1
        with m.If(issue):
            m.d.sync += beat.eq(beat + 1)
            with m.If(last):
                m.d.sync += [beat.eq(0), row.eq(row + 1)]
        first_key = beat * p
        keep = Cat(*[first_key + i < keys for i in range(p)])
        if self.relative_side:      # a narrower grid's key rows padded to whole beats
            padding = self.relative & store.r_row_end
            keep = Cat(*[keep[i] & ~(padding & (i >= p - self.key_pad)) for i in range(p)])
        tag = delay(m, Cat(keep, last), READ_LATENCY, "tag")
        if grid is not None:
            m.d.comb += [grid.start.eq(self.start), grid.r_en.eq(issue), grid.r_first.eq(beat == 0)]
            bias = grid.out_bias
        else:
            bias = Mux(self.relative, store.out_bias, 0) if self.relative_side else Const(0, p * w.bias_bits)
        m.d.comb += [fifo.w_data.eq(Cat(store.out_scores, bias, tag)), fifo.w_en.eq(store.out_valid)]

        data = fifo.r_data
        m.d.comb += [unit.in_valid.eq(fifo.r_rdy), fifo.r_en.eq(unit.in_ready),
                     unit.in_scores.eq(data[:p * w.score_bits]),
                     unit.in_bias.eq(data[p * w.score_bits:p * (w.score_bits + w.bias_bits)]),
                     unit.in_keep.eq(data[p * (w.score_bits + w.bias_bits):][:p]),
                     unit.in_last.eq(data[-1])]
        m.d.comb += self.busy.eq(active | (in_flight != 0) | fifo.r_rdy)
        return m
