"""The R x K array of processing elements, skewed: row r works one cycle behind row r - 1.

Per PE (decode.py has the operand encoding):

    mul = sum_i pick(d_i) << 2i - (neg ? w << A : 0)     pick(d) in {0, w, 2w, 3w} from the column
    sh  = pick_fine(fine) << 4 coarse                    pick_fine in {w, 2w, 4w, 8w}
    X += x_sh ? sh : mul          Y += y_en ? sh : 0

all in LUT logic with no hard multiplier: the column supplies w and 3 w, everything else is wiring.
A core without Y accumulators (``CoreConfig.y_accumulators``) leaves out Y, its term register, its out
register and its OR-tree: the compiler gives Y's terms a segment of their own, in X.
Two stages: the terms are registered (Y's gating is the register's synchronous reset), then
accumulated. On a segment's last term the sums go to the out registers and X, Y restart from zero;
both are synchronous resets too, so they cost no logic. An out register is zero except in the one
cycle after its row finished a segment. With ``x_out_register`` "column" a PE has no X out register:
it gates its sum itself, and the column registers its OR-tree of X, the same value in the same cycle
with R - 1 registers fewer a column. Y's term register is as wide as ``y_max_shift`` asks.

Skew: the column operands flow down the column through one register per PE, and row r's operands and
its "last" flag arrive r cycles after row 0's. So row r finishes a segment one cycle after row r - 1,
and the R out registers of a column can share one OR-tree to the lane (``col_x``, ``col_y``): the
column delivers its R sums one per cycle, in row order, with ``col_valid`` and ``col_row``. Two
segments' sums never meet on the tree because a segment's last term is issued at least R cycles after
the previous one's (the issue loop's rule).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..units.pipeline import delay
from .config import CoreConfig
from .decode import coarse_bits, row_operand_layout
from .params import CoreParams


def shift_term_bits(config: CoreConfig, shift: int | None = None) -> int:
    """Signed width of w << s for s up to ``shift`` (default the core's max_shift)."""
    return config.weight_bits + 1 + (config.max_shift if shift is None else shift)


class ProcessingElement(wiring.Component):
    def __init__(self, config: CoreConfig, shift_modes: bool):
        self.config, self.shift_modes = config, shift_modes
        self.y_sum = shift_modes and config.y_accumulators
        a, w, acc = config.act_bits, config.weight_bits, config.pe_acc_bits
        super().__init__({
            "op": In(row_operand_layout(a, config.max_shift)),
            "w": In(signed(w + 1)), "w3": In(signed(w + 3)),
            "last": In(1),                       # the segment's last term, in the accumulate stage
            "w_down": Out(signed(w + 1)), "w3_down": Out(signed(w + 3)),
            "out_x": Out(signed(acc)), "out_y": Out(signed(acc)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, op = self.config, self.op
        w, w3 = self.w, self.w3
        m.d.sync += [self.w_down.eq(w), self.w3_down.eq(w3)]

        def pick(d):
            return Mux(d[1], Mux(d[0], w3, w << 1), Mux(d[0], w, 0))

        # The sign's -2^A w joins the top digit as one narrow subtraction (4 w << 2 top = w << A): added on
        # its own it synthesized as a negation and a full-width add, 28 more LUT4 in a 176-LUT4 PE.
        top = cfg.act_bits // 2 - 1
        mul = (pick(op.digits[2 * top:2 * top + 2]) - Mux(op.neg, w << 2, 0)) << (2 * top)
        for i in range(top):
            mul = mul + (pick(op.digits[2 * i:2 * i + 2]) << (2 * i))
        width = max(shift_term_bits(cfg) if self.shift_modes else 0, len(mul))
        # Y takes shift terms only, of at most y_shift_limit (the compiler's promise)
        in_x, in_y = Signal(signed(width)), Signal(signed(shift_term_bits(cfg, cfg.y_shift_limit)))
        if self.shift_modes:
            fine = Mux(op.fine[1], Mux(op.fine[0], w << 3, w << 2), Mux(op.fine[0], w << 1, w))
            sh = fine
            for level in range(coarse_bits(cfg.max_shift)):   # shift by 4 coarse, one select bit per level
                sh = Mux(op.coarse[level], sh << (4 << level), sh)
            sh = sh[:shift_term_bits(cfg)].as_signed()
            m.d.sync += in_x.eq(Mux(op.x_sh, sh, mul))
            if self.y_sum:
                m.d.sync += in_y.eq(Mux(op.y_en, sh, 0))
        else:
            m.d.sync += in_x.eq(mul)

        x, y = Signal(signed(cfg.pe_acc_bits)), Signal(signed(cfg.pe_acc_bits))
        for acc, term, out in ((x, in_x, self.out_x), (y, in_y, self.out_y)):
            if acc is y and not self.y_sum:
                m.d.comb += out.eq(0)
                continue
            total = (acc + term)[:cfg.pe_acc_bits].as_signed()
            m.d.sync += acc.eq(Mux(self.last, 0, total))
            # x_out_register "column": the array registers the column's gated tree instead
            domain = m.d.comb if out is self.out_x and cfg.x_out_register == "column" else m.d.sync
            domain += out.eq(Mux(self.last, total, 0))
        return m


class PEArray(wiring.Component):
    """R x K PEs. Inputs are row 0's (t + 3 for a term issued at t); the array skews them. Outputs:
    each column's OR-tree and the row it carries (row r of a segment whose last term issued at t
    appears in cycle t + 5 + r)."""

    def __init__(self, config: CoreConfig):
        self.config, self.params = config, CoreParams(config)
        r, k, w, acc = config.rows, config.cols, config.weight_bits, signed(config.pe_acc_bits)
        super().__init__({
            "op": In(row_operand_layout(config.act_bits, config.max_shift)).array(r),
            "w": In(signed(w + 1)).array(k), "w3": In(signed(w + 3)).array(k), "last": In(1),
            "col_x": Out(acc).array(k), "col_y": Out(acc).array(k),
            "col_valid": Out(1), "col_row": Out(range(max(r, 2))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        rows, cols = cfg.rows, cfg.cols
        # row r's "last" reaches its accumulate stage r + 1 cycles after row 0's operands
        lasts = [delay(m, self.last, 1 + r, f"last_row{r}") for r in range(rows)]
        pes = [[ProcessingElement(cfg, self.params.has_shift_modes) for _ in range(cols)] for _ in range(rows)]
        for r in range(rows):
            op = delay(m, self.op[r].as_value(), r, f"op_row{r}")
            for k in range(cols):
                pe = pes[r][k]
                m.submodules[f"pe_{r}_{k}"] = pe
                above = (self.w[k], self.w3[k]) if r == 0 else (pes[r - 1][k].w_down, pes[r - 1][k].w3_down)
                m.d.comb += [pe.op.eq(op), pe.w.eq(above[0]), pe.w3.eq(above[1]), pe.last.eq(lasts[r])]
        x_domain = m.d.sync if cfg.x_out_register == "column" else m.d.comb
        for k in range(cols):
            tree_x, tree_y = 0, 0
            for r in range(rows):
                tree_x, tree_y = tree_x | pes[r][k].out_x, tree_y | pes[r][k].out_y
            x_domain += self.col_x[k].eq(tree_x)
            m.d.comb += self.col_y[k].eq(tree_y)
        # the out registers of row r hold a sum in the cycle after its last flag
        landed = [delay(m, flag, 1, f"landed_row{r}") for r, flag in enumerate(lasts)]
        m.d.comb += self.col_valid.eq(Cat(*landed).any())
        for r in range(rows):
            with m.If(landed[r]):
                m.d.comb += self.col_row.eq(r)
        return m
