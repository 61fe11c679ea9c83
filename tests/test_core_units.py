"""Blocks of the programmable core (hw/core) in Amaranth's simulator, each against an independent
reference written here from docs/core.md, sw/ref/arith.py or the AXI4 rules: the PE's terms for every
code of every mode, the requantization tail at its extremes, burst splitting, and the simulation
memory's latencies."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.hdl import Const, Elaboratable, Fragment, Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from hw.core.config import CoreConfig
from hw.core.decode import column_operand_signals, decode_column, decode_row, row_operand_layout
from hw.core.isa import Mode
from hw.core.lane import RequantTail
from hw.core.params import CoreParams, lane_dsp_count
from hw.core.pe import ProcessingElement
from hw.core.simmem import SimMemory
from hw.core.transfer import BurstPlanner
from hw.units.dsp_multiply import PipelinedMultiplier
from hw.units.pipeline import delay
from sw.ref.arith import requantize

W4 = CoreConfig(rows=2, cols=2, act_bits=4, weight_bits=4, act_words=16, wgt_words=16, out_words=16, param_words=16,
                prog_words=16, max_shift=15, pe_acc_bits=36, max_segments=4, mem_read_latency=5, mem_write_latency=3)
W8 = CoreConfig(rows=2, cols=2, act_words=16, wgt_words=16, out_words=16, param_words=16, prog_words=16, max_shift=15,
                pe_acc_bits=40, max_segments=4)


def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_fixed_latencies_are_the_units_latencies():
    p = CoreParams(W4)
    multiplier = PipelinedMultiplier(signed(48), unsigned(32))
    Fragment.get(multiplier, None)      # elaborated: its latency is the one the unit builds with
    assert p.lane_mul_latency == multiplier.latency
    assert lane_dsp_count() == 6          # 16 lanes: 96 MULT18X18D
    assert p.out_write_delay == p.acc_ready_delay + p.tail_stages


# ---- the PE: decode, terms, accumulators ---------------------------------------------------------

def row_terms(code: int, w: int, mode: int, z: int, rp: int, levels: int, tau_log2: int, q: int, zero_code: int):
    """docs/core.md's row_terms table: (X, Y) increments."""
    if mode == Mode.MAC:
        return w * (code - z), 0
    if mode == Mode.HLUQ:
        if code == 0:
            return 0, 0
        if code <= levels:
            return w << (code - 1), 0
        return w << (levels - 1), w * (code - levels)
    tau = 1 << tau_log2
    e, r = code // tau, code % tau
    if code == zero_code or e > q:
        return 0, 0
    if tau == 1 or r == 2 * rp:
        return w << (q - e), 0
    if r == 2 * rp + 1:
        return 0, w << (q - e)
    return 0, 0


class PeHarness(Elaboratable):
    """Row decode + column decode + one PE, for one descriptor."""

    def __init__(self, cfg: CoreConfig, mode: int, levels: int, tau_log2: int, q: int, zero_code: int, uses_y: int):
        self.cfg = cfg
        self.desc = dict(mode=mode, levels=levels, tau_log2=tau_log2, q=q, zero_code=zero_code, uses_y=uses_y)
        self.code, self.wcode = Signal(cfg.act_bits), Signal(cfg.weight_bits)
        self.z, self.col_z, self.rp, self.valid, self.last = Signal(8), Signal(8), Signal(), Signal(), Signal()
        self.yt = Signal()
        self.pe = ProcessingElement(cfg, True)

    def elaborate(self, platform):
        m = Module()
        cfg, d = self.cfg, self.desc
        desc = SimpleNamespace(mode=Const(d["mode"], 2), log_levels=Const(d["levels"], 8),
                               tau_log2=Const(d["tau_log2"], 2), max_shift=Const(d["q"], 6),
                               zero_code=Const(d["zero_code"], 8), uses_y=Const(d["uses_y"], 1))
        op = Signal(row_operand_layout(cfg.act_bits, cfg.max_shift))
        decode_row(m, op, self.code, desc, self.z, self.rp, self.yt, cfg.act_bits, True)
        col = column_operand_signals("col", cfg.weight_bits)
        decode_column(m, col.w, col.w3, self.wcode, self.col_z, cfg.weight_bits, self.valid)
        m.submodules.pe = pe = self.pe
        m.d.comb += [pe.op.eq(op), pe.w.eq(col.w), pe.w3.eq(col.w3), pe.last.eq(delay(m, self.last, 2, "last"))]
        return m


@pytest.mark.parametrize("pes", ["xy", "xy-no-uses-y", "x-only"])
@pytest.mark.parametrize("cfg", [W4, W8], ids=["w4", "w8"])
@pytest.mark.parametrize("mode", [Mode.MAC, Mode.HLUQ, Mode.AGQ], ids=["mac", "hluq", "agq"])
def test_pe_sums_equal_the_row_terms_table(cfg, mode, pes):
    """Every code against random weights, segments of random length (and null terms); the PE holds
    docs/core.md's X and Y, except HLUQ, whose X and Y it keeps swapped (the lanes swap m_x, m_y).
    Without uses_y (and always in a PE without Y) X holds X's terms, or Y's where the segment says
    y_terms, and a PE without Y reads 0 there."""
    uses_y = int(pes == "xy")
    if pes == "x-only":
        cfg = dataclasses.replace(cfg, y_accumulators=False)
    rng = np.random.default_rng([cfg.act_bits, int(mode), ["xy", "xy-no-uses-y", "x-only"].index(pes)])
    top_a, top_w = (1 << cfg.act_bits) - 1, (1 << cfg.weight_bits) - 1
    for desc_case in range(3):
        levels = int(rng.integers(1, min(top_a, cfg.max_shift + 1) + 1))
        tau_log2 = int(rng.integers(0, 3))
        q = int(rng.integers(0, cfg.max_shift + 1))
        zero_code = int(rng.integers(0, top_a + 1)) if desc_case else top_a
        dut = PeHarness(cfg, mode, levels, tau_log2, q, zero_code, uses_y)
        yt = int(not uses_y and mode != Mode.MAC and rng.random() < 0.5)
        codes = np.concatenate([np.arange(top_a + 1), rng.integers(0, top_a + 1, 150)])
        n = codes.size
        wcodes = rng.integers(0, top_w + 1, n)
        wcodes[rng.random(n) < 0.2] = top_w
        wcodes[rng.random(n) < 0.2] = 0
        valid = rng.random(n) > 0.1
        lasts = rng.random(n) < 0.15
        lasts[-1] = True
        z, col_z, rp = int(rng.integers(0, top_a + 1)), int(rng.integers(0, top_w + 1)), int(rng.integers(0, 2))
        expect, x, y = [], 0, 0
        for c, wc, v, last in zip(codes, wcodes, valid, lasts):
            if v:
                dx, dy = row_terms(int(c), int(wc) - col_z, mode, z, rp, levels, tau_log2, q, zero_code)
                x, y = x + dx, y + dy
            if last:
                if uses_y:
                    expect.append((y, x) if mode == Mode.HLUQ else (x, y))
                else:
                    expect.append((y if yt else x, None if cfg.y_accumulators else 0))
                x = y = 0
        seen = []

        async def bench(ctx):
            ctx.set(dut.z, z)
            ctx.set(dut.col_z, col_z)
            ctx.set(dut.rp, rp)
            ctx.set(dut.yt, yt)
            ends = []
            for i in range(n + 4):
                if i < n:
                    for sig, value in ((dut.code, codes[i]), (dut.wcode, wcodes[i]), (dut.valid, valid[i]),
                                       (dut.last, lasts[i])):
                        ctx.set(sig, int(value))
                else:
                    ctx.set(dut.valid, 0)
                    ctx.set(dut.last, 0)
                await ctx.tick()
                if i < n and lasts[i]:
                    ends.append(i + 2)          # its sums are in the out registers after cycle i + 2
                if ends and ends[0] == i:
                    ends.pop(0)
                    y_seen = ctx.get(dut.pe.out_y) if uses_y or not cfg.y_accumulators else None  # unread Y
                    seen.append((ctx.get(dut.pe.out_x), y_seen))

        simulate(dut, bench)
        assert seen == expect, (levels, tau_log2, q, zero_code)


# ---- the requantization tail ----------------------------------------------------------------------

def test_requant_tail_equals_the_reference_requantizer_at_its_extremes():
    rng = np.random.default_rng(1)
    n = 400
    acc = rng.integers(-2**47 + 1, 2**47, n)
    acc[:8] = [2**47 - 1, -2**47 + 1, 0, 1, -1, 2**40, -2**40, 12345]
    mult = rng.integers(2**30, 2**31, n)
    shift = rng.integers(17, 79, n)
    shift[rng.random(n) < 0.3] = rng.integers(40, 60)
    zp = rng.integers(-2**23, 2**23, n)
    bounds = [(-128, 127), (0, 255), (-2**31, 2**31 - 1), (-2**32, 2**32 - 1)]
    lo = np.array([bounds[i][0] for i in rng.integers(0, len(bounds), n)])
    hi = np.array([max(b, l) for b, l in zip([bounds[i][1] for i in rng.integers(0, len(bounds), n)], lo)])
    want = [int(requantize(np.array([a]), int(mm), int(s), int(z), int(lo_), int(hi_))[0])
            for a, mm, s, z, lo_, hi_ in zip(acc, mult, shift, zp, lo, hi)]
    dut = RequantTail()
    got = []

    async def bench(ctx):
        for i in range(n + 3):      # each input in its own stage: p and shift, z two later, bounds three
            if i < n:
                ctx.set(dut.p, int(acc[i]) * int(mult[i]))
                ctx.set(dut.shift, int(shift[i]))
            if 2 <= i < n + 2:
                ctx.set(dut.zero_point, int(zp[i - 2]))
            if 3 <= i:
                ctx.set(dut.q_min, int(lo[i - 3]))
                ctx.set(dut.q_max, int(hi[i - 3]))
                got.append(ctx.get(dut.out))
            await ctx.tick()

    simulate(dut, bench)
    assert got == [v & 0xFFFF_FFFF for v in want]


def test_the_tails_output_lookup_is_the_isa_lookup_of_the_clamped_value():
    """A tail with lookup steps: each output is isa.lookup of the requantized, clamped value (steps on
    the bounds, one past them, repeated, up and down), and with no steps on the clamped value itself."""
    from hw.core.isa import LookupStep, lookup

    rng = np.random.default_rng(5)
    n = 300
    acc = rng.integers(-2**20, 2**20, n)
    mult = rng.integers(2**30, 2**31, n)
    shift = rng.integers(36, 44, n)
    zp = rng.integers(-50, 50, n)
    lo, hi = -3000, 20000
    steps = [LookupStep(lo), LookupStep(hi + 1), LookupStep(hi, 1), LookupStep(0), LookupStep(0), LookupStep(-7, 1)]
    steps += [LookupStep(int(t), int(d)) for t, d in zip(rng.integers(-500, 500, 5), rng.integers(0, 2, 5))]
    clamped = [int(requantize(np.array([a]), int(mm), int(s), int(z), lo, hi)[0])
               for a, mm, s, z in zip(acc, mult, shift, zp)]
    assert len(set(clamped)) > 50
    dut = RequantTail(lookup_steps=len(steps) + 2)      # two steps left off by the count
    for base, used in ((-37, len(steps)), (0, 0)):
        got = []

        async def bench(ctx):
            ctx.set(dut.q_min, lo)
            ctx.set(dut.q_max, hi)
            ctx.set(dut.lookup.n, used)
            ctx.set(dut.lookup.base, base)
            for i, step in enumerate(steps + [LookupStep(-2**15), LookupStep(-2**15)]):
                ctx.set(dut.lookup.steps[i].threshold, step.threshold)
                ctx.set(dut.lookup.steps[i].down, step.down)
            for i in range(n + 5):
                if i < n:
                    ctx.set(dut.p, int(acc[i]) * int(mult[i]))
                    ctx.set(dut.shift, int(shift[i]))
                if 2 <= i < n + 2:
                    ctx.set(dut.zero_point, int(zp[i - 2]))
                if 5 <= i:
                    got.append(ctx.get(dut.out))
                await ctx.tick()

        simulate(dut, bench)
        want = lookup(clamped, base, steps) if used else np.array(clamped)
        assert got == [int(v) & 0xFFFF_FFFF for v in want]


# ---- transfers and the simulation memory ----------------------------------------------------------

def test_bursts_stop_at_row_ends_and_4k_boundaries():
    dut = BurstPlanner(boundary_words=128)      # 256-bit words: 4 KiB = 128 words
    rows, row_words, stride, ext = 3, 300, 1000, 100
    bursts = []

    async def bench(ctx):
        for name, value in (("ext_addr", ext), ("rows", rows), ("row_words", row_words), ("ext_stride", stride)):
            ctx.set(getattr(dut, name), value)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.next, 1)
        while ctx.get(dut.valid):
            bursts.append((ctx.get(dut.addr), ctx.get(dut.len), ctx.get(dut.last)))
            await ctx.tick()

    simulate(dut, bench)
    expect = []
    for r in range(rows):
        addr, left = ext + r * stride, row_words
        while left:
            n = min(left, 128 - addr % 128)
            expect.append((addr, n))
            addr, left = addr + n, left - n
    assert [(a, n) for a, n, _ in bursts] == expect
    assert [last for *_, last in bursts] == [0] * (len(expect) - 1) + [1]
    assert all(n <= 128 and a // 128 == (a + n - 1) // 128 for a, n in expect)


def test_simulation_memory_latencies():
    """A read burst's first beat mem_read_latency cycles after its request, bursts back to back;
    a write response mem_write_latency cycles after the burst's last beat."""
    cfg = W4
    words = [int(v) for v in np.random.default_rng(2).integers(0, 2**62, 64)]
    dut = SimMemory(cfg, 64, init=words)
    axi = dut.axi
    bb = cfg.bus_bytes
    beats, responses = [], []

    async def bench(ctx):
        ctx.set(axi.rready, 1)
        ctx.set(axi.bready, 1)
        plan = {0: ("ar", 5, 3), 1: ("ar", 20, 1), 10: ("ar", 40, 2),
                30: ("aw", 8, 2), 31: ("w", 111, 0), 32: ("w", 222, 1), 34: ("aw", 50, 1), 36: ("w", 333, 1)}
        for cycle in range(60):
            for sig in (axi.arvalid, axi.awvalid, axi.wvalid):
                ctx.set(sig, 0)
            if cycle in plan:
                kind, a, b = plan[cycle]
                if kind == "ar":
                    ctx.set(axi.araddr, a * bb)
                    ctx.set(axi.arlen, b - 1)
                    ctx.set(axi.arvalid, 1)
                elif kind == "aw":
                    ctx.set(axi.awaddr, a * bb)
                    ctx.set(axi.awlen, b - 1)
                    ctx.set(axi.awvalid, 1)
                else:
                    ctx.set(axi.wdata, a)
                    ctx.set(axi.wstrb, -1)
                    ctx.set(axi.wlast, b)
                    ctx.set(axi.wvalid, 1)
            if ctx.get(axi.rvalid):
                beats.append((cycle, ctx.get(axi.rdata), ctx.get(axi.rlast)))
            if ctx.get(axi.bvalid):
                responses.append(cycle)
            await ctx.tick()
        assert ctx.get(dut.storage.data[8]) == 111 and ctx.get(dut.storage.data[9]) == 222
        assert ctx.get(dut.storage.data[50]) == 333

    simulate(dut, bench)
    lat = cfg.mem_read_latency
    expect = ([(lat + i, words[5 + i], int(i == 2)) for i in range(3)] + [(lat + 3, words[20], 1)]
              + [(10 + lat + i, words[40 + i], int(i == 1)) for i in range(2)])
    assert beats == expect
    assert responses == [32 + cfg.mem_write_latency, 36 + cfg.mem_write_latency]
