"""The core's instruction set and the binary layout of everything it reads: instructions, GEMM
descriptors, reduction segments and per-column constant slots. docs/core.md describes the semantics;
this module is the one place the bit positions are written.

Three units run three instruction streams (``LOAD``, ``COMPUTE``, ``STORE``), one 128-bit instruction
each, and synchronize through four token counters (VTA's scheme): a unit may wait for a token from the
stage before or after it before an instruction starts, and send one when it ends.

    flag            LOAD                   COMPUTE                STORE
    wait_prev       -                      a loaded slot (L->C)   a computed slot (C->S)
    wait_next       a freed slot (C->L)    a stored slot (S->C)   -
    signal_prev     -                      free a slot (C->L)     free a slot (S->C)
    signal_next     a loaded slot (L->C)   a computed slot (C->S) -

Every record here encodes to a little-endian integer: field ``f`` occupies bits ``[lo, lo + width)``;
signed fields are two's complement. ``encode``/``decode`` round-trip exactly and refuse a value that
does not fit its field, naming the record and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import ClassVar

import numpy as np

from .config import BIAS_ADDR_BITS, OUT_BASE_BITS, PROG_WORD_BITS, SLOT_BITS


class Opcode(IntEnum):
    END = 0     # the unit stops; the core is done when all three units have stopped
    LOAD = 1    # external memory -> ACT / WGT / PARAM buffer (LOAD unit)
    STORE = 2   # OUT buffer -> external memory (STORE unit)
    GEMM = 3    # one tiled GEMM over resident buffers (COMPUTE unit)
    SYNC = 4    # only the token flags: wait and/or signal (any unit)
    SOFTMAX = 5  # the softmax path's tile -> AGQ codes in OUT (COMPUTE unit, cores with ``softmax_lanes``)


class Buffer(IntEnum):
    ACT = 0
    WGT = 1
    PARAM = 2
    OUT = 3


class Mode(IntEnum):
    """How a row operand (code c) becomes PE terms; see ``decode_row`` in hw/fsim."""

    MAC = 0    # term = w * (c - z_seg)
    HLUQ = 1   # c in 1..L: X += w << (c - 1); c > L: X += w << (L - 1), Y += w * (c - L)
    AGQ = 2    # c -> (w << (Q - c div tau)) into X (c mod tau even) or Y (odd); zero code and c div tau > Q: 0


class IsaError(ValueError):
    """A value that does not fit its field, or a word that is not a valid record."""


@dataclass(frozen=True)
class Field:
    name: str
    lo: int
    width: int
    signed: bool = False

    def check(self, record: str, value: int) -> None:
        lo, hi = ((-(1 << (self.width - 1)), (1 << (self.width - 1)) - 1) if self.signed
                  else (0, (1 << self.width) - 1))
        if not lo <= value <= hi:
            raise IsaError(f"{record}.{self.name} = {value} does not fit {self.width} "
                           f"{'signed' if self.signed else 'unsigned'} bits")


def _layout(*spec) -> tuple[Field, ...]:
    """Fields packed from bit 0 upwards: (name, width[, signed])."""
    out, lo = [], 0
    for item in spec:
        name, width, *rest = item
        out.append(Field(name, lo, width, bool(rest and rest[0])))
        lo += width
    return tuple(out)


class Packed:
    """A frozen dataclass whose fields are the integer fields of ``LAYOUT`` (in declaration order)."""

    LAYOUT: ClassVar[tuple[Field, ...]]
    BITS: ClassVar[int]

    def encode(self) -> int:
        word = 0
        for f in self.LAYOUT:
            value = int(getattr(self, f.name))
            f.check(type(self).__name__, value)
            word |= (value & ((1 << f.width) - 1)) << f.lo
        return word

    @classmethod
    def decode(cls, word: int):
        values = {}
        for f in cls.LAYOUT:
            raw = (word >> f.lo) & ((1 << f.width) - 1)
            values[f.name] = raw - (1 << f.width) if f.signed and raw >> (f.width - 1) else raw
        return cls(**values)

    def __post_init__(self):
        names = [f.name for f in fields(self)]
        assert names == [f.name for f in self.LAYOUT], (type(self).__name__, names)
        assert self.LAYOUT[-1].lo + self.LAYOUT[-1].width <= self.BITS


# ---- instructions (128 bits) ---------------------------------------------------------------------

_HEADER = (("opcode", 4), ("wait_prev", 1), ("wait_next", 1), ("signal_prev", 1), ("signal_next", 1))


@dataclass(frozen=True)
class Instruction(Packed):
    """Opcode and token flags only: END and SYNC, and the header every instruction starts with."""

    LAYOUT: ClassVar = _layout(*_HEADER)
    BITS: ClassVar = PROG_WORD_BITS
    opcode: int
    wait_prev: int = 0
    wait_next: int = 0
    signal_prev: int = 0
    signal_next: int = 0


@dataclass(frozen=True)
class Transfer(Packed):
    """LOAD (external memory -> buffer) or STORE (OUT -> external memory): ``rows`` rows of
    ``row_words`` consecutive words; row r starts at ``ext_addr + r * ext_stride`` in external memory
    and at ``buf_addr + r * buf_stride`` in the buffer. Addresses count words of ``bus_bits``."""

    LAYOUT: ClassVar = _layout(*_HEADER, ("buffer", 2), ("buf_addr", 16), ("ext_addr", 28), ("rows", 16),
                               ("row_words", 12), ("ext_stride", 28), ("buf_stride", 16))
    BITS: ClassVar = PROG_WORD_BITS
    opcode: int
    wait_prev: int
    wait_next: int
    signal_prev: int
    signal_next: int
    buffer: int
    buf_addr: int
    ext_addr: int
    rows: int
    row_words: int
    ext_stride: int
    buf_stride: int


@dataclass(frozen=True)
class Gemm(Packed):
    """One GEMM over resident buffers (loops, strides and modes in the descriptor at ``desc_addr``):
    ``n_batch`` x descriptor.n_ob x ``n_rb`` tiles of rows x cols outputs. ``act_base`` counts codes,
    ``wgt_base`` column vectors, ``out_base`` OUT words and ``col_base`` constant slots."""

    LAYOUT: ClassVar = _layout(*_HEADER, ("desc_addr", 12), ("act_base", 24), ("wgt_base", 18), ("out_base", 16),
                               ("col_base", 14), ("n_batch", 16), ("n_rb", 16))
    BITS: ClassVar = PROG_WORD_BITS
    opcode: int
    wait_prev: int
    wait_next: int
    signal_prev: int
    signal_next: int
    desc_addr: int
    act_base: int
    wgt_base: int
    out_base: int
    col_base: int
    n_batch: int
    n_rb: int


def relative_row_slots(relative_side: int, lanes: int, bias_side: int) -> int:
    """Key slots in a key row of a SOFTMAX with relative terms (``Softmax``): P ``bias_side``, or the path's
    own grid side for 0."""
    return bias_side * lanes if bias_side else relative_side


@dataclass(frozen=True)
class Softmax(Packed):
    """The tile the QK^T before it sent to the softmax path (``DescLoops.to_store``) into AGQ codes: rows
    0 .. ``n_rows`` - 1 of ``keys`` keys each, ``sw.ref.log_softmax`` with this layer's constants, each row's
    codes written to OUT at ``act_bits`` per code from a new word (``softmax_row_words``), from word
    ``out_base`` on. Taken once the lanes have written the tile; signals like a GEMM (``signal_prev`` and
    ``signal_next`` once its last OUT word is written).

    ``bias_side`` s > 0 (cores with ``softmax_bias_side``): the logits take a grid bias. Queries and keys lie
    on an s x s grid (keys = s^2, key j at (j div s, j mod s)); tile row 0 is the query at (``query_row``,
    ``query_col``), each further row the next query in row-major order; the logit of query (y, x) and key
    (y', x') gains T[|y - y'|][|x - x'|] from the path's copy of the table. ``bias_load``: first copy T into
    the path from PARAM, entry e = dy s + dx in the low ``BIAS_BITS`` (signed) of constant slot e counted
    from word ``bias_addr``; without it the table the last loading SOFTMAX copied is used.

    ``bias_load`` on a core with ``softmax_relative_side`` S (query_row 0): the logits take SAM ViT's
    relative-position terms. The keys lie in rows of s key slots, s = P ``bias_side`` (P = softmax_lanes;
    ``bias_side`` 0: s = S, the S x S grid), key slot j at (j div s, j mod s); the last ``query_col`` slots of
    each row are padding (a g x g grid, g < S, in rows of s = g rounded up to P slots: query_col = s - g),
    in neither the row's maximum nor its sum, their codes 0. First the tile's n_rows x s term pairs are copied
    into the path from PARAM, pair e = r s + i (row r, key row and column i) in bits [32 (e mod q),
    32 (e mod q) + 32) of word ``bias_addr`` + e div q (q pairs a word: ``hw.fsim.layout.pack_relative_terms``),
    its height term H_r[i] in the low 16 bits (signed) and its width term W_r[i] in the high 16; the logit of
    row r and key slot (y, x) gains H_r[y] + W_r[x]. Without ``bias_load``, bias_side and query_col are 0."""

    LAYOUT: ClassVar = _layout(*_HEADER, ("out_base", OUT_BASE_BITS), ("n_rows", 7), ("keys", 13), ("multiplier", 31),
                               ("shift", 6), ("tau_log2", 2), ("zero_code", 8), ("offset", 16, True), ("bias_side", 4),
                               ("bias_load", 1), ("query_row", 4), ("query_col", 4), ("bias_addr", BIAS_ADDR_BITS))
    BITS: ClassVar = PROG_WORD_BITS
    opcode: int
    wait_prev: int
    wait_next: int
    signal_prev: int
    signal_next: int
    out_base: int
    n_rows: int
    keys: int
    multiplier: int
    shift: int
    tau_log2: int
    zero_code: int
    offset: int
    bias_side: int = 0
    bias_load: int = 0
    query_row: int = 0
    query_col: int = 0
    bias_addr: int = 0


def softmax_row_words(keys: int, code_bits: int, bus_bits: int) -> int:
    """OUT words one row of ``keys`` codes takes (each row starts a word)."""
    return -(-keys * code_bits // bus_bits)


def decode_instruction(word: int) -> Instruction | Transfer | Gemm | Softmax:
    opcode = word & 0xF
    try:
        op = Opcode(opcode)
    except ValueError:
        raise IsaError(f"unknown opcode {opcode}") from None
    if op in (Opcode.LOAD, Opcode.STORE):
        return Transfer.decode(word)
    if op is Opcode.GEMM:
        return Gemm.decode(word)
    if op is Opcode.SOFTMAX:
        return Softmax.decode(word)
    return Instruction.decode(word)


# ---- GEMM descriptor (in the PARAM buffer) ---------------------------------------------------------
# Three fixed 256-bit words, then one 128-bit entry per segment. Word addresses below are relative to
# desc_addr; a bus wider than 256 bits holds the same bits in the low 256 of each word.

DESC_WORD_BITS = 256


@dataclass(frozen=True)
class DescLoops(Packed):
    """Word 0: modes, output format and the loop counts shared by every GEMM of a layer."""

    LAYOUT: ClassVar = _layout(("mode", 2), ("raw", 1), ("out_width", 2), ("tau_log2", 2), ("max_shift", 6),
                               ("zero_code", 8), ("log_levels", 8), ("n_seg", 4), ("uses_y", 1),
                               ("q_min", 33, True), ("q_max", 33, True), ("n_ob", 16), ("n_c", 16), ("n_i", 8),
                               ("n_d", 8), ("packed", 1), ("lookup_steps", 6), ("lookup_base", 9, True),
                               ("to_store", 1))
    BITS: ClassVar = DESC_WORD_BITS
    mode: int          # Mode
    raw: int           # 1: outputs are the X accumulators of the single segment (QK^T), no combine/requant
    out_width: int     # output elements of 4 << out_width bits: 4, 8, 16 or 32 (``element_bits``)
    tau_log2: int      # AGQ: tau = 1, 2, 4
    max_shift: int     # AGQ: Q
    zero_code: int     # AGQ: the code of an exact zero (2^k - 1)
    log_levels: int    # HLUQ: L
    n_seg: int         # segments (1..max_segments)
    uses_y: int        # 1: the lanes combine Y too (HLUQ, AGQ with tau >= 2)
    q_min: int         # output clamp (ignored when raw)
    q_max: int
    n_ob: int          # output column blocks per batch item
    n_c: int           # reduction index j = (c * n_i + i) * n_d + d
    n_i: int
    n_d: int
    packed: int = 0    # 1: rows narrower than a word share OUT words (``CoreConfig.rows_per_out_word``),
                       # and OUT addresses count row slots of the GEMM's width, not words
    lookup_steps: int = 0   # n > 0 (cores with ``CoreConfig.lookup_steps``): each clamped output v becomes
    lookup_base: int = 0    # lookup_base + sum of the first n ``LookupStep``s' +-1 where v >= threshold
    to_store: int = 0       # raw 16-bit GEMMs on cores with ``softmax_lanes``: tile row r of OUT address a goes
                            # to the softmax path's store as row a mod R of key block a div R, not to OUT


OUT_WIDTHS = {4: 0, 8: 1, 16: 2, 32: 3}   # element bits -> DescLoops.out_width


def element_bits(out_width: int) -> int:
    return 4 << out_width


@dataclass(frozen=True)
class DescActStrides(Packed):
    """Word 1: ACT code address = act_base + b*b + rb*rb + ob*ob + c*c + i*i + d*d (+ r for row r)."""

    LAYOUT: ClassVar = _layout(("b", 24, True), ("rb", 24, True), ("ob", 24, True), ("c", 24, True),
                               ("i", 24, True), ("d", 24, True))
    BITS: ClassVar = DESC_WORD_BITS
    b: int
    rb: int
    ob: int
    c: int
    i: int
    d: int


@dataclass(frozen=True)
class DescOtherStrides(Packed):
    """Word 2: WGT vector address = wgt_base + b*wgt_b + ob*wgt_ob + j; OUT address of tile row r =
    out_base + b*out_b + ob*out_ob + rb*out_rb + r*out_row (a word, or a row slot when the GEMM is
    packed: slot s is part s mod P of word s div P); constant slot of column k =
    col_base + b*col_b + ob*col_ob + k."""

    LAYOUT: ClassVar = _layout(("wgt_b", 24, True), ("wgt_ob", 24, True), ("out_b", 24, True), ("out_ob", 24, True),
                               ("out_rb", 24, True), ("out_row", 8), ("col_b", 16, True), ("col_ob", 16, True))
    BITS: ClassVar = DESC_WORD_BITS
    wgt_b: int
    wgt_ob: int
    out_b: int
    out_ob: int
    out_rb: int
    out_row: int
    col_b: int
    col_ob: int


@dataclass(frozen=True)
class Segment(Packed):
    """A run of reduction indices [j_start, j_start + j_len) accumulated before the lanes combine
    X * m_x (+ Y * m_y): a CAG group (its zero point), the one range of other layers, or one AGQ
    residue pass (tau = 4: pass 0 takes residues 0 and 1, pass 1 residues 2 and 3).

    ``y_terms`` (only where the descriptor's uses_y is 0, in HLUQ and AGQ): the segment adds to X the
    terms that would go to Y (HLUQ's uniform part, AGQ's odd residue of its pass), so a core whose PEs
    have no Y accumulator runs such a layer as two segments over the same range, X then "Y"."""

    LAYOUT: ClassVar = _layout(("j_start", 16), ("j_len", 16), ("zero_point", 8), ("residue_pass", 1),
                               ("m_x", 32), ("m_y", 32), ("y_terms", 1))
    BITS: ClassVar = SLOT_BITS
    j_start: int
    j_len: int
    zero_point: int
    residue_pass: int
    m_x: int
    m_y: int
    y_terms: int = 0


@dataclass(frozen=True)
class LookupStep(Packed):
    """One step of an output lookup, after the segments: a requantized output at or above ``threshold``
    is one code higher (``down``: lower). A per-tensor code -> code function of the clamped outputs, such
    as the host code -> next layer's input code through an elementwise GELU or ReLU, is a sum of such
    steps; ``LOOKUP_STEPS_PER_WORD`` in the low 256 bits of each PARAM word. Thresholds are 16-bit (the
    host codes' width), so a lookup GEMM's clamp bounds lie in 16 signed bits."""

    LAYOUT: ClassVar = _layout(("threshold", 16, True), ("down", 1))
    BITS: ClassVar = 32
    threshold: int
    down: int = 0


DESC_FIXED_WORDS = 3
LOOKUP_STEPS_PER_WORD = DESC_WORD_BITS // LookupStep.BITS
LOOKUP_VALUE_BITS = next(f.width for f in LookupStep.LAYOUT if f.name == "threshold")


def desc_words(n_seg: int, bus_bits: int, lookup_steps: int = 0) -> int:
    """PARAM words a descriptor with ``n_seg`` segments and ``lookup_steps`` lookup steps occupies."""
    per_word = bus_bits // SLOT_BITS
    return DESC_FIXED_WORDS + -(-n_seg // per_word) + lookup_words(lookup_steps)


def lookup_words(lookup_steps: int) -> int:
    """Descriptor words that ``lookup_steps`` lookup steps take."""
    return -(-lookup_steps // LOOKUP_STEPS_PER_WORD)


def lookup(values, base: int, steps) -> "np.ndarray":
    """``base`` plus each step's +-1 where ``values`` reach its threshold (the RTL's tail and the
    functional model both compute this)."""
    values = np.asarray(values, np.int64)
    out = np.full(values.shape, base, np.int64)
    for step in steps:
        out += np.where(values >= step.threshold, -1 if step.down else 1, 0)
    return out


# ---- per-column constants (one 128-bit slot per output column, in the PARAM buffer) ---------------

@dataclass(frozen=True)
class ColumnSlot(Packed):
    """Column operand zero point, bias in accumulator steps, and the output requantization."""

    LAYOUT: ClassVar = _layout(("zero_point", 8), ("bias", 48, True), ("multiplier", 31), ("shift", 7),
                               ("out_zero_point", 24, True))
    BITS: ClassVar = SLOT_BITS
    zero_point: int
    bias: int
    multiplier: int
    shift: int
    out_zero_point: int


# ---- words <-> bytes ------------------------------------------------------------------------------

def to_bytes(value: int, bits: int) -> np.ndarray:
    return np.frombuffer(int(value).to_bytes(bits // 8, "little"), np.uint8).copy()


def from_bytes(data: np.ndarray) -> int:
    return int.from_bytes(np.asarray(data, np.uint8).tobytes(), "little")
