"""The lane sequencer: one controller for all K lanes, which work on the same row at the same time
(odd lanes one cycle behind, ``lane.py``).

Each segment the array finishes becomes a *record*; the sequencer turns each record into a *job* of
passes, one row operation per cycle:

    non-raw segment   first pass (R cycles: acc += m_x X), second pass if uses_y (R cycles:
                      acc += m_y Y), and after the tile's last segment an output pass: row r is
                      requantized in cycle 2 r of it (W OUT words per row, W <= 2: R x 2 cycles),
                      starting max(R, acc_ready_delay) cycles after the last combine pass started,
                      so that pass's sums are in acc
    raw segment       an output pass of X, one row per W cycles (R x W cycles)

For HLUQ with uses_y the PEs hold docs/core.md's X in Y and its Y in X (``decode.py``), so the passes
read them the other way round. A record is loaded at the end of cycle x (x = its last term's issue + RECORD_DELAY - 1)
and its job starts in x + 1 at the earliest or, when the lanes are busy, in the cycle after the
previous job's last cycle; the decision is made one cycle ahead, so jobs follow each other without a
gap. The array may issue a segment's last term (``last_ok``) only when
- the previous segment's last term issued at least R cycles ago (the column OR-trees carry one row per
  cycle), and
- the previous record's job has started and reads the sum memories late enough that the new
  segment's rows overwrite no row before its last read (``read_window``);
so at most one record waits.

Constants: the lanes' column constants (F0) are loaded from the staging registers in the first cycle
of the output pass of a tile that starts a new column block (``f0_load``), and the clamp bounds (and
the output lookup, on cores that have one) with every non-raw output pass; both stay until the next
such pass starts, which is after every use by the previous pass (a combine pass and the wait for acc
lie between). Per-GEMM parameters live in two slots (GEMM parity) and are copied into the job when it
starts. A slot is written during its GEMM's setup (the lookup steps word by word, the rest at the
setup's end): by then the GEMM two before has started its last job, because this GEMM is taken only
after the GEMM between issued its last term, which waits until the job before it has started (jobs
start in order), or, for a GEMM without tiles, until the lanes have drained.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..units.pipeline import delay
from .config import CoreConfig
from .isa import DESC_WORD_BITS, LOOKUP_STEPS_PER_WORD, DescOtherStrides, LookupStep, Segment, lookup_words
from .lane import B_RAW, B_REQUANT, B_SEGMENT, QBITS, SRC_ACC, SRC_X, SRC_Y, lane_control_layout, lookup_layout
from .layouts import field_width, layout_of
from .params import REQUANT_ROW_CYCLES, CoreParams, output_row_cycles, read_window

IDLE, FIRST_PASS, SECOND_PASS, WAIT, OUTPUT = range(5)
M_BITS = field_width(Segment, "m_x")


def record_layout(params: CoreParams) -> data.StructLayout:
    return data.StructLayout({
        "seg": unsigned(max(params.config.max_segments - 1, 1).bit_length()),
        "first": 1, "last": 1,            # the tile's first / last segment
        "new_group": 1,                   # the tile is the first of its column block
        "slot": 1,                        # GEMM parity: which parameter slot
        "out_base": params.out_addr_bits,
        "gemm_last": 1, "signal": 1,      # the GEMM's final segment; the GEMM signals the STORE unit
    })


def gemm_params_layout(lookup_steps: int = 0) -> data.StructLayout:
    fields = {
        "raw": 1, "uses_y": 1, "out_width": 2, "packed": 1, "out_row": field_width(DescOtherStrides, "out_row"),
        "swap": 1,       # HLUQ with uses_y: the PEs hold docs/core.md's X in Y and its Y in X
        "q_min": QBITS, "q_max": QBITS,
        "to_store": 1,   # the raw rows go to the softmax path's store (``DescLoops.to_store``)
    }
    if lookup_steps:     # the output lookup travels with the clamp bounds
        fields["lookup"] = lookup_layout(lookup_steps)
    return data.StructLayout(fields)


def seg_table_addr(seg_words: int, slot, word):
    """Row of the segment-multiplier table: the GEMM slot above the segment word index."""
    return Cat(word[:max(seg_words - 1, 1).bit_length()], slot)


def seg_multipliers_layout(params: CoreParams) -> data.ArrayLayout:
    return data.ArrayLayout(data.StructLayout({"m_x": M_BITS, "m_y": M_BITS}), params.slots_per_word)


class LaneSequencer(wiring.Component):
    def __init__(self, config: CoreConfig):
        self.config, self.params = config, CoreParams(config)
        p = self.params
        self.seg_words = p.seg_words(config.max_segments)
        assert p.max_out_words_per_row <= REQUANT_ROW_CYCLES
        lookup = config.lookup_steps
        super().__init__({
            "run_start": In(1),
            "rec_load": In(1), "rec_in": In(record_layout(p)),
            "seg_end_issued": In(1),
            "prm_we": In(1), "prm_slot": In(1), "prm_in": In(gemm_params_layout(lookup)),
            "mseg_we": In(1), "mseg_slot": In(1), "mseg_word": In(4), "mseg_in": In(seg_multipliers_layout(p)),
            "last_ok": Out(1), "busy": Out(1),
            "ctl": Out(lane_control_layout(config.rows)),
            "q_min": Out(QBITS), "q_max": Out(QBITS),
            "f0_load": Out(1),
            "out_en": Out(1), "out_mask": Out(config.bus_bits // config.out_granule_bits),
            "out_addr": Out(p.word_addr_bits["out"]), "out_word": Out(2), "out_e": Out(2), "out_packed": Out(1),
            "signal_next": Out(1),
        } | ({"out_to_store": Out(1), "out_row_addr": Out(p.out_addr_bits)} if config.softmax_lanes else {})
          | ({"lookup": Out(lookup_layout(lookup)),       # the lanes' lookup, with the clamp bounds
              # a descriptor's lookup word (LOOKUP_STEPS_PER_WORD steps), written into the GEMM's slot
              "lookup_we": In(1), "lookup_slot": In(1), "lookup_word": In(3), "lookup_in": In(DESC_WORD_BITS)}
             if lookup else {}))

    def elaborate(self, platform):
        m = Module()
        p, cfg = self.params, self.config
        rows = cfg.rows
        rec_shape = record_layout(p)

        # ---- record queue (one place), per-GEMM parameters, segment multipliers --------------------
        rec, rec_valid, pending = Signal(rec_shape, name="rec"), Signal(name="rec_valid"), Signal(name="pending")
        params_layout = gemm_params_layout(cfg.lookup_steps)
        slots = [Signal(params_layout, name=f"gemm_slot{i}") for i in range(2)]
        # the slot's lookup steps come word by word during the setup (``lookup_we``), the rest at its end
        kept = params_layout.size - (lookup_layout(cfg.lookup_steps).size - lookup_layout(0).size)
        with m.If(self.prm_we):
            with m.If(self.prm_slot):
                m.d.sync += slots[1].as_value()[:kept].eq(self.prm_in.as_value()[:kept])
            with m.Else():
                m.d.sync += slots[0].as_value()[:kept].eq(self.prm_in.as_value()[:kept])
        if cfg.lookup_steps:
            entries = data.View(data.ArrayLayout(layout_of(LookupStep), LOOKUP_STEPS_PER_WORD), self.lookup_in)
            with m.If(self.lookup_we):
                for i in range(2):
                    with m.If(self.lookup_slot == i):
                        with m.Switch(self.lookup_word):
                            for w in range(lookup_words(cfg.lookup_steps)):
                                with m.Case(w):
                                    for j in range(LOOKUP_STEPS_PER_WORD):
                                        k = w * LOOKUP_STEPS_PER_WORD + j
                                        if k < cfg.lookup_steps:
                                            m.d.sync += [slots[i].lookup.steps[k].threshold.eq(entries[j].threshold),
                                                         slots[i].lookup.steps[k].down.eq(entries[j].down)]
        table_rows = 2 << max(self.seg_words - 1, 1).bit_length()
        m.submodules.mseg = mseg = Memory(shape=seg_multipliers_layout(p), depth=table_rows, init=[])
        mseg_w, mseg_r = mseg.write_port(), mseg.read_port(domain="comb")
        m.d.comb += [mseg_w.addr.eq(seg_table_addr(self.seg_words, self.mseg_slot, self.mseg_word)),
                     mseg_w.data.eq(self.mseg_in), mseg_w.en.eq(self.mseg_we)]

        # ---- job state ---------------------------------------------------------------------------
        phase = Signal(range(5))
        job = Signal(rec_shape)
        prm = Signal(params_layout)
        m_x, m_y = Signal(M_BITS), Signal(M_BITS)
        r = Signal(range(rows))
        w = Signal(2)                      # cycle within an output row
        wait = Signal(range(max(p.output_delay, 2)))
        busy_reads = Signal(range(rows * REQUANT_ROW_CYCLES + p.ODD_LAG + 2))
        row_addr = Signal(p.out_addr_bits)
        out_first = Signal()               # the current cycle is an output pass's first

        def per_output(f):  # a constant for each (raw, element width), selected at run time
            def pick(raw, e):
                def by_e(flag):
                    return Mux(e == 0, f(flag, 0), Mux(e == 1, f(flag, 1), Mux(e == 2, f(flag, 2), f(flag, 3))))
                return Mux(raw, by_e(True), by_e(False))
            return pick

        row_cycles_m1 = per_output(lambda raw, e: output_row_cycles(p, raw, e) - 1)
        words_m1 = per_output(lambda raw, e: p.out_words_per_row(e) - 1)
        window = per_output(lambda raw, e: read_window(p, raw, False, e))

        last_row = r == rows - 1
        row_done = w == row_cycles_m1(prm.raw, prm.out_width)
        ending = (((phase == FIRST_PASS) & last_row & ~prm.uses_y & ~job.last)
                  | ((phase == SECOND_PASS) & last_row & ~job.last)
                  | ((phase == OUTPUT) & last_row & row_done))
        start = rec_valid & ((phase == IDLE) | ending)
        wait_cycles = max(0, p.output_delay - rows)

        next_prm = data.View(params_layout, Mux(rec.slot, slots[1], slots[0]))
        spw_bits = p.slots_per_word.bit_length() - 1
        m.d.comb += mseg_r.addr.eq(seg_table_addr(self.seg_words, rec.slot, rec.seg >> spw_bits))
        pair = mseg_r.data[rec.seg[:spw_bits]] if spw_bits else mseg_r.data[0]
        with m.If(self.run_start):
            m.d.sync += [phase.eq(IDLE), rec_valid.eq(0), pending.eq(0), busy_reads.eq(0)]
        with m.Else():
            with m.If(self.seg_end_issued):
                m.d.sync += pending.eq(1)
            with m.If(self.rec_load):
                m.d.sync += [rec.eq(self.rec_in), rec_valid.eq(1)]
            with m.If(busy_reads != 0):
                m.d.sync += busy_reads.eq(busy_reads - 1)
            m.d.sync += out_first.eq(0)
            with m.If(start):
                combine_window = Mux(next_prm.uses_y, rows + p.ODD_LAG, p.ODD_LAG)
                m.d.sync += [job.eq(rec), prm.eq(next_prm), m_x.eq(pair.m_x), m_y.eq(pair.m_y), r.eq(0), w.eq(0),
                             rec_valid.eq(0), pending.eq(0), row_addr.eq(rec.out_base),
                             busy_reads.eq(Mux(next_prm.raw, window(1, next_prm.out_width), combine_window)),
                             phase.eq(Mux(next_prm.raw, OUTPUT, FIRST_PASS)), out_first.eq(next_prm.raw)]
            with m.Elif(ending):
                m.d.sync += phase.eq(IDLE)
            with m.Else():
                to_output = [phase.eq(OUTPUT if wait_cycles == 0 else WAIT), r.eq(0),
                             wait.eq(max(wait_cycles - 1, 0)), out_first.eq(wait_cycles == 0)]
                with m.Switch(phase):
                    with m.Case(FIRST_PASS):
                        m.d.sync += r.eq(r + 1)
                        with m.If(last_row):
                            with m.If(prm.uses_y):
                                m.d.sync += [phase.eq(SECOND_PASS), r.eq(0)]
                            with m.Else():
                                m.d.sync += to_output
                    with m.Case(SECOND_PASS):
                        m.d.sync += r.eq(r + 1)
                        with m.If(last_row):
                            m.d.sync += to_output
                    with m.Case(WAIT):
                        m.d.sync += wait.eq(wait - 1)
                        with m.If(wait == 0):
                            m.d.sync += [phase.eq(OUTPUT), out_first.eq(1)]
                    with m.Case(OUTPUT):
                        m.d.sync += w.eq(w + 1)
                        with m.If(row_done):
                            m.d.sync += [w.eq(0), r.eq(r + 1), row_addr.eq(row_addr + prm.out_row)]

        # Row r of the next segment lands in the sum memories at (its last term) + SUM_LANDING + r, and
        # two segments' rows must not meet on the column OR-trees.
        since_last = Signal(range(rows + 1), init=rows)
        with m.If(self.run_start):
            m.d.sync += since_last.eq(rows)
        with m.Elif(self.seg_end_issued):
            m.d.sync += since_last.eq(1)
        with m.Elif(since_last != rows):
            m.d.sync += since_last.eq(since_last + 1)
        m.d.comb += [self.last_ok.eq(~pending & (since_last == rows) & (busy_reads <= p.SUM_LANDING)),
                     self.f0_load.eq((phase == OUTPUT) & out_first & job.new_group & ~prm.raw)]
        with m.If((phase == OUTPUT) & out_first & ~prm.raw):
            m.d.sync += [self.q_min.eq(prm.q_min), self.q_max.eq(prm.q_max)]
            if cfg.lookup_steps:
                m.d.sync += self.lookup.eq(prm.lookup)

        # ---- lane control, stage by stage (the even lanes'; lane.py delays it for the odd ones) ----
        combining = (phase == FIRST_PASS) | (phase == SECOND_PASS)
        outputting = (phase == OUTPUT) & (w == 0)
        ctl = self.ctl
        first_sum, second_sum = Mux(prm.swap, SRC_Y, SRC_X), Mux(prm.swap, SRC_X, SRC_Y)
        m.d.comb += [ctl.issue_src.eq(Mux(phase == FIRST_PASS, first_sum, Mux(phase == SECOND_PASS, second_sum,
                                                                                Mux(prm.raw, first_sum, SRC_ACC)))),
                     ctl.issue_row.eq(r)]
        # q+1
        op_combine = delay(m, combining, 1, "op_combine")
        op_output = delay(m, outputting, 1, "op_output")
        op_raw = delay(m, prm.raw, 1, "op_raw")
        m.d.comb += [ctl.add_bias.eq(op_output & ~op_raw),
                     ctl.b_sel.eq(Mux(op_combine, B_SEGMENT, Mux(op_raw, B_RAW, B_REQUANT))),
                     ctl.m.eq(delay(m, Mux(phase == SECOND_PASS, m_y, m_x), 1, "op_m"))]
        # q+2+L
        late = 1 + p.lane_mul_latency
        m.d.comb += [ctl.acc_we.eq(delay(m, op_combine, late, "acc_we")),
                     ctl.acc_row.eq(delay(m, r, late, "acc_row")),
                     ctl.acc_first.eq(delay(m, (phase == FIRST_PASS) & job.first, late + 1, "acc_first")),
                     ctl.requant.eq(delay(m, op_output & ~op_raw, late, "requant"))]
        # the result register
        m.d.comb += [ctl.out_we.eq(delay(m, op_output, late + p.tail_stages, "out_we")),
                     ctl.out_raw.eq(delay(m, op_raw, late + p.tail_stages, "out_raw"))]

        # ---- OUT writes: output-pass cycle w < W of a row writes word w, once the odd lanes have it ---
        out_slot = data.StructLayout({"pass": 1, "valid": 1, "addr": p.out_addr_bits, "word": 2, "e": 2,
                                      "packed": 1, "final": 1, "to_store": 1})
        slot = Signal(out_slot)
        writes = (phase == OUTPUT) & (w <= words_m1(prm.raw, prm.out_width))
        m.d.comb += [slot["pass"].eq(phase == OUTPUT), slot.valid.eq(writes), slot.addr.eq(row_addr + w), slot.word.eq(w),
                     slot.e.eq(prm.out_width), slot.packed.eq(prm.packed), slot.to_store.eq(prm.to_store),
                     slot.final.eq((phase == OUTPUT) & last_row & row_done & job.gemm_last & job.signal)]
        chain = [slot]
        for stage in range(p.out_write_delay + p.ODD_LAG):
            chain.append(Signal(out_slot, name=f"out_slot_{stage + 1}"))
            m.d.sync += chain[-1].eq(chain[-2])
        at_write = chain[-1]
        m.d.comb += [self.out_en.eq(at_write.valid), self.out_word.eq(at_write.word), self.out_e.eq(at_write.e),
                     self.out_packed.eq(at_write.packed), self.signal_next.eq(at_write.final)]
        if cfg.softmax_lanes:
            m.d.comb += [self.out_to_store.eq(at_write.to_store), self.out_row_addr.eq(at_write.addr)]
        # A packed GEMM's address is a row slot: part s mod P of word s div P, P rows of its width per word.
        granules = len(self.out_mask)
        m.d.comb += [self.out_addr.eq(at_write.addr), self.out_mask.eq(-1)]
        with m.If(at_write.packed):
            with m.Switch(at_write.e):
                for e in range(4):
                    per_word = p.rows_per_out_word(e)
                    if per_word == 1:
                        continue
                    shift, span = per_word.bit_length() - 1, granules // per_word
                    with m.Case(e):
                        part = at_write.addr[:shift]
                        m.d.comb += [self.out_addr.eq(at_write.addr >> shift),
                                     self.out_mask.eq(Const((1 << span) - 1, granules) << (part * span))]

        # ---- drain state: anything that will still write OUT or start a job ----------------------
        in_flight = Cat(*(s["pass"] for s in chain[1:])).any()
        m.d.comb += self.busy.eq(pending | rec_valid | (phase != IDLE) | in_flight)
        return m
