"""The COMPUTE unit: GEMM setup, the issue loop, the operand pipeline, the PE array and the lanes.

A GEMM taken in cycle t0 reads its descriptor from PARAM, one word per cycle from t0 + 1 (three fixed
words, then ceil(n_seg / slots_per_word) segment words and, on a core with an output lookup,
ceil(lookup_steps / 8) lookup words: seg_words counts both), arms the constant prefetcher in t0 + 4 +
seg_words, computes any segment start that needs it (``segstart``, 49 + 2 cycles each) and starts
the issue loop in t0 + 5 + seg_words (+ 51 per such segment). Terms then flow

    t     issue: ACT / WGT addresses              t+2  row / column decode
    t+1   buffer data; row and column vectors    t+3  PE terms          t+4  PE accumulate

The unit takes its next instruction in the cycle after the GEMM's last term issues; the lanes drain
behind it. The GEMM signals ``signal_prev`` (its buffers are read) in the cycle of its last issue and
``signal_next`` in the cycle of its last OUT write. A GEMM without tiles signals, like a SYNC with a
signal and like END, only once every earlier output is written.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..units.pipeline import delay
from .config import SLOT_BITS, CoreConfig
from .consts import ColumnConstants
from .decode import column_operand_signals, decode_column, decode_row, row_operand_layout
from .front import header, take_tokens, tokens_ready, track_end, unit_members
from .isa import (DESC_WORD_BITS, LOOKUP_STEPS_PER_WORD, DescActStrides, DescLoops, DescOtherStrides, Gemm, Mode,
                  Opcode, Segment, Softmax, element_bits)
from .issue import IssueLoop, seg_issue_layout
from .lane import LanePair
from .layouts import layout_of, view
from .params import CoreParams
from .pe import PEArray
from .segstart import SegmentStart
from .sequencer import LaneSequencer, record_layout, seg_multipliers_layout
from .softmax_driver import SoftmaxDriver

IDLE, SETUP, GENERAL, GENERAL_RUN, ISSUE, EMPTY, SOFTMAX = range(7)
DESC_LAG = 2    # the row decode reads the descriptor as it was this many cycles before


def staged_select(m: Module, window, offset, unit: int, width: int, stages: int):
    """window bits [unit * offset, unit * offset + width), registered after ``stages`` pipeline
    stages: a logarithmic shifter from its widest level down, each level keeping only the bits later
    levels can still bring below ``width``, with its levels split evenly over the stages."""
    levels = list(reversed(range(len(offset))))
    per_stage = -(-len(levels) // stages) if levels else 0
    value, rest = window, offset
    for stage in range(stages):
        for level in levels[stage * per_stage:(stage + 1) * per_stage]:
            step = unit << level
            keep = width + unit * ((1 << level) - 1)
            shifted = value[step:]
            shifted = shifted[:keep] if len(shifted) >= keep else Cat(shifted, Const(0, keep - len(shifted)))
            value = Mux(rest[level], shifted, value[:keep])
        registered = Signal(len(value), name=f"select_stage{stage}")
        m.d.sync += registered.eq(value)
        value = registered
        if stage < stages - 1:
            rest = delay(m, rest, 1, f"select_offset{stage}")
    return value[:width]


class ComputeUnit(wiring.Component):
    def __init__(self, config: CoreConfig):
        self.config, self.params = config, CoreParams(config)
        p = self.params
        bus, bits, spw = config.bus_bits, p.word_addr_bits, p.slots_per_word
        super().__init__(unit_members() | {
            "act_addr": Out(bits["act"] - 1).array(2), "act_data": In(bus).array(2),
            "wgt_addr": Out(bits["wgt"]), "wgt_data": In(bus),
            "param_addr": Out(bits["param"]).array(spw), "param_data": In(SLOT_BITS).array(spw),
            "out_addr": Out(bits["out"]), "out_data": Out(bus),
            "out_en": Out(bus // config.out_granule_bits),     # a write enable per granule
        })

    def elaborate(self, platform):
        m = Module()
        p, cfg = self.params, self.config
        rows, cols, spw = cfg.rows, cfg.cols, p.slots_per_word
        lg_spw = spw.bit_length() - 1

        m.submodules.issue = issue = IssueLoop(cfg)
        m.submodules.consts = consts = ColumnConstants(cfg)
        m.submodules.sequencer = seq = LaneSequencer(cfg)
        m.submodules.array = array = PEArray(cfg)
        m.submodules.segstart = segstart = SegmentStart()
        pairs = [LanePair(cfg, single=cols == 1) for _ in range(0, cols, 2)]
        for i, pair in enumerate(pairs):
            m.submodules[f"lanes{i}"] = pair
        for unit in (consts, seq):
            m.d.comb += unit.run_start.eq(self.run_start)

        softmax = None
        if cfg.softmax_lanes:
            m.submodules.softmax = softmax = SoftmaxDriver(cfg)

        # ---- executor ------------------------------------------------------------------------------
        h = header(self)
        state = Signal(range(7))
        inst = Signal(layout_of(Gemm))
        slot = Signal()
        drained = ~seq.busy
        op = h.opcode
        signals = h.signal_prev | h.signal_next
        # a SOFTMAX reads the tile the lanes are still writing into the store until they drain
        may = Mux(op == Opcode.GEMM, 1, Mux((op == Opcode.END) | (op == Opcode.SOFTMAX), drained, ~signals | drained))
        m.d.comb += self.take.eq(self.inst_valid & (state == IDLE) & ~self.ended & tokens_ready(self) & may)
        take_tokens(m, self)
        track_end(m, self, op == Opcode.END)
        gemm_taken = self.take & (op == Opcode.GEMM)
        sync_taken = self.take & (op != Opcode.GEMM) & (op != Opcode.END) & (op != Opcode.SOFTMAX)
        softmax_done = Signal()
        softmax_flags = Signal(2)          # the SOFTMAX's signal_prev, signal_next
        if softmax is not None:
            softmax_taken = self.take & (op == Opcode.SOFTMAX)
            m.d.comb += [softmax.start.eq(softmax_taken), softmax.inst.eq(view(Softmax, self.inst)),
                         softmax_done.eq(softmax.done)]
            with m.If(softmax_taken):
                m.d.sync += [state.eq(SOFTMAX), softmax_flags.eq(Cat(h.signal_prev, h.signal_next))]
            with m.If((state == SOFTMAX) & softmax.done):
                m.d.sync += state.eq(IDLE)
        with m.If(self.run_start):
            m.d.sync += [state.eq(IDLE), slot.eq(1)]
        with m.Elif(gemm_taken):
            m.d.sync += [state.eq(SETUP), inst.eq(view(Gemm, self.inst)), slot.eq(~slot)]

        # ---- setup: descriptor words, one read per cycle ----------------------------------------------
        loops = Signal(layout_of(DescLoops))
        act_strides = Signal(layout_of(DescActStrides))
        other = Signal(layout_of(DescOtherStrides))
        seg_words = Signal(4)
        m.d.comb += seg_words.eq((loops.n_seg + spw - 1) >> lg_spw)
        rd = Signal(5)                     # the descriptor word read in this cycle
        desc_end = 3 + seg_words
        if cfg.lookup_steps:               # the lookup's words follow the segments'
            lookup_words = Signal(4)
            m.d.comb += lookup_words.eq((loops.lookup_steps + LOOKUP_STEPS_PER_WORD - 1) // LOOKUP_STEPS_PER_WORD)
            desc_end = desc_end + lookup_words
        reading = (state == SETUP) & ((rd < 3) | (rd < desc_end))
        arrive, arrive_k = Signal(), Signal(5)
        m.d.sync += [arrive.eq(reading), arrive_k.eq(rd)]
        with m.If(gemm_taken):
            m.d.sync += rd.eq(0)
        with m.Elif(reading):
            m.d.sync += rd.eq(rd + 1)
        desc_word = Cat(*self.param_data)[:DESC_WORD_BITS]
        copies = bool(cfg.softmax_bias_side or cfg.softmax_relative_side)
        if copies:
            m.d.comb += softmax.param_data.eq(Cat(*self.param_data))
        for bank in range(spw):
            addr = Mux(reading, inst.desc_addr + rd, consts.param_addr[bank])
            if copies:       # a SOFTMAX copies its bias table or relative terms while it holds the unit
                addr = Mux(softmax.param_read, softmax.param_addr, addr)
            m.d.comb += [self.param_addr[bank].eq(addr),
                         consts.param_data[bank].eq(self.param_data[bank])]
        with m.If(arrive):
            with m.Switch(arrive_k):
                with m.Case(0):
                    m.d.sync += loops.eq(desc_word)
                with m.Case(1):
                    m.d.sync += act_strides.eq(desc_word)
                with m.Case(2):
                    m.d.sync += other.eq(desc_word)

        # segment words: issue-side table, lane-side multipliers, and which starts need ``segstart``
        segs = [data.View(layout_of(Segment), self.param_data[j]) for j in range(spw)]
        seg_arrive = arrive & (arrive_k >= 3)
        if cfg.lookup_steps:
            seg_arrive = seg_arrive & (arrive_k < 3 + seg_words)
        word_index = (arrive_k - 3)[:4]
        issue_row = Signal(data.ArrayLayout(seg_issue_layout(), spw))
        mult_row = Signal(seg_multipliers_layout(p))
        for j, sgm in enumerate(segs):
            m.d.comb += [issue_row[j].j_start.eq(sgm.j_start), issue_row[j].j_len.eq(sgm.j_len),
                         issue_row[j].zero_point.eq(sgm.zero_point), issue_row[j].residue_pass.eq(sgm.residue_pass),
                         issue_row[j].y_terms.eq(sgm.y_terms),
                         mult_row[j].m_x.eq(sgm.m_x), mult_row[j].m_y.eq(sgm.m_y)]
        m.d.comb += [issue.segw_we.eq(seg_arrive), issue.segw_addr.eq(word_index), issue.segw_data.eq(issue_row),
                     seq.mseg_we.eq(seg_arrive), seq.mseg_slot.eq(slot), seq.mseg_word.eq(word_index),
                     seq.mseg_in.eq(mult_row)]
        general = Signal(16)               # segments whose start segstart computes
        prev_end = Signal(17)
        with m.If(gemm_taken):
            m.d.sync += general.eq(0)
        with m.Elif(seg_arrive):
            end = prev_end
            for j, sgm in enumerate(segs):
                index = Cat(Const(j, lg_spw), word_index) if lg_spw else word_index
                needs = (sgm.j_start != 0) & ((index == 0) | (sgm.j_start != end)) & (index < loops.n_seg)
                m.d.sync += general.bit_select(index[:4], 1).eq(needs)
                end = sgm.j_start + sgm.j_len
            m.d.sync += prev_end.eq(end)

        if cfg.lookup_steps:     # lookup words go to this GEMM's parameter slot as they arrive
            m.d.comb += [seq.lookup_we.eq(arrive & (arrive_k >= 3 + seg_words)), seq.lookup_slot.eq(slot),
                         seq.lookup_word.eq(arrive_k - 3 - seg_words), seq.lookup_in.eq(desc_word)]

        # after the last read: arm the prefetcher, hand the lanes this GEMM's parameters
        last_read_done = Signal()
        m.d.comb += last_read_done.eq((state == SETUP) & ~reading & (rd >= 3))
        empty = (inst.n_batch == 0) | (loops.n_ob == 0) | (inst.n_rb == 0)
        m.d.comb += [consts.arm.eq(last_read_done), consts.arm_col_base.eq(inst.col_base),
                     consts.arm_col_b.eq(other.col_b), consts.arm_col_ob.eq(other.col_ob),
                     consts.arm_n_batch.eq(inst.n_batch), consts.arm_n_ob.eq(loops.n_ob), consts.arm_empty.eq(empty),
                     consts.arm_raw.eq(loops.raw),
                     seq.prm_we.eq(last_read_done), seq.prm_slot.eq(slot)]
        prm = seq.prm_in
        m.d.comb += [prm.raw.eq(loops.raw), prm.uses_y.eq(loops.uses_y), prm.out_width.eq(loops.out_width), prm.packed.eq(loops.packed),
                     prm.swap.eq((loops.mode == Mode.HLUQ) & loops.uses_y),
                     prm.out_row.eq(other.out_row), prm.q_min.eq(loops.q_min), prm.q_max.eq(loops.q_max),
                     prm.to_store.eq(loops.to_store if cfg.softmax_lanes else 0)]
        if cfg.lookup_steps:
            m.d.comb += [prm.lookup.n.eq(loops.lookup_steps), prm.lookup.base.eq(loops.lookup_base)]
        with m.If(last_read_done):
            m.d.sync += state.eq(GENERAL)

        # ---- general segment starts, one after another ----------------------------------------------
        first_general = Signal(4)
        for index in reversed(range(16)):
            with m.If(general[index]):
                m.d.comb += first_general.eq(index)
        target = Signal(4)
        start_issue = (state == GENERAL) & (general == 0)
        m.d.comb += [issue.peek_seg.eq(first_general), segstart.j.eq(issue.peek_j_start),
                     segstart.n_d.eq(loops.n_d), segstart.n_i.eq(loops.n_i), segstart.s_c.eq(act_strides.c),
                     segstart.s_i.eq(act_strides.i), segstart.s_d.eq(act_strides.d),
                     segstart.start.eq((state == GENERAL) & (general != 0))]
        gen_written = (state == GENERAL_RUN) & ~segstart.busy & ~segstart.start
        with m.If((state == GENERAL) & (general != 0)):
            m.d.sync += [state.eq(GENERAL_RUN), target.eq(first_general)]
        with m.If(gen_written):
            m.d.sync += [state.eq(GENERAL), general.bit_select(target, 1).eq(0)]
        m.d.comb += [issue.gen_we.eq(gen_written), issue.gen_addr.eq(target),
                     issue.gen_data.d0.eq(segstart.d0), issue.gen_data.i0.eq(segstart.i0),
                     issue.gen_data.off_c.eq(segstart.off_c), issue.gen_data.off_i.eq(segstart.off_i),
                     issue.gen_data.off_d.eq(segstart.off_d)]
        with m.If(start_issue):
            m.d.sync += state.eq(Mux(empty, EMPTY, ISSUE))
        m.d.comb += [issue.start.eq(start_issue & ~empty), issue.inst.eq(inst), issue.loops.eq(loops),
                     issue.act_strides.eq(act_strides), issue.other.eq(other)]
        issue_done = issue.issue & issue.gemm_last
        with m.If((state == ISSUE) & issue_done):
            m.d.sync += state.eq(IDLE)
        empty_done = (state == EMPTY) & drained
        with m.If(empty_done):
            m.d.sync += state.eq(IDLE)

        m.d.comb += [self.signal_prev.eq((issue_done & inst.signal_prev) | (sync_taken & h.signal_prev)
                                         | (empty_done & inst.signal_prev) | (softmax_done & softmax_flags[0])),
                     self.signal_next.eq(seq.signal_next | (sync_taken & h.signal_next)
                                         | (empty_done & inst.signal_next) | (softmax_done & softmax_flags[1]))]
        return self._datapath(m, issue, consts, seq, array, pairs, loops, inst, slot, softmax)

    def _datapath(self, m, issue, consts, seq, array, pairs, loops, inst, slot, softmax):
        p, cfg = self.params, self.config
        rows, cols = cfg.rows, cfg.cols
        a_bits, w_bits = cfg.act_bits, cfg.weight_bits
        lg_codes = p.codes_per_word.bit_length() - 1
        lg_vec = p.vectors_per_word.bit_length() - 1

        # ---- t: addresses --------------------------------------------------------------------------
        m.d.comb += [issue.last_ok.eq(seq.last_ok), issue.group_ready.eq(consts.ready),
                     seq.seg_end_issued.eq(issue.issue & issue.seg_last)]
        code_addr = issue.act_addr[:p.act_code_addr_bits]
        word = code_addr >> lg_codes
        m.d.comb += [self.act_addr[0].eq((word + 1) >> 1), self.act_addr[1].eq(word >> 1),
                     self.wgt_addr.eq(issue.wgt_addr >> lg_vec)]
        rec = Signal(record_layout(p))
        m.d.comb += [rec.seg.eq(issue.seg), rec.first.eq(issue.tile_first_seg), rec.last.eq(issue.tile_last_seg),
                     rec.new_group.eq(issue.new_group), rec.slot.eq(slot), rec.out_base.eq(issue.out_base),
                     rec.gemm_last.eq(issue.gemm_last), rec.signal.eq(inst.signal_next)]

        # ---- t+1 .. t+3: row and column vectors ---------------------------------------------------------
        # The two words a row vector may span, in bank order even-odd-even, so that one shift by
        # (odd first word) * P + offset codes finds it; a shifter this wide needs its pipeline stages.
        odd1 = delay(m, word[0], 1, "odd1")
        offset1 = delay(m, code_addr[:lg_codes], 1, "offset1") if lg_codes else Const(0, 0)
        pos1 = delay(m, issue.wgt_addr[:lg_vec], 1, "pos1") if lg_vec else Const(0, 1)
        window = Cat(self.act_data[0], self.act_data[1], self.act_data[0])
        row_vec = staged_select(m, window, Cat(offset1, odd1), a_bits, rows * a_bits, p.EXTRACT_STAGES)
        col_vec = delay(m, self.wgt_data.word_select(pos1, cols * w_bits), p.EXTRACT_STAGES, "col_vec")
        take = p.DECODE_AT - 1     # the zero points change just before the block's first decode
        m.d.comb += [consts.claim.eq(issue.issue & issue.group_first),
                     consts.take_zp.eq(delay(m, issue.issue & issue.group_first, take, "take_zp"))]

        # ---- t+4: decode (t+5: row 0 of the array; the array skews the rest) ----------------------
        dec = p.DECODE_AT
        seg_zp = delay(m, issue.seg_zp, dec, "seg_zp_dec")
        seg_rp = delay(m, issue.seg_rp, dec, "seg_rp_dec")
        seg_yt = delay(m, issue.seg_yt, dec, "seg_yt_dec")
        term = delay(m, issue.issue & ~issue.null, dec, "term_dec")
        # the next GEMM's setup rewrites the descriptor from 4 cycles after this GEMM's last issue on
        modes = data.View(loops.shape(), delay(m, loops.as_value(), DESC_LAG, "loops_dec"))
        layout = row_operand_layout(a_bits, cfg.max_shift)
        for r in range(rows):
            operand = Signal(layout, name=f"row{r}")
            decode_row(m, operand, row_vec[r * a_bits:(r + 1) * a_bits], modes, seg_zp, seg_rp, seg_yt, a_bits,
                       p.has_shift_modes)
            m.d.comb += array.op[r].eq(operand)
        for k in range(cols):
            column = column_operand_signals(f"col{k}", w_bits)
            decode_column(m, column.w, column.w3, col_vec[k * w_bits:(k + 1) * w_bits], consts.zp[k], w_bits, term)
            m.d.comb += [array.w[k].eq(column.w), array.w3[k].eq(column.w3)]
        m.d.comb += array.last.eq(delay(m, issue.issue & issue.seg_last, dec + 1, "last_pe"))
        # the record reaches the sequencer when row 0's sums reach the lanes
        m.d.comb += [seq.rec_in.eq(delay(m, rec.as_value(), p.RECORD_DELAY - 1, "rec")),
                     seq.rec_load.eq(delay(m, issue.issue & issue.seg_last, p.RECORD_DELAY - 1, "rec_load"))]

        # ---- lanes and OUT ----------------------------------------------------------------------------
        outs = []
        for i, pair in enumerate(pairs):
            m.d.comb += [pair.ctl.eq(seq.ctl), pair.col_we.eq(array.col_valid), pair.col_row.eq(array.col_row),
                         pair.q_min.eq(seq.q_min), pair.q_max.eq(seq.q_max)]
            if cfg.lookup_steps:
                m.d.comb += pair.lookup.eq(seq.lookup)
            for j in range(len(pair.lanes)):
                k = 2 * i + j
                m.d.comb += [pair.col_x[j].eq(array.col_x[k]), pair.col_y[j].eq(array.col_y[k]),
                             pair.consts[j].eq(consts.f0[k])]
                outs.append(pair.out[j])
        m.d.comb += consts.f0_load.eq(seq.f0_load)
        words = {}
        for e in range(4):
            row = Cat(*(out[:element_bits(e)] for out in outs))
            n = p.out_words_per_row(e)
            # A packed GEMM's row goes to every part of the word; the write enables pick its part.
            replicated = Cat(*([row] * p.rows_per_out_word(e)))
            padded = Cat(row, Const(0, n * cfg.bus_bits - len(row)))
            words[e, 0] = [padded[i * cfg.bus_bits:(i + 1) * cfg.bus_bits] for i in range(n)]
            words[e, 1] = [replicated] if p.rows_per_out_word(e) > 1 else words[e, 0]
        with m.Switch(Cat(seq.out_word, seq.out_e, seq.out_packed)):
            for (e, packed), ws in words.items():
                for i, value in enumerate(ws):
                    with m.Case(i | e << 2 | packed << 4):
                        m.d.comb += self.out_data.eq(value)
        lanes_en = seq.out_en
        if softmax is not None:        # a to_store GEMM's rows go to the path; its codes come back to OUT
            lanes_en = seq.out_en & ~seq.out_to_store
            m.d.comb += [softmax.w_en.eq(seq.out_en & seq.out_to_store), softmax.w_addr.eq(seq.out_row_addr),
                         softmax.w_row.eq(words[2, 0][0])]
        m.d.comb += [self.out_addr.eq(seq.out_addr), self.out_en.eq(Mux(lanes_en, seq.out_mask, 0))]
        if softmax is not None:
            with m.If(softmax.out_en):
                m.d.comb += [self.out_addr.eq(softmax.out_addr), self.out_data.eq(softmax.out_data),
                             self.out_en.eq(-1)]
        return m
