"""The attention's softmax into AGQ codes as an on-chip unit: ``sw.ref.log_softmax`` in RTL, bit for bit.

Rows of integer scores QK^T (and a bias in 2^-F log2 units: TinyViT's, or SAM ViT's relative-position
term) stream in, ``lanes`` keys per beat; each row's codes stream out after it. Each code needs the row's
maximum and then the row's sum, so a row passes three stages, each reading or writing the row's slot in
the buffer:

    load   t = clamp((S M + 2^(shift-1)) >> shift, +-2^40) + B   into the slot; the row's maximum
    sum    d = max - t; e = EXP[d mod 2^F] >> (d div 2^F); sum += e   (EXP: a ROM per lane)
    log    n = leading one of sum; row = n 2^F + LOG[G bits after it] + offset   (LOG: one ROM)
    emit   code = clamp((tau (d + row) + 2^(F-1)) >> F, 0, zero code)

Three slots (one block RAM buffer each) let the stages work on three rows at once: while one row loads,
the one before it is summed and the one before that emits its codes. ``schedule`` is the cycle model:
when each row's first beat goes in and when the last code comes out. The constants of a layer
(``LayerConstants``) are ports held while the unit runs; the ROMs depend on F, E and G only.

Ports (``lanes`` = P, each P-wide field packs lane i at bits [i w, (i + 1) w)):

    in   multiplier [31], shift [7], tau_shift [2], zero_code [8], offset [signed 32]   constants, held
                        from the cycle before a layer's first beat until its last code is out
    in   in_valid, in_last, in_keep [P], in_scores [P x score_bits], in_bias [P x bias_bits]
    out  in_ready       high while the unit takes beats (a beat moves when valid and ready)
    out  out_valid, out_last, out_keep [P], out_codes [P x 8]   one beat per cycle, no back-pressure

Lanes whose ``in_keep`` bit is low are not keys (a row's last beat when K is not a multiple of P): they
enter neither the maximum nor the sum, and their ``out_keep`` bit is low.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
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
ROM_LATENCY = 2                        # a ROM's block RAM read, then its data registered
BUFFER_LATENCY = 3                     # a slot's read, its data registered, then the reader's pick of slot
SLOTS = 3                              # rows in the buffer at once: one loading, one summed, one emitting
FREE, LOADING, LOADED, SUMMING, SUMMED, EMITTING = range(6)     # a slot's state


def tree_levels(lanes: int) -> int:
    """Registered levels of the pairwise trees over a beat's lanes (its maximum, its sum of e)."""
    return (lanes - 1).bit_length()


def normalize_steps(sum_bits: int) -> int:
    """Registered steps that shift the row's sum until its top bit is the leading one (16, 8, 4, 2, 1 ...)."""
    return (sum_bits - 1).bit_length()


def load_latency(score_bits: int) -> int:
    """Cycles from a beat's acceptance to its write into the row's slot: input register, product,
    rounding add, rounding shift, clamp, bias."""
    return 1 + multiplier_latency(signed(score_bits), unsigned(MULTIPLIER_BITS)) + 4


def log_latency(sum_bits: int) -> int:
    """Cycles from a row's sum (registered) to its row value: normalize steps, mantissa, LOG read."""
    return normalize_steps(sum_bits) + 1 + ROM_LATENCY


def stage_latencies(widths: "UnitWidths") -> dict[str, int]:
    """Per stage, the cycles from a row's last beat (accepted, or issued to the buffer) to the cycle from
    which its slot's next state is seen; and from the last emit read to the last code out."""
    levels = tree_levels(widths.lanes)
    return {"load": load_latency(widths.score_bits) + levels + 2,
            "sum": BUFFER_LATENCY + ROM_LATENCY + 2 + levels + 1 + log_latency(widths.sum_bits) + 1,
            "emit": BUFFER_LATENCY + 2 + 1, "out": BUFFER_LATENCY + 4}


def schedule(beats: list[int], widths: "UnitWidths") -> dict[str, list[int]]:
    """The cycle model of ``LogSoftmaxUnit`` for rows of ``beats`` beats offered back to back: per row the
    cycle its first beat is accepted (``start``), its sum and emit stages start, and the cycle its last
    code is out (``done``), counted from the first row's first beat.

    A stage starts a row when it has finished the row before and the row's slot is ready for it; the
    loader needs the slot free, i.e. the row three before emitted."""
    lat = stage_latencies(widths)
    start, summed, emitted, freed, done = [], [], [], [], []
    for r, b in enumerate(beats):
        a = 0 if r == 0 else start[r - 1] + beats[r - 1]
        if r >= SLOTS:
            a = max(a, freed[r - SLOTS])
        loaded = a + b - 1 + lat["load"]
        s = max(loaded, summed[r - 1] + beats[r - 1]) if r else loaded
        ready = s + b - 1 + lat["sum"]
        e = max(ready, emitted[r - 1] + beats[r - 1]) if r else ready
        start.append(a)
        summed.append(s)
        emitted.append(e)
        freed.append(e + b - 1 + lat["emit"])
        done.append(e + b - 1 + lat["out"])
    return {"start": start, "sum": summed, "emit": emitted, "done": done}


def row_cycles(keys: int, rows: int, widths: "UnitWidths") -> int:
    """Cycles ``rows`` rows of ``keys`` keys hold the unit, from the first beat in to the last code out
    (``schedule``; past the first rows its pattern repeats every three rows, which this extends)."""
    beats = -(-keys // widths.lanes)
    warm = 4 * SLOTS
    if rows <= warm + SLOTS:
        return schedule([beats] * rows, widths)["done"][-1] + 1
    done = schedule([beats] * (warm + SLOTS), widths)["done"]
    period = done[warm + SLOTS - 1] - done[warm - 1]
    cycles, extra = divmod(rows - warm, SLOTS)
    return done[warm - 1 + extra] + cycles * period + 1


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
        slots = _Slots(m, w)
        exp_ports = []
        for i in range(P):
            rom = Memory(shape=unsigned(E + 1), depth=2**F, init=exp_table(F, E).tolist())
            m.submodules[f"exp_rom_{i}"] = rom
            exp_ports.append(rom.read_port())
        log_rom = Memory(shape=unsigned(F + 1), depth=2**G, init=log_table(F, G).tolist())
        m.submodules.log_rom = log_rom
        log_port = log_rom.read_port()
        slots.registers()
        self._load(m, slots)
        sum_tags, emit_tags = self._readers(m, slots)
        row_total, row_done, row_slot = self._sum(m, slots, sum_tags, exp_ports)
        self._log(m, slots, row_total, row_done, row_slot, log_port)
        self._emit(m, slots, emit_tags)
        return m

    def _load(self, m: Module, slots: "_Slots"):
        """t per lane into the row's slot, and the row's maximum; the slot turns LOADED."""
        w = self.widths
        lanes = range(w.lanes)
        in_slot = Signal(range(SLOTS))
        in_addr = Signal(range(w.depth))
        in_active = Signal()                       # a row's beats are coming in
        m.d.comb += self.in_ready.eq(in_active | (slots.state_of[in_slot] == FREE))
        taking = Signal()
        m.d.comb += taking.eq(self.in_valid & self.in_ready)
        with m.If(taking):
            m.d.sync += [in_active.eq(~self.in_last), in_addr.eq(Mux(self.in_last, 0, in_addr + 1))]
            with m.If(~in_active):
                slots.set_state(in_slot, LOADING)
            with m.If(self.in_last):
                m.d.sync += in_slot.eq(_following(in_slot))
        # Registered every cycle, not only when taken: the tags say which beats count, and an enable would
        # fan ``taking`` out to every input bit.
        s_regs = [Signal(signed(w.score_bits), name=f"score_{i}") for i in lanes]
        b_regs = [Signal(signed(w.bias_bits), name=f"bias_{i}") for i in lanes]
        for i in lanes:
            m.d.sync += [s_regs[i].eq(self.in_scores[i * w.score_bits:(i + 1) * w.score_bits].as_signed()),
                         b_regs[i].eq(self.in_bias[i * w.bias_bits:(i + 1) * w.bias_bits].as_signed())]
        t_vals = [self._logit(m, i, s_regs[i], b_regs[i]) for i in lanes]
        after = load_latency(w.score_bits)
        w_valid, w_keep, w_slot, w_addr, w_first, w_last = (
            delay(m, v, after, f"write_{name}") for v, name in
            ((taking, "valid"), (self.in_keep, "keep"), (in_slot, "slot"), (in_addr, "addr"),
             (~in_active, "first"), (self.in_last, "last")))
        for k in range(SLOTS):
            write = slots.ports[k][0]
            m.d.comb += [write.addr.eq(w_addr), write.data.eq(Cat(*t_vals, w_keep)),
                         write.en.eq(w_valid & (w_slot == k))]
        # the beat's maximum registered once more, so the running maximum's compare starts at a register
        beat_max = delay(m, _tree(m, [Mux(w_keep[i], t_vals[i], _T_MIN) for i in lanes],
                                  lambda a, b: Mux(a > b, a, b), "max"), 1, "beat_max")
        x_valid, x_slot, x_addr, x_first, x_last = (delay(m, v, tree_levels(w.lanes) + 1, f"max_{name}")
                                                    for v, name in ((w_valid, "valid"), (w_slot, "slot"),
                                                                    (w_addr, "addr"), (w_first, "first"),
                                                                    (w_last, "last")))
        with m.If(x_valid):
            for k in range(SLOTS):
                with m.If(x_slot == k):
                    m.d.sync += slots.maxima[k].eq(Mux(x_first | (beat_max > slots.maxima[k]), beat_max,
                                                       slots.maxima[k]))
                    with m.If(x_last):
                        m.d.sync += [slots.state[k].eq(LOADED), slots.beats[k].eq(x_addr + 1)]

    def _logit(self, m: Module, i: int, score: Signal, bias_in: Signal) -> Signal:
        """Lane i's t = clamp((S M + 2^(shift-1)) >> shift, +-2^40) + B, ``load_latency`` after the input."""
        w = self.widths
        mul = PipelinedMultiplier(signed(w.score_bits), unsigned(MULTIPLIER_BITS))
        m.submodules[f"product_{i}"] = mul
        m.d.comb += [mul.a.eq(score), mul.b.eq(self.multiplier)]
        # (p + 2^(shift-1)) >> shift as (p >> 16 + 2^(shift-17)) >> (shift-16): flooring the low 16 bits
        # first is exact because the rounding constant sits above them (shift >= 17).
        # Each lane keeps its own copy of the shift amounts: the held port would fan out to every lane's
        # barrel shifter.
        round_at, amount = Signal(6, name=f"round_at_{i}"), Signal(SHIFT_BITS, name=f"amount_{i}")
        m.d.sync += [round_at.eq((self.shift - SHIFT_MIN)[:6]),                      # shift <= 78
                     amount.eq((self.shift - (SHIFT_MIN - 1))[:SHIFT_BITS])]
        high = mul.p >> (SHIFT_MIN - 1)
        plus_half = Signal(signed(len(high) + 1), name=f"plus_half_{i}")
        m.d.sync += plus_half.eq(high + (Const(1, 1) << round_at))
        rounded = Signal(signed(len(high) + 1), name=f"rounded_{i}")
        m.d.sync += rounded.eq(plus_half >> amount)
        bias = delay(m, bias_in, mul.latency + 3, f"bias_{i}")
        clamped = Signal(signed(T_BITS), name=f"clamped_{i}")
        m.d.sync += clamped.eq(Mux(rounded > T_LIMIT, T_LIMIT, Mux(rounded < -T_LIMIT, -T_LIMIT, rounded)))
        t = Signal(signed(T_BITS), name=f"t_{i}")
        m.d.sync += t.eq(clamped + bias)
        return t

    def _readers(self, m: Module, slots: "_Slots") -> tuple[dict, dict]:
        """Two readers, each on its own slot: the sum stage's (LOADED rows) and the emit stage's (SUMMED);
        their tags, issue by issue."""
        w = self.widths

        def reader(name, ready_state, next_state):
            slot, addr = Signal(range(SLOTS), name=f"{name}_slot"), Signal(range(w.depth), name=f"{name}_addr")
            go = Signal(name=f"{name}_go")
            last = Signal(name=f"{name}_last")
            m.d.comb += [go.eq(slots.state_of[slot] == ready_state), last.eq(addr == slots.beats_of[slot] - 1)]
            with m.If(go):
                m.d.sync += addr.eq(addr + 1)
                with m.If(last):
                    m.d.sync += [addr.eq(0), slot.eq(_following(slot))]
                    slots.set_state(slot, next_state)
            tags = {"valid": go, "slot": slot, "first": addr == 0, "last": go & last}
            return slot, addr, go, tags

        s_slot, s_addr, s_go, s_tags = reader("sum", LOADED, SUMMING)
        _, e_addr, _, e_tags = reader("emit", SUMMED, EMITTING)
        for k in range(SLOTS):   # a LOADED slot is never the emit stage's, so the sum stage's address wins there
            m.d.comb += slots.ports[k][1].addr.eq(Mux(s_go & (s_slot == k), s_addr, e_addr))
        # A block RAM's output takes most of a cycle (clock to out): each slot's data is registered (in the
        # block RAM's own output register) before a reader picks its slot.
        slots.data = Array(delay(m, p[1].data, 1, f"slot_data_{k}") for k, p in enumerate(slots.ports))
        return s_tags, e_tags

    def _read_data(self, m: Module, slots: "_Slots", tags: dict, name: str):
        """The beat read for ``tags`` (``BUFFER_LATENCY`` later), its tags, d = max - t per lane, a cycle on."""
        P = self.widths.lanes
        slot = delay(m, tags["slot"], BUFFER_LATENCY - 1, f"{name}_data_slot")
        data = delay(m, slots.data[slot], 1, f"{name}_data")
        at = {k: delay(m, v, BUFFER_LATENCY + 1, f"{name}_d_{k}") for k, v in tags.items()}
        at["keep"] = delay(m, data[P * T_BITS:], 1, f"{name}_d_keep")
        d_vals = []
        for i in range(P):
            d = Signal(unsigned(T_BITS + 1), name=f"{name}_d_{i}")
            m.d.sync += d.eq(slots.max_of[delay(m, tags["slot"], BUFFER_LATENCY, f"{name}_max_slot")]
                             - data[i * T_BITS:(i + 1) * T_BITS].as_signed())
            d_vals.append(d)
        return d_vals, at

    def _sum(self, m: Module, slots: "_Slots", tags: dict, exp_ports: list):
        """e = EXP[d mod 2^F] >> (d div 2^F), summed over the row: the row's sum, when it is done, its slot."""
        w = self.widths
        F, E = w.frac_bits, w.exp_bits
        d_sum, at = self._read_data(m, slots, tags, "sum")
        e_vals = []
        for i in range(w.lanes):
            m.d.comb += exp_ports[i].addr.eq(d_sum[i][:F])
            whole = d_sum[i][F:]
            step = Signal((E + 1).bit_length(), name=f"whole_{i}")   # d div 2^F; E + 1 gives e = 0
            m.d.sync += step.eq(Mux(whole > E, E + 1, whole))
            entry = delay(m, exp_ports[i].data, 1, f"exp_{i}")
            keep = delay(m, at["keep"][i], ROM_LATENCY, f"e_keep_{i}")
            e = Signal(E + 1, name=f"e_{i}")
            m.d.sync += e.eq(Mux(keep, entry >> delay(m, step, 1, f"whole_{i}"), 0))
            e_vals.append(e)
        beat_sum = _tree(m, e_vals, lambda a, b: a + b, "sum")
        a_valid, a_slot, a_first, a_last = (delay(m, at[k], ROM_LATENCY + 1 + tree_levels(w.lanes), f"acc_{k}")
                                            for k in ("valid", "slot", "first", "last"))
        total = Signal(w.sum_bits)
        row_total = Signal(w.sum_bits)
        row_done = Signal()
        row_slot = Signal(range(SLOTS))
        with m.If(a_valid):
            m.d.sync += total.eq(Mux(a_first, 0, total) + beat_sum)
        m.d.sync += [row_total.eq(Mux(a_first, 0, total) + beat_sum), row_done.eq(a_valid & a_last),
                     row_slot.eq(a_slot)]
        return row_total, row_done, row_slot

    def _log(self, m: Module, slots: "_Slots", row_total, row_done, row_slot, log_port):
        """n = floor(log2 sum) and the G bits after its leading one, by normalizing shifts; the row value
        n 2^F + LOG[mantissa] + offset into the slot, which turns SUMMED."""
        w = self.widths
        F, G = w.frac_bits, w.log_bits
        x, n = row_total, Const(w.sum_bits - 1, range(w.sum_bits))
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
        lat = log_latency(w.sum_bits)
        log_n = delay(m, n, 1 + ROM_LATENCY, "log_n")
        log_done, log_slot = delay(m, row_done, lat, "log_done"), delay(m, row_slot, lat, "log_slot")
        with m.If(log_done):
            for k in range(SLOTS):
                with m.If(log_slot == k):
                    m.d.sync += [slots.rows[k].eq((log_n << F) + log_entry + self.offset),
                                 slots.state[k].eq(SUMMED)]

    def _emit(self, m: Module, slots: "_Slots", tags: dict):
        """code = clamp((tau (d + row) + 2^(F-1)) >> F, 0, zero code) out; then the slot is FREE."""
        F = self.widths.frac_bits
        d_emit, at = self._read_data(m, slots, tags, "emit")
        codes = []
        row_now = slots.row_of[at["slot"]]
        for i in range(self.widths.lanes):
            x_i = Signal(signed(T_BITS + 3 + OFFSET_BITS), name=f"x_{i}")
            m.d.sync += x_i.eq(d_emit[i] + row_now)
            raw = Signal(signed(len(x_i) + 3), name=f"raw_{i}")
            m.d.sync += raw.eq(((x_i << self.tau_shift) + (1 << (F - 1))) >> F)
            codes.append(Mux(raw < 0, 0, Mux(raw > self.zero_code, self.zero_code, raw))[:CODE_BITS])
        x_done, x_slot_done = delay(m, at["last"], 1, "emit_x_last"), delay(m, at["slot"], 1, "emit_x_slot")
        with m.If(x_done):
            slots.set_state(x_slot_done, FREE)
        out_on = delay(m, at["valid"], 2, "out_on")
        m.d.sync += [self.out_valid.eq(out_on), self.out_last.eq(delay(m, at["last"], 2, "out_last")),
                     self.out_keep.eq(Mux(out_on, delay(m, at["keep"], 2, "out_keep"), 0)),
                     self.out_codes.eq(Cat(*codes))]


_T_MIN = Const(-(1 << (T_BITS - 1)), signed(T_BITS))    # below every clamped logit: lanes that are not keys


def _following(slot):
    return Mux(slot == SLOTS - 1, 0, slot + 1)


class _Slots:
    """The three row slots: a block-RAM buffer each, and per slot its state, beats, maximum and row value."""

    def __init__(self, m: Module, w: UnitWidths):
        self.m = m
        self.ports = []
        for k in range(SLOTS):
            buffer = Memory(shape=unsigned(w.lanes * T_BITS + w.lanes), depth=w.depth, init=[])
            m.submodules[f"slot_{k}"] = buffer
            self.ports.append((buffer.write_port(), buffer.read_port()))
        self.w = w

    def registers(self):
        w = self.w
        self.state = [Signal(range(EMITTING + 1), name=f"state_{k}") for k in range(SLOTS)]
        self.beats = [Signal(range(w.depth + 1), name=f"beats_{k}") for k in range(SLOTS)]
        self.maxima = [Signal(signed(T_BITS), name=f"max_{k}") for k in range(SLOTS)]
        self.rows = [Signal(signed(OFFSET_BITS + 2), name=f"row_{k}") for k in range(SLOTS)]
        self.state_of, self.beats_of = Array(self.state), Array(self.beats)
        self.max_of, self.row_of = Array(self.maxima), Array(self.rows)

    def set_state(self, slot, value):
        for k in range(SLOTS):
            with self.m.If(slot == k):
                self.m.d.sync += self.state[k].eq(value)


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
