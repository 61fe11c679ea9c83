"""Row and column decode: codes -> PE operands, shared by a whole row or column of the array.

The PE forms two terms from its column operand w and its row operand (docs/core.md "row_terms"):

    mul = w * xm          xm in two's complement, as radix-4 digits: xm = sum_i d_i 4^i - neg 2^A
                          (A = act_bits), each d_i w picked from the column's {0, w, 2w, 3w}
    sh  = w << s          s = 4 coarse + fine: fine from the column's {w, 2w, 4w, 8w}
    X += x_sh ? sh : mul
    Y += y_en ? sh : 0

so a row is decoded into (digits, neg, fine, coarse, x_sh, y_en):

MAC   xm = c - z
HLUQ  X holds the uniform sum and Y the log sum (the lanes swap m_x and m_y for HLUQ, so the
      combine is docs/core.md's): c = 0 nothing; 1 <= c <= L: Y += w << (c - 1);
      c > L: Y += w << (L - 1), xm = c - L
AGQ   e = c >> tau_log2, r = c mod tau: c = zero_code or e > Q: nothing; else s = Q - e, to X when
      tau = 1 or r = 2 * residue_pass, to Y when r = 2 * residue_pass + 1

Without uses_y (the lanes read X only; cores without Y accumulators) a segment's ``y_terms`` picks which
of docs/core.md's two sums goes to X: HLUQ 0 the log sum (w << ..., as x_sh), 1 the uniform sum (xm);
AGQ 0 the even residue of the pass, 1 the odd one (none when tau = 1). Y then gets nothing.

The hardware holds zero points as codes (z < 2^act_bits for rows, < 2^weight_bits for columns) and
needs L >= 1 and L - 1, Q <= max_shift; the compiler never emits anything else.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Module, Mux, Signal, Value, signed
from amaranth.lib import data

from .isa import Mode


def digits(act_bits: int) -> int:
    """Radix-4 digits of a row operand (its sign bit apart)."""
    return -(-act_bits // 2)


def coarse_bits(max_shift: int) -> int:
    return max((max_shift >> 2).bit_length(), 1)


def row_operand_layout(act_bits: int, max_shift: int) -> data.StructLayout:
    return data.StructLayout({"digits": 2 * digits(act_bits), "neg": 1, "fine": 2, "coarse": coarse_bits(max_shift),
                              "x_sh": 1, "y_en": 1})


def decode_row(m: Module, out, code: Value, desc, seg_zero_point: Value, residue_pass: Value, y_terms: Value,
               act_bits: int, shift_modes: bool) -> None:
    """Registers ``out`` (a row_operand_layout view) from ``code``; ``desc`` is the DescLoops view."""
    c = code.as_unsigned()
    xm = Signal(signed(act_bits + 1))
    shift = Signal(len(out.coarse) + 2)
    x_sh, y_en = Signal(), Signal()
    m.d.comb += [xm.eq(0), shift.eq(0), x_sh.eq(0), y_en.eq(0)]
    with m.Switch(desc.mode):
        with m.Case(Mode.MAC):
            m.d.comb += xm.eq(c - seg_zero_point[:act_bits])
        if shift_modes:
            with m.Case(Mode.HLUQ):
                levels = desc.log_levels
                uniform = c > levels
                log = c != 0
                m.d.comb += [xm.eq(Mux(uniform & (desc.uses_y | y_terms), c - levels, 0)),
                             shift.eq(Mux(uniform, levels - 1, c - 1)),
                             x_sh.eq(log & ~desc.uses_y & ~y_terms), y_en.eq(log & desc.uses_y)]
            with m.Case(Mode.AGQ):
                exponent = c >> desc.tau_log2
                residue = c & Mux(desc.tau_log2 == 0, 0, Mux(desc.tau_log2 == 1, 1, 3))
                keep = (c != desc.zero_code) & (exponent <= desc.max_shift)
                paired = (residue >> 1) == residue_pass
                to_x = Mux(desc.tau_log2 == 0, ~y_terms, paired & (residue[0] == y_terms))
                m.d.comb += [shift.eq(desc.max_shift - exponent), x_sh.eq(keep & to_x),
                             y_en.eq(keep & (desc.tau_log2 != 0) & paired & residue[0] & ~y_terms)]
    assert len(out.digits) == act_bits    # 4 or 8: whole digits below the sign bit
    m.d.sync += [out.digits.eq(xm[:act_bits]), out.neg.eq(xm[act_bits]),
                 out.fine.eq(shift[:2]), out.coarse.eq(shift[2:]), out.x_sh.eq(x_sh), out.y_en.eq(y_en)]


def decode_column(m: Module, w: Signal, w3: Signal, code: Value, zero_point: Value, weight_bits: int,
                  valid: Value) -> None:
    """Registers the signed column operand w = code - zero_point and 3 w; both 0 for no term, so a
    bubble or a null term adds nothing anywhere in the column."""
    value = code.as_unsigned() - zero_point[:weight_bits]
    m.d.sync += [w.eq(Mux(valid, value, 0)), w3.eq(Mux(valid, value + (value << 1), 0))]


@dataclass
class ColumnOperand:
    w: Signal
    w3: Signal


def column_operand_signals(name: str, weight_bits: int) -> ColumnOperand:
    return ColumnOperand(Signal(signed(weight_bits + 1), name=f"{name}_w"),
                         Signal(signed(weight_bits + 3), name=f"{name}_w3"))
