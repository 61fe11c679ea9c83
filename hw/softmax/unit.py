"""The attention's softmax into AGQ codes as an on-chip unit: ``sw.ref.log_softmax`` in RTL, bit for bit.

One row of integer scores QK^T (and TinyViT's bias, in 2^-F log2 units) streams in, ``lanes`` keys per
beat; the row's codes stream out after it. A row passes the unit three times, because each code needs
the row's maximum and then the row's sum:

    load   t = clamp((S M + 2^(shift-1)) >> shift, +-2^40) + B   into the row buffer; running maximum
    sum    d = max - t; e = EXP[d mod 2^F] >> (d div 2^F); sum += e   (EXP: a ROM per lane)
    log    n = leading one of sum; row = n 2^F + LOG[G bits after it] + offset   (LOG: one ROM)
    emit   code = clamp((tau (d + row) + 2^(F-1)) >> F, 0, zero code)

so a row of K keys takes ``row_cycles(K, lanes)`` cycles from its first beat in to the next row's first
beat in (the three passes do not overlap). The constants of a layer (``LayerConstants``) are ports
held while the unit runs; the ROMs depend on F, E and G only.

Ports (``lanes`` = P, each P-wide field packs lane i at bits [i w, (i + 1) w)):

    in   multiplier [31], shift [7], tau_shift [2], zero_code [8], offset [signed 32]   held constants
    in   in_valid, in_last, in_keep [P], in_scores [P x score_bits], in_bias [P x bias_bits]
    out  in_ready       high while the unit takes a row's beats (a beat moves when valid and ready)
    out  out_valid, out_last, out_keep [P], out_codes [P x 8]   one beat per cycle, no back-pressure

Lanes whose ``in_keep`` bit is low are not keys (a row's last beat when K is not a multiple of P): they
enter neither the maximum nor the sum, and their ``out_keep`` bit is low.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sw.bundle.fixed_point import MULTIPLIER_BITS, SHIFT_MIN
from sw.ref.log_softmax import EXP_BITS, FRAC_BITS, LOG_BITS, T_LIMIT, exp_table, log_table

from ..units.dsp_multiply import PipelinedMultiplier, multiplier_latency
from ..units.pipeline import delay

CODE_BITS = 8
SHIFT_BITS = 7
OFFSET_BITS = 32
T_BITS = T_LIMIT.bit_length() + 1      # the clamped logit, signed
READ_LATENCY = 2                       # block RAM read, then its data registered


def tree_levels(lanes: int) -> int:
    """Registered levels of the pairwise trees over a beat's lanes (its maximum, its sum of e)."""
    return (lanes - 1).bit_length()


def normalize_steps(sum_bits: int) -> int:
    """Registered steps that shift the row's sum until its top bit is the leading one (16, 8, 4, 2, 1 ...)."""
    return (sum_bits - 1).bit_length()


def load_latency(score_bits: int) -> int:
    """Cycles from a beat's acceptance to its write into the row buffer: input register, product,
    rounding add, rounding shift, clamp, bias."""
    return 1 + multiplier_latency(signed(score_bits), unsigned(MULTIPLIER_BITS)) + 4


def row_cycles(keys: int, widths: "UnitWidths") -> int:
    """Cycles one row of ``keys`` keys holds the unit, from its first beat accepted to the next row's
    first beat accepted when the scores come every cycle (the cycle model of ``LogSoftmaxUnit``):

    load  beats + load latency + the maximum's tree levels (then the row's maximum is final)
    sum   beats + buffer read, d, EXP read, e + the sum's tree levels (then the row's sum is final)
    log   normalize steps + mantissa, LOG read, row
    emit  beats + buffer read (the codes' registers drain while the next row loads)
    (each read: ``READ_LATENCY`` cycles)"""
    beats = -(-keys // widths.lanes)
    levels = tree_levels(widths.lanes)
    return ((beats + load_latency(widths.score_bits) + levels) + (beats + 2 * READ_LATENCY + 2 + levels)
            + (normalize_steps(widths.sum_bits) + 2 + READ_LATENCY) + (beats + READ_LATENCY))


@dataclass(frozen=True)
class UnitWidths:
    """What a softmax unit is built for: keys per beat, the longest row, its input widths and F, E, G."""

    lanes: int = 4
    max_keys: int = 4096
    score_bits: int = 32
    bias_bits: int = 18
    frac_bits: int = FRAC_BITS
    exp_bits: int = EXP_BITS
    log_bits: int = LOG_BITS

    def __post_init__(self):
        if self.lanes < 1 or self.max_keys < self.lanes or self.max_keys % self.lanes:
            raise ValueError(f"the softmax unit needs max_keys ({self.max_keys}) a positive multiple of lanes "
                             f"({self.lanes})")
        if not (1 <= self.frac_bits <= 16 and 1 <= self.log_bits <= self.exp_bits <= 30):
            raise ValueError(f"unsupported integer softmax widths F={self.frac_bits}, E={self.exp_bits}, "
                             f"G={self.log_bits}")

    @property
    def depth(self) -> int:
        return self.max_keys // self.lanes

    @property
    def sum_bits(self) -> int:
        return self.exp_bits + 1 + (self.max_keys - 1).bit_length()


class LogSoftmaxUnit(wiring.Component):
    def __init__(self, widths: UnitWidths = UnitWidths()):
        self.widths = w = widths
        super().__init__({
            "multiplier": In(MULTIPLIER_BITS), "shift": In(SHIFT_BITS), "tau_shift": In(2),
            "zero_code": In(CODE_BITS), "offset": In(signed(OFFSET_BITS)),
            "in_valid": In(1), "in_ready": Out(1), "in_last": In(1), "in_keep": In(w.lanes),
            "in_scores": In(w.lanes * w.score_bits), "in_bias": In(w.lanes * w.bias_bits),
            "out_valid": Out(1), "out_last": Out(1), "out_keep": Out(w.lanes), "out_codes": Out(w.lanes * CODE_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.widths
        P, F, E, G = w.lanes, w.frac_bits, w.exp_bits, w.log_bits
        lanes = range(P)
        t_min = Const(-(1 << (T_BITS - 1)), signed(T_BITS))

        buffer = Memory(shape=unsigned(P * T_BITS + P), depth=w.depth, init=[])
        m.submodules.buffer = buffer
        write, read = buffer.write_port(), buffer.read_port()
        exp_ports = []
        for i in lanes:
            rom = Memory(shape=unsigned(E + 1), depth=2**F, init=exp_table(F, E).tolist())
            m.submodules[f"exp_rom_{i}"] = rom
            exp_ports.append(rom.read_port())
        log_rom = Memory(shape=unsigned(F + 1), depth=2**G, init=log_table(F, G).tolist())
        m.submodules.log_rom = log_rom
        log_port = log_rom.read_port()

        beats = Signal(range(w.depth + 1))         # beats written this row
        addr = Signal(range(w.depth + 1))          # next beat to read
        row_max = Signal(signed(T_BITS), init=t_min.value)
        total = Signal(w.sum_bits)
        row = Signal(signed(OFFSET_BITS + 2))

        # ---- load: t per lane into the buffer; the running maximum ---------------------------------------
        taking = Signal()
        m.d.comb += taking.eq(self.in_valid & self.in_ready)
        s_regs = [Signal(signed(w.score_bits), name=f"score_{i}") for i in lanes]
        b_regs = [Signal(signed(w.bias_bits), name=f"bias_{i}") for i in lanes]
        with m.If(taking):
            for i in lanes:
                m.d.sync += [s_regs[i].eq(self.in_scores[i * w.score_bits:(i + 1) * w.score_bits].as_signed()),
                             b_regs[i].eq(self.in_bias[i * w.bias_bits:(i + 1) * w.bias_bits].as_signed())]
        t_vals = []
        for i in lanes:
            mul = PipelinedMultiplier(signed(w.score_bits), unsigned(MULTIPLIER_BITS))
            m.submodules[f"product_{i}"] = mul
            m.d.comb += [mul.a.eq(s_regs[i]), mul.b.eq(self.multiplier)]
            # (p + 2^(shift-1)) >> shift as (p >> 16 + 2^(shift-17)) >> (shift-16): flooring the low 16 bits
            # first is exact because the rounding constant sits above them (shift >= 17).
            high = mul.p >> (SHIFT_MIN - 1)
            plus_half = Signal(signed(len(high) + 1), name=f"plus_half_{i}")
            m.d.sync += plus_half.eq(high + (Const(1, 1) << (self.shift - SHIFT_MIN)[:6]))   # shift <= 78
            rounded = Signal(signed(len(high) + 1), name=f"rounded_{i}")
            m.d.sync += rounded.eq(plus_half >> (self.shift - (SHIFT_MIN - 1))[:SHIFT_BITS])
            bias = delay(m, b_regs[i], mul.latency + 3, f"bias_{i}")
            clamped = Signal(signed(T_BITS), name=f"clamped_{i}")
            m.d.sync += clamped.eq(Mux(rounded > T_LIMIT, T_LIMIT, Mux(rounded < -T_LIMIT, -T_LIMIT, rounded)))
            t = Signal(signed(T_BITS), name=f"t_{i}")
            m.d.sync += t.eq(clamped + bias)
            t_vals.append(t)
        after = load_latency(w.score_bits)
        w_valid, w_keep, w_last = (delay(m, v, after, f"write_{name}") for v, name in
                                   ((taking, "valid"), (self.in_keep, "keep"), (taking & self.in_last, "last")))
        m.d.comb += [write.addr.eq(beats), write.data.eq(Cat(*t_vals, w_keep)), write.en.eq(w_valid)]
        with m.If(w_valid):
            m.d.sync += beats.eq(beats + 1)
        beat_max = _tree(m, [Mux(w_keep[i], t_vals[i], t_min) for i in lanes], lambda a, b: Mux(a > b, a, b),
                         "max")
        levels = tree_levels(P)
        max_valid, max_last = delay(m, w_valid, levels, "max_valid"), delay(m, w_last, levels, "max_last")
        with m.If(max_valid):
            m.d.sync += row_max.eq(Mux(beat_max > row_max, beat_max, row_max))

        # ---- the buffer's read side, shared by the sum and emit passes: d = max - t ----------------------
        # A block RAM's output takes most of a cycle (clock to out), so every read is registered once more.
        reading = Signal()
        m.d.comb += read.addr.eq(addr)
        with m.If(reading):
            m.d.sync += addr.eq(addr + 1)
        r_data = delay(m, read.data, 1, "read_data")
        r_valid = delay(m, reading, READ_LATENCY, "read_valid")
        r_last = delay(m, reading & (addr == beats - 1), READ_LATENCY, "read_last")
        d_keep = delay(m, r_data[P * T_BITS:], 1, "d_keep")
        d_vals = []
        for i in lanes:
            d = Signal(unsigned(T_BITS + 1), name=f"d_{i}")
            m.d.sync += d.eq(row_max - r_data[i * T_BITS:(i + 1) * T_BITS].as_signed())
            d_vals.append(d)
        d_last = delay(m, r_last, 1, "d_last")

        # ---- sum: e = EXP[d mod 2^F] >> (d div 2^F), summed over the row ---------------------------------
        summing = Signal()
        e_vals = []
        for i in lanes:
            m.d.comb += exp_ports[i].addr.eq(d_vals[i][:F])
            whole = d_vals[i][F:]
            step = Signal((E + 1).bit_length(), name=f"whole_{i}")   # d div 2^F; E + 1 gives e = 0
            m.d.sync += step.eq(Mux(whole > E, E + 1, whole))
            entry = delay(m, exp_ports[i].data, 1, f"exp_{i}")
            keep = delay(m, d_keep[i], READ_LATENCY, f"e_keep_{i}")
            e = Signal(E + 1, name=f"e_{i}")
            m.d.sync += e.eq(Mux(keep, entry >> delay(m, step, 1, f"whole_{i}"), 0))
            e_vals.append(e)
        beat_sum = _tree(m, e_vals, lambda a, b: a + b, "sum")
        sum_valid = delay(m, summing & reading, 2 * READ_LATENCY + 2 + levels, "sum_valid")
        sum_last = delay(m, d_last, READ_LATENCY + 1 + levels, "sum_last")
        with m.If(sum_valid):
            m.d.sync += total.eq(total + beat_sum)

        # ---- log: n = floor(log2 sum) and the G bits after its leading one, by normalizing shifts --------
        x, n = total, Const(w.sum_bits - 1, range(w.sum_bits))
        step = 1 << (normalize_steps(w.sum_bits) - 1)
        while step:
            top_zero = x[w.sum_bits - step:] == 0
            x_next, n_next = Signal(w.sum_bits, name=f"norm_x_{step}"), Signal(range(w.sum_bits), name=f"norm_n_{step}")
            m.d.sync += [x_next.eq(Mux(top_zero, x << step, x)[:w.sum_bits]), n_next.eq(Mux(top_zero, n - step, n))]
            x, n, step = x_next, n_next, step >> 1
        mantissa = Signal(G)
        m.d.sync += mantissa.eq(x[w.sum_bits - 1 - G:w.sum_bits - 1])
        m.d.comb += log_port.addr.eq(mantissa)
        log_entry = delay(m, log_port.data, 1, "log_entry")
        log_n = delay(m, n, 1 + READ_LATENCY, "log_n")
        log_wait = Signal(range(normalize_steps(w.sum_bits) + 2 + READ_LATENCY))

        # ---- emit: code = clamp((tau (d + row) + 2^(F-1)) >> F, 0, zero code) ----------------------------
        emitting = Signal()
        e_on = delay(m, emitting & reading, READ_LATENCY + 1, "emit_on")   # the flag travels with its beat's d
        codes = []
        for i in lanes:
            x_i = Signal(signed(T_BITS + 3 + OFFSET_BITS), name=f"x_{i}")
            m.d.sync += x_i.eq(d_vals[i] + row)
            raw = Signal(signed(len(x_i) + 3), name=f"raw_{i}")
            m.d.sync += raw.eq(((x_i << self.tau_shift) + (1 << (F - 1))) >> F)
            codes.append(Mux(raw < 0, 0, Mux(raw > self.zero_code, self.zero_code, raw))[:CODE_BITS])
        out_on = delay(m, e_on, 2, "out_on")
        m.d.sync += [self.out_valid.eq(out_on), self.out_last.eq(out_on & delay(m, d_last, 2, "out_last")),
                     self.out_keep.eq(Mux(out_on, delay(m, d_keep, 2, "out_keep"), 0)), self.out_codes.eq(Cat(*codes))]

        # ---- the passes ----------------------------------------------------------------------------------
        with m.FSM(name="phase"):
            with m.State("LOAD"):
                seen_last = Signal()
                m.d.comb += self.in_ready.eq(~seen_last)
                with m.If(taking & self.in_last):
                    m.d.sync += seen_last.eq(1)
                with m.If(max_valid & max_last):
                    m.d.sync += [seen_last.eq(0), addr.eq(0), total.eq(0)]
                    m.next = "SUM"
            with m.State("SUM"):
                m.d.comb += [summing.eq(1), reading.eq(addr < beats)]
                with m.If(sum_valid & sum_last):
                    m.d.sync += log_wait.eq(0)
                    m.next = "LOG"
            with m.State("LOG"):
                m.d.sync += log_wait.eq(log_wait + 1)
                with m.If(log_wait == normalize_steps(w.sum_bits) + 1 + READ_LATENCY):
                    m.d.sync += [row.eq((log_n << F) + log_entry + self.offset), addr.eq(0)]
                    m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += [emitting.eq(1), reading.eq(addr < beats)]
                with m.If(r_valid & r_last):
                    m.d.sync += [beats.eq(0), row_max.eq(t_min)]
                    m.next = "LOAD"
        return m


def _tree(m: Module, values: list, combine, name: str):
    """``combine`` over ``values`` as a pairwise tree, each level registered (``tree_levels`` of them)."""
    level = 0
    while len(values) > 1:
        paired = []
        for i in range(0, len(values), 2):
            value = combine(values[i], values[i + 1]) if i + 1 < len(values) else values[i]
            reg = Signal(value.shape(), name=f"{name}{level}_{i // 2}")
            m.d.sync += reg.eq(value)
            paired.append(reg)
        values, level = paired, level + 1
    return values[0]
