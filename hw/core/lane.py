"""The column lanes: each holds its column's segment sums and combines them with ONE pipelined
48 x 32-bit multiplier (6 MULT18X18D), which also forms the requantization product; two neighbouring
lanes share the requantization tail that follows the product (shift, round, clamp).

The column's OR-tree delivers the R rows of a finished segment one per cycle; they are written to a
small memory (X and Y sums by row) that the lane reads by row. Its memories are block RAM (or LUT RAM:
``CoreConfig.lane_ram``) with synchronous reads, the accumulators in two copies (one read for the
accumulate, one for the output).
Pipeline of one lane, for a row operation issued in cycle q (the sequencer drives every stage):

    q           the row's sums and accumulator are read (block RAM, synchronous)
    q+1         A = X[r], Y[r] or acc[r] (+ bias for a requantization);  B = m, M or 1 (raw)
    q+2 .. +L   product p = A * B (``PipelinedMultiplier``, L = its latency)
    q+2+L       combine:  acc[r] = (first ? 0 : acc[r]) + p     (48 bits, two's complement)
                requantize (the pair's tail): f = p >> (16 + a), a = min(shift - 17, 63), two stages
    q+4+L       v = (f + 2 z + 1) >> 1                    z = out_zero_point
    q+5+L       out = clamp(v, q_min, q_max); raw: out = p, three cycles later (low 32 bits)

This is ``sw.ref.arith.requantize`` in the form of ``hw.units.requant``: floor(acc M / 2^(shift-1)),
then (t + 1 + 2 z) >> 1, for the contract's shifts 17..78. The bias joins the accumulator when it is
read for requantization; every sum is modulo 2^48, exact whenever the final accumulator fits
(|acc| < 2^47).

The odd lane of a pair runs the same control one cycle after the even lane (``ODD_LAG``), and a
requantizing output pass issues a row at most every second cycle, so the two lanes' products reach the
shared tail in alternate cycles.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sw.bundle.fixed_point import SHIFT_MIN

from ..units.dsp_multiply import PipelinedMultiplier
from ..units.pipeline import delay
from .config import LANE_ACC_BITS, CoreConfig
from .isa import LOOKUP_VALUE_BITS, ColumnSlot, DescLoops
from .layouts import field_width
from .params import LANE_B_BITS, REQUANT_SHIFT_FLOOR, CoreParams

SRC_X, SRC_Y, SRC_ACC = 0, 1, 2
B_SEGMENT, B_RAW, B_REQUANT = 0, 1, 2
OUT_BITS = 32
QBITS = field_width(DescLoops, "q_min")
KEPT_BITS = 36          # of the floored product; the clamp bounds are 33-bit
PRODUCT_BITS = 63       # |acc M| < 2^78, so p >> 16 fits 63 signed bits
PRODUCT_SHAPE = signed(LANE_ACC_BITS + LANE_B_BITS + 1)


def lane_control_layout(rows: int) -> data.StructLayout:
    """The control of one lane, one field group per pipeline stage (each already aligned)."""
    row = unsigned(max(rows - 1, 1).bit_length())
    return data.StructLayout({
        "issue_src": 2, "issue_row": row,                         # q
        "add_bias": 1, "b_sel": 2, "m": LANE_B_BITS,             # q+1
        "acc_row": row,                                          # q+1+L: read ahead of the accumulate
        "acc_we": 1, "acc_first": 1,                             # q+2+L
        "requant": 1,                                            # q+2+L: the tail takes this lane's p
        "out_we": 1, "out_raw": 1,                               # q+5+L
    })


def lookup_layout(steps: int) -> data.StructLayout:
    """A GEMM's output lookup as the tails read it: how many steps are on (0: none), the base code and
    the steps (``isa.LookupStep``)."""
    w = {f.name: f for f in DescLoops.LAYOUT}
    step = data.StructLayout({"threshold": signed(LOOKUP_VALUE_BITS), "down": 1})
    return data.StructLayout({"n": unsigned(w["lookup_steps"].width), "base": signed(w["lookup_base"].width),
                              "steps": data.ArrayLayout(step, steps)})


def column_constants_layout() -> data.StructLayout:
    """The lane's part of a ColumnSlot (the zero point stays with the array's column decode)."""
    w = {f.name: f for f in ColumnSlot.LAYOUT}
    return data.StructLayout({"bias": signed(w["bias"].width), "multiplier": unsigned(w["multiplier"].width),
                              "shift": unsigned(w["shift"].width), "out_zero_point": signed(w["out_zero_point"].width)})


def tree_sum(bits):
    """The number of ones in ``bits``, as a balanced tree of adders."""
    terms = [bits[i].as_unsigned() for i in range(len(bits))]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def shift_keep(m: Module, x, amount, register_after: int):
    """(x >> amount)[:KEPT_BITS] and whether x >> amount needs more bits, for signed x and an unsigned
    amount, with a pipeline register after level ``register_after`` (a wide one-stage shifter maps to
    twice the LUTs); each level keeps only the bits the remaining levels can still bring below
    KEPT_BITS, and notes whether a dropped bit differs from the sign. One cycle of latency."""
    sign = x[-1]
    overflow = 0
    value = x
    for level in reversed(range(len(amount))):
        value = Mux(amount[level], value >> (1 << level), value)
        keep = KEPT_BITS + (1 << level) - 1
        if len(value) > keep:
            dropped = value[keep:]
            overflow = overflow | (dropped != sign.replicate(len(dropped)))
            value = value[:keep].as_signed()
        if level == register_after:
            staged = [Signal(signed(len(value)), name="shift_part"), Signal(name="shift_overflow"),
                      Signal(level, name="shift_rest"), Signal(name="shift_sign")]
            m.d.sync += [staged[0].eq(value), staged[1].eq(overflow), staged[2].eq(amount[:level]),
                         staged[3].eq(sign)]
            value, overflow, sign = staged[0], staged[1], staged[3]
            amount = Cat(staged[2], amount[level:])     # the levels done are never read again
    overflow = overflow | (value[KEPT_BITS - 1] != sign)
    return value, overflow


class RequantTail(wiring.Component):
    """p -> clamp(((p >> (shift - 1)) + 1 + 2 z) >> 1, q_min, q_max): three registers (two for the
    shift, one for the rounding), then the clamp. Each input is read in its own stage: p and shift;
    two cycles later zero_point; three cycles later the bounds, with ``out`` (the low 32 bits)
    combinational from the third register.

    Only 36 bits of f = p >> (shift - 1) are kept; an f that needs more (noted while shifting) is
    replaced by +-2^35, which any 33-bit clamp bound maps to the right end (|v| >= 2^34 - 2^23).

    With ``lookup_steps`` > 0 two more registers follow: the clamped value, then its comparisons with the
    thresholds of ``lookup`` (read a cycle after the bounds); ``out`` is then ``isa.lookup`` of it, or the
    clamped value itself when the GEMM has no lookup (``lookup.n`` = 0)."""

    def __init__(self, lookup_steps: int = 0):
        self.lookup_steps = lookup_steps
        members = {"p": In(PRODUCT_SHAPE), "shift": In(7), "zero_point": In(signed(24)),
                   "q_min": In(signed(QBITS)), "q_max": In(signed(QBITS)), "out": Out(OUT_BITS)}
        if lookup_steps:
            members["lookup"] = In(lookup_layout(lookup_steps))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        # floor by 2^(shift - 1) = 2^16 2^a; shifts past 78 floor to the sign like 63 does (|p| < 2^78)
        past = self.shift - SHIFT_MIN
        amount = Mux(past > 63, 63, past[:6])
        x = (self.p >> REQUANT_SHIFT_FLOOR)[:PRODUCT_BITS].as_signed()
        kept, overflow = shift_keep(m, x, amount, register_after=3)
        floored, saturated, negative = Signal(signed(KEPT_BITS)), Signal(), Signal()
        m.d.sync += [floored.eq(kept), saturated.eq(overflow), negative.eq(delay(m, x[-1], 1, "sign"))]

        # round half up and add the output zero point in one addition
        value = Signal(signed(KEPT_BITS + 1))
        top = 1 << (KEPT_BITS - 1)
        f = Mux(saturated, Mux(negative, -top, top - 1), floored)
        m.d.sync += value.eq((f + (self.zero_point << 1) + 1) >> 1)

        clamped = Mux(value < self.q_min, self.q_min, Mux(value > self.q_max, self.q_max, value))
        if not self.lookup_steps:
            m.d.comb += self.out.eq(clamped[:OUT_BITS])
            return m
        held = Signal(signed(OUT_BITS), name="clamped")
        m.d.sync += held.eq(clamped[:OUT_BITS])
        # a lookup GEMM's bounds lie in the thresholds' width, so its comparisons need only those bits
        narrow = held[:LOOKUP_VALUE_BITS].as_signed()
        up, down = Signal(self.lookup_steps), Signal(self.lookup_steps)
        passed = Signal(signed(OUT_BITS), name="passed")
        for i in range(self.lookup_steps):
            step = self.lookup.steps[i]
            reached = (narrow >= step.threshold) & (i < self.lookup.n)
            m.d.sync += [up[i].eq(reached & ~step.down), down[i].eq(reached & step.down)]
        m.d.sync += passed.eq(held)
        count = Signal(signed(self.lookup_steps.bit_length() + 1))
        m.d.comb += count.eq(tree_sum(up) - tree_sum(down))
        looked_up = self.lookup.base + count
        m.d.comb += self.out.eq(Mux(self.lookup.n != 0, looked_up, passed))
        return m


class Lane(wiring.Component):
    """Sums, accumulators and the multiplier of one column; ``p``/``requant`` go to the pair's tail,
    whose result comes back as ``tail_out``."""

    def __init__(self, config: CoreConfig):
        self.config, self.params = config, CoreParams(config)
        acc = signed(config.pe_acc_bits)
        self.multiplier = PipelinedMultiplier(signed(LANE_ACC_BITS), unsigned(LANE_B_BITS))
        assert self.multiplier.latency == self.params.lane_mul_latency
        super().__init__({
            "ctl": In(lane_control_layout(config.rows)),
            "col_x": In(acc), "col_y": In(acc),      # the column's OR-tree, written at row col_row
            "col_we": In(1), "col_row": In(range(max(config.rows, 2))),
            "consts": In(column_constants_layout()),
            "p": Out(PRODUCT_SHAPE), "requant": Out(1), "tail_out": In(OUT_BITS),
            "out": Out(OUT_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, ctl, k = self.config, self.ctl, self.consts
        rows, acc_bits = cfg.rows, cfg.pe_acc_bits
        m.submodules.multiplier = mul = self.multiplier
        both = self.params.has_y_sums
        # Block RAM by default: rows-deep memories in LUT RAM cost 6 LUT4 sites per 4 bits on ECP5, but
        # keep the lane's nets local (CoreConfig.lane_ram).
        style = {"ram_style": "block" if cfg.lane_ram == "block" else "distributed"}
        m.submodules.sums = sums = Memory(shape=(2 if both else 1) * acc_bits, depth=rows, init=[], attrs=style)
        m.submodules.acc_update = acc_u = Memory(shape=signed(LANE_ACC_BITS), depth=rows, init=[], attrs=style)
        m.submodules.acc_output = acc_o = Memory(shape=signed(LANE_ACC_BITS), depth=rows, init=[], attrs=style)
        sum_w, sum_r = sums.write_port(), sums.read_port()
        m.d.comb += [sum_w.addr.eq(self.col_row), sum_w.data.eq(self.col_x if not both else
                                                               self.col_x.as_unsigned() | self.col_y.as_unsigned() << acc_bits),
                     sum_w.en.eq(self.col_we), sum_r.addr.eq(ctl.issue_row)]

        # q: the row's sums and accumulator are read; q+1: the operand, the bias and the second operand
        out_r = acc_o.read_port()
        m.d.comb += out_r.addr.eq(ctl.issue_row)
        src = delay(m, ctl.issue_src, 1, "src")
        x = sum_r.data[:acc_bits].as_signed()
        y = sum_r.data[acc_bits:].as_signed() if both else x
        a0 = Mux(src == SRC_X, x, Mux(src == SRC_Y, y, out_r.data))
        a, b = Signal(signed(LANE_ACC_BITS)), Signal(LANE_B_BITS)
        m.d.sync += [a.eq((a0 + Mux(ctl.add_bias, k.bias, 0))[:LANE_ACC_BITS].as_signed()),
                     b.eq(Mux(ctl.b_sel == B_SEGMENT, ctl.m, Mux(ctl.b_sel == B_RAW, 1, k.multiplier)))]
        m.d.comb += [mul.a.eq(a), mul.b.eq(b), self.p.eq(mul.p), self.requant.eq(ctl.requant)]

        # q+2+L: accumulate (acc_row arrives one cycle ahead, for the synchronous read)
        update_r = acc_u.read_port()
        row = delay(m, ctl.acc_row, 1, "acc_row")
        total = (Mux(ctl.acc_first, 0, update_r.data) + mul.p[:LANE_ACC_BITS])[:LANE_ACC_BITS]
        m.d.comb += update_r.addr.eq(ctl.acc_row)
        for mem in (acc_u, acc_o):
            write = mem.write_port()
            m.d.comb += [write.addr.eq(row), write.data.eq(total), write.en.eq(ctl.acc_we)]

        # q+5+L: the row's result, held while its W words are written
        raw = delay(m, mul.p[:OUT_BITS], self.params.tail_stages, "raw")
        with m.If(ctl.out_we):
            m.d.sync += self.out.eq(Mux(ctl.out_raw, raw, self.tail_out))
        return m


class LanePair(wiring.Component):
    """Two lanes (columns 2i, 2i + 1) and their shared requantization tail; ``ctl`` is the even
    lane's control, the odd lane gets it one cycle later."""

    def __init__(self, config: CoreConfig, single: bool = False):
        self.config = config
        self.lanes = [Lane(config) for _ in range(1 if single else 2)]
        acc = signed(config.pe_acc_bits)
        n = len(self.lanes)
        members = {
            "ctl": In(lane_control_layout(config.rows)),
            "col_x": In(acc).array(n), "col_y": In(acc).array(n),
            "col_we": In(1), "col_row": In(range(max(config.rows, 2))),
            "consts": In(column_constants_layout()).array(n),
            "q_min": In(signed(QBITS)), "q_max": In(signed(QBITS)),
            "out": Out(OUT_BITS).array(n),
        }
        if config.lookup_steps:
            members["lookup"] = In(lookup_layout(config.lookup_steps))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tail = tail = RequantTail(self.config.lookup_steps)
        if self.config.lookup_steps:
            m.d.comb += tail.lookup.eq(self.lookup)
        ctl_odd = Signal(lane_control_layout(self.config.rows))
        m.d.sync += ctl_odd.eq(self.ctl)
        for i, lane in enumerate(self.lanes):
            m.submodules[f"lane{i}"] = lane
            m.d.comb += [lane.ctl.eq(ctl_odd if i else self.ctl), lane.col_x.eq(self.col_x[i]),
                         lane.col_y.eq(self.col_y[i]), lane.col_we.eq(self.col_we), lane.col_row.eq(self.col_row),
                         lane.consts.eq(self.consts[i]), lane.tail_out.eq(tail.out)]
            # both lanes' results of a row are written together, when the odd lane has its own
            m.d.comb += self.out[i].eq(lane.out if i or len(self.lanes) == 1 else delay(m, lane.out, 1, "even_out"))
        # the tail serves whichever lane has a requantization at its first stage (never both)
        odd = self.lanes[-1].requant if len(self.lanes) == 2 else 0
        odd_then = delay(m, odd, 2, "odd_then")     # the lane in the tail's rounding stage
        source = self.lanes[-1] if len(self.lanes) == 2 else self.lanes[0]
        first = self.lanes[0]
        m.d.comb += [tail.p.eq(Mux(odd, source.p, first.p)),
                     tail.shift.eq(Mux(odd, self.consts[-1].shift, self.consts[0].shift)),
                     tail.zero_point.eq(Mux(odd_then, self.consts[-1].out_zero_point, self.consts[0].out_zero_point)),
                     tail.q_min.eq(self.q_min), tail.q_max.eq(self.q_max)]
        return m
