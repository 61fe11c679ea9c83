"""GEMM engine: on-chip operand memories, a tiling controller, the PE array, requantizer and output
memory, behind one load/unload bus and a start/done handshake (parameters: ``EngineConfig``).

Tiling: for each row block rb (R rows) and output block ob (K outputs), the controller streams the
reduction j = 0..C-1 through the array, one (act word, wgt word) pair per cycle: the act word holds
x[rb*R + r, j] for the R rows, the wgt word w[ob*K + k, j] for the K columns. Tiles follow each other
without bubbles when C >= ``min_gap``; otherwise the last term of a tile waits until ``min_gap``
cycles have passed since the previous one (``EngineConfig.min_gap`` says why). While tile t+1
streams, tile t's R*K accumulators drain one per cycle through the requantizer (or straight out for
raw scores) into the output memory in tile order.

Pipeline from an issued index j: memory read (1) -> word register (1) -> operand register (1) -> PE
array -> ``done`` -> drain register -> (rq word register) -> requantizer (``Requantizer.latency``) ->
output memory write.

Bus (all memories sync-read, so each maps to block RAM):

    in   addr, wdata, we        write word ``wdata`` at ``addr`` (see ``EngineConfig.address``)
    out  rdata                  output memory word at the ``addr`` of the previous cycle
    in   start                  pulse while idle: run over ``row_blocks`` row blocks
    out  busy, done             busy from the cycle after start until done; done pulses once
    out  cycles                 clock cycles of the last (or current) run, start to done
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..units import Requantizer
from ..units.pipeline import delay
from .array import PEArray
from .config import CYCLE_BITS, OPERAND_STAGES, EngineConfig


def _counter(limit: int, name: str) -> Signal:
    return Signal(range(max(limit, 2)), name=name)


class GemmEngine(wiring.Component):
    def __init__(self, config: EngineConfig):
        self.config = config
        super().__init__({
            "addr": In(unsigned(config.addr_bits)),
            "wdata": In(unsigned(config.data_bits)),
            "we": In(1),
            "rdata": Out(unsigned(config.out_bits)),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(unsigned(CYCLE_BITS)),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        R, K, C, OB = c.pe_rows, c.pe_cols, c.reduction, c.out_blocks
        region = self.addr[c.region_shift:]
        index = self.addr[:c.region_shift]

        # ---- configuration registers --------------------------------------------------------------
        regs = {}
        for i, (name, width) in enumerate(c.registers()):
            regs[name] = reg = Signal(width, name=f"cfg_{name}")
            with m.If(self.we & (region == 0) & (index == i)):
                m.d.sync += reg.eq(self.wdata[:width])

        # ---- memories: bus write port, engine read port ---------------------------------------------
        mems, reads = {}, {}
        for spec in c.memories():
            mem = Memory(shape=unsigned(spec.width), depth=spec.depth, init=[])
            m.submodules[f"mem_{spec.name}"] = mems[spec.name] = mem
            if spec.name == "out":
                continue
            wr = mem.write_port()
            m.d.comb += [wr.addr.eq(index), wr.data.eq(self.wdata[:spec.width]),
                         wr.en.eq(self.we & (region == spec.region))]
            reads[spec.name] = mem.read_port()
        out_wr = mems["out"].write_port()
        out_rd = mems["out"].read_port()
        m.d.comb += [out_rd.addr.eq(index), self.rdata.eq(out_rd.data)]

        # ---- tiling controller (issue stage) --------------------------------------------------------
        running = Signal()
        j = _counter(C, "j")
        ob = _counter(OB, "ob")
        rb = _counter(c.row_blocks, "rb")
        act_base = Signal(range(c.row_blocks * C + 1))
        act_ptr = Signal(range(c.row_blocks * C + 1))
        wgt_ptr = Signal(range(OB * C + 1))
        ob_base = Signal(range(OB * K + 1))
        since_last = Signal(range(c.min_gap + 1))
        tiles = c.row_blocks * OB + 1
        tiles_issued, tiles_drained = Signal(range(tiles)), Signal(range(tiles))
        pending_ob_base = Signal.like(ob_base)

        last_j = j == C - 1
        issue = Signal()
        m.d.comb += issue.eq(running & ~(last_j & (since_last < c.min_gap - 1)))
        m.d.comb += [reads["act"].addr.eq(act_ptr), reads["wgt"].addr.eq(wgt_ptr)]
        if "grp" in reads:
            m.d.comb += reads["grp"].addr.eq(j)
        for k in range(K if c.kind != "agq" else 0):
            m.d.comb += reads[f"col{k}"].addr.eq(ob)

        with m.If(issue & last_j):
            m.d.sync += [since_last.eq(0), tiles_issued.eq(tiles_issued + 1), pending_ob_base.eq(ob_base)]
        with m.Elif(since_last < c.min_gap):
            m.d.sync += since_last.eq(since_last + 1)

        with m.If(issue):
            with m.If(~last_j):
                m.d.sync += [j.eq(j + 1), act_ptr.eq(act_ptr + 1), wgt_ptr.eq(wgt_ptr + 1)]
            with m.Else():
                m.d.sync += j.eq(0)
                with m.If(ob != OB - 1):
                    m.d.sync += [ob.eq(ob + 1), ob_base.eq(ob_base + K), wgt_ptr.eq(wgt_ptr + 1),
                                 act_ptr.eq(act_base)]
                with m.Else():
                    m.d.sync += [ob.eq(0), ob_base.eq(0), wgt_ptr.eq(0), rb.eq(rb + 1),
                                 act_base.eq(act_base + C), act_ptr.eq(act_base + C)]
                    with m.If(rb + 1 == regs["row_blocks"]):
                        m.d.sync += running.eq(0)

        # ---- operand stages: memory words -> word registers -> registered PE operands --------------
        # An ECP5 block RAM's data arrives late in the cycle (yosys does not use its output register),
        # so the words go straight into registers and the operands are formed one cycle later.
        words = {}
        for name, port in reads.items():
            if name != "rq":
                words[name] = Signal.like(port.data, name=f"{name}_word")
                m.d.sync += words[name].eq(port.data)
        m.submodules.array = array = PEArray(c)
        step = delay(m, Cat(issue, issue & (j == 0), issue & last_j), OPERAND_STAGES - 1, "step")
        m.d.sync += [array.valid.eq(step[0]), array.first.eq(step[1]), array.last.eq(step[2])]
        act_word, wgt_word = words["act"], words["wgt"]
        for r in range(R):
            m.d.sync += array.codes[r].eq(act_word[r * c.act_bits:(r + 1) * c.act_bits])
        if c.kind == "agq":
            m.d.sync += array.weights.eq(wgt_word)
            m.d.comb += array.value_zero_point.eq(regs["value_zero_point"])
        else:
            b = c.weight_bits
            for k in range(K):
                col = words[f"col{k}"]
                m.d.sync += [array.weights[k].eq(wgt_word[k * b:(k + 1) * b] - col[:b]),
                             array.bias[k].eq(col[b:].as_signed())]
            m.d.comb += [array.multipliers[g].eq(regs[f"multiplier{g}"]) for g in range(c.widths.groups)]
        if c.kind == "mac":
            m.d.comb += [array.zero_points[g].eq(regs[f"zero_point{g}"]) for g in range(c.groups)]
            if "grp" in reads:
                m.d.sync += array.group.eq(words["grp"])

        # ---- drain: one accumulator per cycle into the requantizer, then the output memory ----------
        draining = Signal()
        drain_idx = _counter(c.pes, "drain_idx")
        drain_col = _counter(K, "drain_col")
        drain_ob_base = Signal.like(ob_base)
        with m.If(array.done):
            m.d.sync += [draining.eq(1), drain_idx.eq(0), drain_col.eq(0), drain_ob_base.eq(pending_ob_base)]
        with m.Elif(draining):
            m.d.sync += [drain_idx.eq(drain_idx + 1), drain_col.eq(Mux(drain_col == K - 1, 0, drain_col + 1))]
            with m.If(drain_idx == c.pes - 1):
                m.d.sync += [draining.eq(0), tiles_drained.eq(tiles_drained + 1)]

        d1_valid = Signal()
        d1_acc = Signal.like(array.acc[0])
        m.d.sync += [d1_valid.eq(draining), d1_acc.eq(Array(array.acc[i] for i in range(c.pes))[drain_idx])]
        out_ptr = Signal(range(c.row_blocks * OB * c.pes + 1))
        if c.requant:
            rq = reads["rq"]
            m.d.comb += rq.addr.eq(drain_ob_base + drain_col)
            m.submodules.requant = requant = Requantizer(c.requant)
            sb = c.requant.shift_bits
            # Registered again so the block RAM's clock-to-output delay does not add to the
            # requantizer's hard-multiplier stage.
            d2_valid, d2_acc, d2_rq = Signal(), Signal.like(d1_acc), Signal.like(rq.data)
            m.d.sync += [d2_valid.eq(d1_valid), d2_acc.eq(d1_acc), d2_rq.eq(rq.data)]
            m.d.comb += [requant.valid.eq(d2_valid), requant.acc.eq(d2_acc),
                         requant.multiplier.eq(d2_rq[:31]), requant.shift.eq(d2_rq[31:31 + sb]),
                         requant.zero_point.eq(d2_rq[31 + sb:].as_signed())]
            out_valid, out_data, tail = requant.out_valid, requant.out, 2 + requant.latency
        else:
            out_valid, out_data, tail = d1_valid, d1_acc, 1
        m.d.comb += [out_wr.addr.eq(out_ptr), out_wr.data.eq(out_data), out_wr.en.eq(out_valid)]
        with m.If(out_valid):
            m.d.sync += out_ptr.eq(out_ptr + 1)

        # ---- run control and cycle counter ------------------------------------------------------------
        flushing = Signal()
        countdown = Signal(range(tail + 2))
        m.d.sync += self.done.eq(0)
        with m.If(self.start & ~self.busy):
            m.d.sync += [self.busy.eq(1), running.eq(1), j.eq(0), ob.eq(0), rb.eq(0), act_base.eq(0),
                         act_ptr.eq(0), wgt_ptr.eq(0), ob_base.eq(0), since_last.eq(c.min_gap),
                         tiles_issued.eq(0), tiles_drained.eq(0), out_ptr.eq(0), self.cycles.eq(0),
                         flushing.eq(0), countdown.eq(tail)]
        with m.Elif(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(~running & ~draining & ~array.done & (tiles_drained == tiles_issued)):
                m.d.sync += flushing.eq(1)
            with m.If(flushing):
                m.d.sync += countdown.eq(countdown - 1)
                with m.If(countdown == 0):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1), flushing.eq(0)]
        return m
