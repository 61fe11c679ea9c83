"""The issue loop of a GEMM: one reduction term per cycle, all tiles, all segments.

For term (b, ob, rb, s, j) it presents the ACT code address and WGT vector address of docs/core.md,

    act = act_base + b as.b + ob as.ob + rb as.rb + off(j),   off(j) = c as.c + i as.i + d as.d
    wgt = wgt_base + b wgt_b + ob wgt_ob + j

keeping every product as a running sum (no multiplier). j's digits (c, i, d) are counted; a segment
starts from the previous term's successor when its j_start equals it (contiguous segments), from zero
when j_start = 0, and otherwise from the state ``segstart`` computed during setup. A segment with
j_len = 0 issues one *null* term (it accumulates nothing; its end still loads the shadows).

Stalls, the only irregularity (docs/core.md): a segment's last term waits for the lanes (``last_ok``),
and the first term of a tile that starts a column block waits until that block's constants are staged
(``group_ready``).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import CoreConfig
from .isa import DescActStrides, DescLoops, DescOtherStrides, Gemm, Segment
from .layouts import layout_of
from .params import CoreParams
from .segstart import IDX_BITS, J_BITS, OFF_BITS

ADDR_BITS = 24
J_COUNT_BITS = J_BITS + 1    # j_start + j_len reaches 2^17 - 2


def seg_issue_layout() -> data.StructLayout:
    w = {f.name: f.width for f in Segment.LAYOUT}
    return data.StructLayout({"j_start": w["j_start"], "j_len": w["j_len"], "zero_point": w["zero_point"],
                              "residue_pass": w["residue_pass"], "y_terms": w["y_terms"]})


def seg_start_layout() -> data.StructLayout:
    return data.StructLayout({"d0": IDX_BITS, "i0": IDX_BITS, "off_c": OFF_BITS, "off_i": OFF_BITS,
                              "off_d": OFF_BITS})


def _state_layout() -> data.StructLayout:
    return data.StructLayout({"j": J_COUNT_BITS, "d": IDX_BITS, "i": IDX_BITS,
                              "off_c": OFF_BITS, "off_i": OFF_BITS, "off_d": OFF_BITS})


class IssueLoop(wiring.Component):
    def __init__(self, config: CoreConfig):
        self.config, self.params = config, CoreParams(config)
        p = self.params
        self.seg_rows = 1 << max(p.seg_words(config.max_segments) - 1, 1).bit_length()
        spw = p.slots_per_word
        super().__init__({
            "start": In(1),
            "inst": In(layout_of(Gemm)), "loops": In(layout_of(DescLoops)),
            "act_strides": In(layout_of(DescActStrides)), "other": In(layout_of(DescOtherStrides)),
            # segment tables, written by the setup
            "segw_we": In(1), "segw_addr": In(4), "segw_data": In(data.ArrayLayout(seg_issue_layout(), spw)),
            "gen_we": In(1), "gen_addr": In(4), "gen_data": In(seg_start_layout()),
            "peek_seg": In(4), "peek_j_start": Out(J_BITS),     # for the setup's segstart
            "last_ok": In(1), "group_ready": In(1),
            "active": Out(1), "issue": Out(1),
            "act_addr": Out(ADDR_BITS), "wgt_addr": Out(ADDR_BITS),
            "null": Out(1), "seg_last": Out(1), "group_first": Out(1),
            "seg": Out(4), "seg_zp": Out(8), "seg_rp": Out(1), "seg_yt": Out(1),
            "tile_first_seg": Out(1), "tile_last_seg": Out(1), "new_group": Out(1),
            "out_base": Out(ADDR_BITS), "gemm_last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p, cfg = self.params, self.config
        spw = p.slots_per_word
        lg = spw.bit_length() - 1
        loops, strides, other, inst = self.loops, self.act_strides, self.other, self.inst

        m.submodules.segw = segw = Memory(shape=data.ArrayLayout(seg_issue_layout(), spw), depth=self.seg_rows, init=[])
        m.submodules.gen = gen = Memory(shape=seg_start_layout(), depth=16, init=[])
        sw, sr, peek = segw.write_port(), segw.read_port(domain="comb"), segw.read_port(domain="comb")
        gw, gr = gen.write_port(), gen.read_port(domain="comb")
        m.d.comb += [sw.addr.eq(self.segw_addr), sw.data.eq(self.segw_data), sw.en.eq(self.segw_we),
                     gw.addr.eq(self.gen_addr), gw.data.eq(self.gen_data), gw.en.eq(self.gen_we),
                     peek.addr.eq(self.peek_seg >> lg),
                     self.peek_j_start.eq((peek.data[self.peek_seg[:lg]] if lg else peek.data[0]).j_start)]

        # ---- state -------------------------------------------------------------------------------
        state = Signal(_state_layout())
        s, left, null = Signal(4), Signal(J_COUNT_BITS), Signal()
        zp, rp, yt = Signal(8), Signal(), Signal()
        b, ob, rb = Signal(16), Signal(16), Signal(16)
        a_b, a_ob, a_rb = (Signal(ADDR_BITS, name=n) for n in ("a_b", "a_ob", "a_rb"))
        w_b, w_ob = Signal(ADDR_BITS), Signal(ADDR_BITS)
        o_b, o_ob, o_rb = (Signal(ADDR_BITS, name=n) for n in ("o_b", "o_ob", "o_rb"))
        tile_first = Signal()

        seg_end = left == 0
        tile_end = seg_end & (s == loops.n_seg - 1)
        last_tile = (b + 1 == inst.n_batch) & (ob + 1 == loops.n_ob) & (rb + 1 == inst.n_rb)
        gemm_end = tile_end & last_tile
        new_group = rb == 0
        wait_group = tile_first & new_group & ~self.group_ready
        wait_last = seg_end & ~self.last_ok
        issue = self.active & ~wait_group & ~wait_last
        m.d.comb += [self.issue.eq(issue),
                     self.act_addr.eq(a_rb + state.off_d), self.wgt_addr.eq(w_ob + state.j),
                     self.null.eq(null), self.seg_last.eq(seg_end), self.group_first.eq(tile_first & new_group),
                     self.seg.eq(s), self.seg_zp.eq(zp), self.seg_rp.eq(rp), self.seg_yt.eq(yt),
                     self.tile_first_seg.eq(s == 0), self.tile_last_seg.eq(s == loops.n_seg - 1),
                     self.new_group.eq(new_group), self.out_base.eq(o_rb), self.gemm_last.eq(gemm_end)]

        # ---- the successor of the current term in j ------------------------------------------------
        step = Signal(_state_layout())
        d_wrap, i_wrap = state.d + 1 == loops.n_d, state.i + 1 == loops.n_i
        m.d.comb += step.eq(state)
        with m.If(~null):
            m.d.comb += step.j.eq(state.j + 1)
            with m.If(~d_wrap):
                m.d.comb += [step.d.eq(state.d + 1), step.off_d.eq(state.off_d + strides.d)]
            with m.Elif(~i_wrap):
                m.d.comb += [step.d.eq(0), step.i.eq(state.i + 1), step.off_i.eq(state.off_i + strides.i),
                             step.off_d.eq(state.off_i + strides.i)]
            with m.Else():
                new_c = state.off_c + strides.c
                m.d.comb += [step.d.eq(0), step.i.eq(0), step.off_c.eq(new_c), step.off_i.eq(new_c),
                             step.off_d.eq(new_c)]

        # ---- entering a segment: its parameters and start state --------------------------------
        entering = self.start | (issue & seg_end)
        next_s = Mux(self.start | tile_end, 0, s + 1)
        m.d.comb += [sr.addr.eq(next_s >> lg), gr.addr.eq(next_s)]
        seg = sr.data[next_s[:lg]] if lg else sr.data[0]
        begin = Signal(_state_layout())
        with m.If(~self.start & (step.j == seg.j_start)):    # contiguous with the previous segment
            m.d.comb += begin.eq(step)
        with m.Elif(seg.j_start == 0):
            m.d.comb += begin.eq(0)
        with m.Else():
            g = gr.data
            m.d.comb += [begin.j.eq(seg.j_start), begin.d.eq(g.d0), begin.i.eq(g.i0), begin.off_c.eq(g.off_c),
                         begin.off_i.eq(g.off_i), begin.off_d.eq(g.off_d)]

        with m.If(entering):
            m.d.sync += [state.eq(begin), s.eq(next_s), zp.eq(seg.zero_point), rp.eq(seg.residue_pass),
                         yt.eq(seg.y_terms), null.eq(seg.j_len == 0), left.eq(Mux(seg.j_len == 0, 0, seg.j_len - 1))]
        with m.Elif(issue):
            m.d.sync += [state.eq(step), left.eq(left - 1)]

        # ---- tiles ---------------------------------------------------------------------------------
        with m.If(self.start):
            m.d.sync += [self.active.eq(1), tile_first.eq(1), b.eq(0), ob.eq(0), rb.eq(0),
                         a_b.eq(inst.act_base), a_ob.eq(inst.act_base), a_rb.eq(inst.act_base),
                         w_b.eq(inst.wgt_base), w_ob.eq(inst.wgt_base),
                         o_b.eq(inst.out_base), o_ob.eq(inst.out_base), o_rb.eq(inst.out_base)]
        with m.Elif(issue):
            m.d.sync += tile_first.eq(tile_end)
            with m.If(gemm_end):
                m.d.sync += self.active.eq(0)
            with m.Elif(tile_end):
                with m.If(rb + 1 != inst.n_rb):
                    m.d.sync += [rb.eq(rb + 1), a_rb.eq(a_rb + strides.rb), o_rb.eq(o_rb + other.out_rb)]
                with m.Elif(ob + 1 != loops.n_ob):
                    a, o = a_ob + strides.ob, o_ob + other.out_ob
                    m.d.sync += [rb.eq(0), ob.eq(ob + 1), a_ob.eq(a), a_rb.eq(a), o_ob.eq(o), o_rb.eq(o),
                                 w_ob.eq(w_ob + other.wgt_ob)]
                with m.Else():
                    a, o, w = a_b + strides.b, o_b + other.out_b, w_b + other.wgt_b
                    m.d.sync += [rb.eq(0), ob.eq(0), b.eq(b + 1), a_b.eq(a), a_ob.eq(a), a_rb.eq(a),
                                 o_b.eq(o), o_ob.eq(o), o_rb.eq(o), w_b.eq(w), w_ob.eq(w)]
        return m
