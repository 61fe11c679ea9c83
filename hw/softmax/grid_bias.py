"""TinyViT's attention bias beside the tile store: queries and keys on an s x s grid, the logit of query
(y, x) and key (y', x') gaining T[|y - y'|][|x - x'|] (``sw.ref.log_softmax.grid_bias``).

Each of the P lanes keeps its own copy of one head's table T (one block RAM each: a beat's P keys need P
entries at once, wherever a key row ends within the beat), written an entry a cycle through ``t_*``.
The read side follows the feeder's beats as the store's does: ``r_first`` starts a row, whose query is
the one after the previous row's (the first row's is (``query_row``, ``query_col``), taken at ``start``);
lane i's key moves P keys on each beat, so only a counter per lane and two absolute differences stand
between a beat and its table addresses. Keys past the row's end read some entry; the feeder drops them. A
tile of side 0 reads the never-written entry ``ZERO_ENTRY``: biases of 0.

Ports (``out_bias`` packs lane i at bits [i BIAS_BITS, (i + 1) BIAS_BITS)):

    in   t_en, t_dy, t_dx, t_entry [BIAS_BITS signed]             table entry T[t_dy][t_dx], all lanes
    in   start, side, query_row, query_col                        a tile's grid, held after start
    in   r_en, r_first                                            a beat of the feeder; r_first: a row's first
    out  out_bias [P x BIAS_BITS]                                 READ_LATENCY cycles after the beat
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..core.config import BIAS_BITS, MAX_BIAS_SIDE

SIDE_BITS = MAX_BIAS_SIDE.bit_length()      # a grid coordinate, and T's row and column address
# A tile of side 0 reads this entry, (15, 15): no table writes it (offsets stay below MAX_BIAS_SIDE), so it
# keeps the zero the block RAM starts with, and the tile adds nothing of the table the lanes still hold.
ZERO_ENTRY = (1 << 2 * SIDE_BITS) - 1


def _absolute_difference(m: Module, a, b, name: str) -> Signal:
    out = Signal(SIDE_BITS, name=name)
    m.d.comb += out.eq(Mux(a >= b, a - b, b - a))
    return out


class GridBias(wiring.Component):
    def __init__(self, lanes: int):
        if lanes < 1 or lanes > MAX_BIAS_SIDE:
            raise ValueError(f"a grid bias needs 1..{MAX_BIAS_SIDE} lanes, got {lanes}")
        self.lanes = lanes
        side = In(range(MAX_BIAS_SIDE + 1))
        coordinate = In(SIDE_BITS)
        super().__init__({
            "t_en": In(1), "t_dy": coordinate, "t_dx": coordinate, "t_entry": In(signed(BIAS_BITS)),
            "start": In(1), "side": side, "query_row": coordinate, "query_col": coordinate,
            "r_en": In(1), "r_first": In(1),
            "out_bias": Out(lanes * BIAS_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.lanes
        side = Signal.like(self.side)
        with m.If(self.start):
            m.d.sync += side.eq(self.side)

        # the query of the row being read, and of the row after it
        qy, qx, next_qy, next_qx = (Signal(SIDE_BITS, name=n) for n in ("qy", "qx", "next_qy", "next_qx"))
        with m.If(self.start):
            m.d.sync += [next_qy.eq(self.query_row), next_qx.eq(self.query_col)]
        cur_qy, cur_qx = Mux(self.r_first, next_qy, qy), Mux(self.r_first, next_qx, qx)
        with m.If(self.r_en & self.r_first):
            wrap = next_qx == side - 1
            m.d.sync += [qy.eq(next_qy), qx.eq(next_qx),
                         next_qx.eq(Mux(wrap, 0, next_qx + 1)), next_qy.eq(next_qy + wrap)]

        entries = []
        for i in range(p):
            # lane i's key: i on a row's first beat (i < P <= s: grid row 0), then P further each beat
            ky, kx = Signal(SIDE_BITS, name=f"ky{i}"), Signal(SIDE_BITS + 1, name=f"kx{i}")
            cur_ky, cur_kx = Mux(self.r_first, 0, ky), Mux(self.r_first, i, kx)
            with m.If(self.r_en):
                ahead = cur_kx + p
                over = ahead >= side
                m.d.sync += [kx.eq(Mux(over, ahead - side, ahead)), ky.eq(cur_ky + over)]
            dy = _absolute_difference(m, cur_qy, cur_ky, f"dy{i}")
            dx = _absolute_difference(m, cur_qx, cur_kx[:SIDE_BITS], f"dx{i}")

            table = Memory(shape=signed(BIAS_BITS), depth=1 << (2 * SIDE_BITS), init=[],
                           attrs={"ram_style": "block"})
            m.submodules[f"table{i}"] = table
            write, read = table.write_port(), table.read_port()
            m.d.comb += [write.addr.eq(Cat(self.t_dx, self.t_dy)), write.data.eq(self.t_entry),
                         write.en.eq(self.t_en),
                         read.addr.eq(Cat(dx, dy) | Mux(side == 0, ZERO_ENTRY, 0)), read.en.eq(self.r_en)]
            entries.append(read.data)
        m.d.sync += self.out_bias.eq(Cat(*entries))
        return m
