"""Tiling of GEMMs whose row operand is a plain matrix per batch item: linear layers (and 1x1 convs),
QK^T and A.V. Rows are tokens, queries or pixels; the reduction is channels, key dims or keys.

External memory (docs in ``regions``): the row operand of item b is [J][M_pad] codes, so the R codes a
tile row vector needs are consecutive; column operands are [n_ob][J_pad][cols] vectors, per item when
they are data (keys, values) and once when they are weights; outputs are [items][M][n_ob] row
vectors (without the tiles' padding rows; ``regions`` for the packed layout). A job covers items x column blocks x rows: all rows of several items when they fit
(attention heads and windows in one GEMM, ``n_batch``), else column chunks and row chunks of one item
(a row chunk is a multiple of lcm(R, codes per word) so its rows start on whole words).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.core.config import CoreConfig
from hw.core.isa import ColumnSlot, DescActStrides, DescOtherStrides
from hw.fsim.layout import out_words_per_row, pack_codes, pack_entries

from .emit import MAX_ROW_WORDS, Copy, Fill, Job, contiguous
from .plan import MAX_OUT_ROW, Arith, Capacity, Plan, chunks, largest, lcm, round_up, slot_blocks, too_big
from .regions import out_region, rows_region, vector_blocks, vectors_region


@dataclass(frozen=True)
class TensorView:
    """How a tensor of ``shape`` becomes the 3-d array a region holds: transpose ``axes``, reshape."""

    name: str
    shape: tuple
    axes: tuple
    logical: tuple        # (items, rows, reduction) / (items, reduction, columns) / (items, rows, columns)


@dataclass(frozen=True)
class RowsSpec:
    where: str
    arith: Arith
    rows_in: TensorView                   # [items, M, J]
    row_pad: np.ndarray                   # pad code per reduction index (after channel_order)
    row_code_bits: int
    out: TensorView                       # [items, M, N]
    out_signed: bool
    slots: list[ColumnSlot]               # one per column (N padded to blocks) or, shared, ``cols`` of them
    shared_slots: bool
    weights: np.ndarray | None = None     # static column operand [J, N] codes (reduction in channel_order)
    weight_pad: np.ndarray | None = None  # pad code per column (N padded to blocks)
    columns_in: TensorView | None = None  # runtime column operand [items, J, N]
    column_code_bits: int = 0
    channel_order: np.ndarray | None = None


def plan_rows(config: CoreConfig, spec: RowsSpec, slots: int) -> Plan:
    R, K, P = config.rows, config.cols, config.codes_per_act_word
    vw, spw = config.vectors_per_wgt_word, config.slots_per_param_word
    items, m, j = spec.rows_in.logical
    n = spec.out.logical[2]
    n_ob = -(-n // K)
    j_pad = round_up(j, vw)
    ks = round_up(K, spw)
    wpr = out_words_per_row(K, spec.arith.element_bits, config.bus_bits)
    # Rows narrower than a word share words (a packed GEMM) when a tile's rows fill whole words.
    per_word = config.rows_per_out_word(spec.arith.element_bits)
    packed = per_word > 1 and R % per_word == 0
    unit = per_word if packed else 1              # OUT addresses (row slots) per word
    per_item_wgt = spec.columns_in is not None
    cap = Capacity.of(config, slots, spec.arith)
    out_room = cap.out_words * unit

    def wgt_ok(nb, nob):
        return (nb if per_item_wgt else 1) * nob * j_pad <= cap.wgt_vectors

    def slots_ok(nob):
        return (ks if spec.shared_slots else nob * ks) <= cap.slots

    def max_nob(nr):
        return largest(n_ob, lambda v: wgt_ok(1, v) and slots_ok(v) and nr * v * wpr <= out_room
                       and (packed or v * wpr <= MAX_OUT_ROW))

    m_pad = round_up(m, R)
    item_words = -(-j * m_pad // P)
    whole_items = item_words * P <= cap.act_codes and max_nob(m_pad) >= 1
    if whole_items:
        nr = m_pad
        nob = max_nob(m_pad)
        nb = 1
        if nob == n_ob:
            nb = largest(items, lambda v: v * item_words * P <= cap.act_codes and wgt_ok(v, n_ob)
                         and v * m_pad * n_ob * wpr <= out_room)
    else:
        quantum = lcm(R, P)
        m_pad = round_up(m, quantum)
        item_words = j * m_pad // P
        nob = max_nob(quantum)
        nr = quantum * largest(m_pad // quantum, lambda v: j * v * quantum <= cap.act_codes
                               and v * quantum * nob * wpr <= out_room)
        nb = 1
        if nob < 1 or nr < 1:
            raise too_big(spec.where, f"one tile of {quantum} rows x {K} columns over a reduction of {j}", slots,
                          {"ACT": (-(-j * quantum // P), cap.act_codes // P),
                           "WGT": (j_pad // vw, cap.wgt_vectors // vw),
                           "PARAM": (-(-ks // spw), cap.slots // spw),
                           "OUT": (quantum * wpr // unit, cap.out_words)})
    act_c = nr if not whole_items else m_pad
    # Memory keeps an item's real rows (rounded up to whole packed words), not the tiles' padding rows:
    # an attention window's 49 queries leave as 49 row vectors, not 64. Several unpacked items leave in
    # one STORE of a row per item, so their rows must fit a transfer row; else they leave padded.
    m_store = round_up(m, unit)
    if not packed and nb > 1 and m_store * n_ob * wpr > MAX_ROW_WORDS:
        m_store = m_pad
    # When the OUT buffer splits the columns into chunks but every column's weights and constants fit
    # their halves at once, those stay loaded and each row chunk meets every column chunk before the
    # next is loaded: the rows are read from memory once, not once per column chunk.
    resident = not per_item_wgt and nob < n_ob and wgt_ok(1, n_ob) and slots_ok(n_ob)
    desc_for = {}

    def descriptor(nob_job: int):
        if nob_job not in desc_for:
            act = DescActStrides(b=item_words * P if whole_items else 0, rb=R, ob=0, c=act_c, i=0, d=0)
            wgt_b, col_ob = nob_job * j_pad if per_item_wgt else 0, 0 if spec.shared_slots else ks
            if packed:   # OUT [items][column blocks][rows] row slots: a block's rows fill whole words
                other = DescOtherStrides(wgt_b=wgt_b, wgt_ob=j_pad, out_b=nr * nob_job, out_ob=nr, out_rb=R, out_row=1,
                                         col_b=0, col_ob=col_ob)
            else:        # OUT [items][rows][column blocks] row vectors
                other = DescOtherStrides(wgt_b=wgt_b, wgt_ob=j_pad, out_b=nr * nob_job * wpr, out_ob=wpr,
                                         out_rb=R * nob_job * wpr, out_row=nob_job * wpr, col_b=0, col_ob=col_ob)
            desc_for[nob_job] = spec.arith.descriptor(nob_job, j, 1, 1, act, other, packed)
        return desc_for[nob_job]

    col_words = j_pad // vw
    jobs = []
    item_chunks, ob_chunks, row_chunks = chunks(items, nb), chunks(n_ob, nob), chunks(m_pad, nr)
    if per_item_wgt:
        order = [(b, o, r) for b in item_chunks for o in ob_chunks for r in row_chunks]
    elif resident:
        order = [(b, o, r) for b in item_chunks for r in row_chunks for o in ob_chunks]
    else:
        order = [(b, o, r) for o in ob_chunks for b in item_chunks for r in row_chunks]
    for (b0, nbj), (o0, nobj), (r0, nrj) in order:
        if whole_items:
            act_copies = contiguous("rows", b0 * item_words, nbj * item_words)
        else:
            act_copies = [Copy("rows", b0 * item_words + r0 // P, j, nrj // P, m_pad // P, nr // P)]
        fills = [Fill("act", ("act", b0, r0), tuple(act_copies))]
        wgt_offset = col_offset = 0
        if per_item_wgt:
            fills.append(Fill("wgt", ("wgt", b0, o0), tuple(contiguous("columns", (b0 * n_ob + o0) * col_words,
                                                                         nbj * nobj * col_words))))
        elif resident:
            fills.append(Fill("wgt", ("wgt",), tuple(contiguous("weights", 0, n_ob * col_words))))
            wgt_offset = o0 * j_pad
        else:
            fills.append(Fill("wgt", ("wgt", o0), tuple(contiguous("weights", o0 * col_words, nobj * col_words))))
        if spec.shared_slots:
            fills.append(Fill("slots", ("slots",), tuple(contiguous("slots", 0, ks // spw))))
        elif resident:
            fills.append(Fill("slots", ("slots",), tuple(contiguous("slots", 0, n_ob * ks // spw))))
            col_offset = o0 * ks
        else:
            fills.append(Fill("slots", ("slots", o0), tuple(contiguous("slots", o0 * ks // spw, nobj * ks // spw))))
        kept = min(nrj, m_store - r0)          # rows of the chunk that memory keeps
        if packed:   # one run of words per item and column block (items only when every block is in the job)
            store = Copy("out", ((b0 * n_ob + o0) * m_store + r0) // unit, nbj * nobj, kept // unit,
                         m_store // unit, nr // unit)
        elif nbj > 1 and m_store < m_pad:   # whole items with every column block: one row of words per item
            store = Copy("out", b0 * m_store * n_ob * wpr, nbj, m_store * n_ob * wpr, m_store * n_ob * wpr,
                         m_pad * n_ob * wpr)
        else:        # (several items only when memory keeps their padding rows too: all rows are consecutive)
            store = Copy("out", ((b0 * m_store + r0) * n_ob + o0) * wpr, nbj * kept, nobj * wpr, n_ob * wpr,
                         nobj * wpr)
        jobs.append(Job(tuple(fills), descriptor(nobj), 0, wgt_offset, col_offset, nbj, nrj // R, (store,)))

    static = {"slots": pack_entries(slot_blocks(spec.slots, ks, K, spec.shared_slots), config.bus_bits)}
    if not per_item_wgt:
        blocks = vector_blocks(spec.weights[None], K, j_pad, spec.weight_pad)[0]
        static["weights"] = pack_codes(blocks, config.weight_bits, config.bus_bits)
    rv = spec.rows_in
    inputs = {"rows": rows_region(rv.name, rv.shape, rv.axes, rv.logical, m_pad, item_words, config.act_bits,
                                  spec.row_code_bits, spec.row_pad, spec.channel_order)}
    if per_item_wgt:
        cv = spec.columns_in
        inputs["columns"] = vectors_region(cv.name, cv.shape, cv.axes, cv.logical, K, j_pad, config.weight_bits,
                                           spec.column_code_bits, spec.weight_pad, items * n_ob * col_words)
    ov = spec.out
    outputs = {"out": out_region(ov.name, ov.shape, ov.axes, ov.logical, m_store, n_ob, K, spec.arith.element_bits,
                                 spec.out_signed, wpr, unit)}
    return Plan(jobs, slots, static, inputs, outputs, macs=items * m * j * n)
