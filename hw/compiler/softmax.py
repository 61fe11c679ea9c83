"""QK^T and the softmax on chip (cores with ``softmax_lanes``): an attention's query and key codes in,
its post-softmax AGQ codes out, the scores never leaving the core (invocation op ``probs``).

Per batch item (head, window) and block of R queries, the keys' column blocks are computed by one or more
raw GEMMs whose rows go to the softmax path's store (``DescLoops.to_store``: OUT row address = key block
x R + tile row), then a SOFTMAX turns the tile into codes in OUT and one STORE moves them out. The codes
are ``sw.ref.log_softmax``'s for this layer (``LogSoftmax.of``). TinyViT's attention biases go with it on
cores with ``softmax_bias_side``: each is a grid bias (``grid_table``), whose head's table follows the column
slots in the slot area, for the first SOFTMAX of the head to copy into the path; items then go head by
head. SAM ViT's relative positions go with it on cores with ``softmax_relative_side`` of the attention's
grid: the host computes each query's height and width terms from its codes (a ``relative`` region), and
each block of R queries loads its terms after the column slots, for its SOFTMAX to copy into the path.

External memory: queries as the ``rows`` region of QK^T (``rows.py``), keys as its ``columns`` region,
codes as [items][Nq] rows of ``softmax_row_words`` words (an ``out_rows`` region of one-word blocks).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from hw.core.config import BIAS_BITS, RELATIVE_TERM_BITS, SOFTMAX_SCORE_BITS, CoreConfig
from hw.core.isa import ColumnSlot, DescActStrides, DescOtherStrides, Mode, Segment, Softmax, softmax_row_words
from hw.core.layouts import field_width
from hw.fsim.layout import bias_table_words, pack_bias_tables, pack_entries, relative_terms_words
from sw.bundle import AgqCodes, AttentionLayer
from sw.ref.log_softmax import LogSoftmax, grid_table

from .emit import Copy, Fill, Job, contiguous
from .errors import CompileError
from .lower import _items, _swap_last, _uniform_max
from .plan import Arith, Capacity, Plan, chunks, largest, lcm, round_up, slot_blocks, too_big
from .regions import out_region, relative_region, rows_region, vectors_region


def probs_refusal(config: CoreConfig, layer: AttentionLayer, q_shape: tuple, k_shape: tuple) -> str | None:
    """Why this attention's QK^T and softmax cannot run on ``config``'s softmax path (None: they can)."""
    return _path_fit(config, layer, q_shape, k_shape)[2]


def _path_fit(config: CoreConfig, layer: AttentionLayer, q_shape: tuple, k_shape: tuple
              ) -> tuple[LogSoftmax | None, np.ndarray | None, str | None]:
    """The layer's integer softmax, its grid-bias table (None: no bias) and why the path cannot take it
    (None: it can), each computed once for the refusal and the plan."""
    sm = layer.softmax
    if not config.softmax_lanes:
        return None, None, "the core has no softmax path (softmax_lanes 0)"
    if not isinstance(sm, AgqCodes):
        return None, None, f"its post-softmax codes are {sm.TAG}, the softmax path writes AGQ codes"
    if layer.rel_pos_h is not None and not config.softmax_relative_side:
        return None, None, "its logits take relative-position terms, and the path adds none (softmax_relative_side 0)"
    unit = LogSoftmax.of(layer)
    table = None
    if unit.relative is not None:
        reason = _relative_refusal(config, layer, unit, q_shape, k_shape)
        if reason:
            return unit, None, reason
    if layer.attention_bias is not None:
        table, reason = _grid_fit(config, unit, q_shape, k_shape)
        if reason:
            return unit, table, reason
    return unit, table, _limit_refusal(config, layer, unit, k_shape)


def _limit_refusal(config: CoreConfig, layer: AttentionLayer, unit: LogSoftmax, k_shape: tuple) -> str | None:
    """Why the path's widths cannot hold this layer's codes, scores or constants (None: they can)."""
    sm = layer.softmax
    if sm.act_bits > config.act_bits:
        return f"its {sm.act_bits}-bit codes exceed the core's {config.act_bits}-bit codes (act_bits)"
    if layer.q.act_bits > config.act_bits or layer.k.act_bits > config.weight_bits:
        return "its query or key codes are wider than the core stores"
    nk = k_shape[-2]
    if nk > config.softmax_max_keys:
        return f"its rows of {nk} keys exceed the path's {config.softmax_max_keys} (softmax_max_keys)"
    bound = layer.key_dim * _uniform_max(layer.q.act_bits, layer.q.zero_point) * _uniform_max(layer.k.act_bits,
                                                                                             layer.k.zero_point)
    if bound >= 1 << (SOFTMAX_SCORE_BITS - 1):
        return f"its scores can reach {bound}, beyond the path's {SOFTMAX_SCORE_BITS}-bit scores"
    if bound >= 1 << (config.pe_acc_bits - 1):
        return f"its scores can reach {bound}, beyond the PE accumulators ({config.pe_acc_bits} bits)"
    if unit.shift > 63 or unit.multiplier >= 1 << 31:
        return "its logit scale does not fit the SOFTMAX instruction's multiplier and shift"
    if not -(1 << 15) <= unit.offset < 1 << 15:
        return f"its codes' offset {unit.offset} does not fit the SOFTMAX instruction's 16 bits"
    return None


def relative_slots(config: CoreConfig, grid: int) -> int:
    """Key slots in a key row of a ``grid`` x ``grid`` attention on the path: the grid's side rounded up to
    whole beats of the path's lanes (``isa.Softmax``: the padding is masked)."""
    return round_up(grid, config.softmax_lanes)


def relative_row_beats(config: CoreConfig, slots: int) -> int | None:
    """The ``bias_side`` of a SOFTMAX whose key rows have ``slots`` key slots (``isa.relative_row_slots``
    inverted: 0 for the path's own side), None where the field cannot say it."""
    if slots == config.softmax_relative_side:
        return 0
    beats = slots // config.softmax_lanes
    return beats if beats < 1 << field_width(Softmax, "bias_side") else None


def _relative_refusal(config: CoreConfig, layer: AttentionLayer, unit: LogSoftmax, q_shape: tuple, k_shape: tuple
                      ) -> str | None:
    """Why the path cannot add this layer's relative-position terms (None: it can)."""
    side, nq = config.softmax_relative_side, q_shape[-2]
    grid = math.isqrt(nq)
    if grid * grid != nq or k_shape[-2] != nq:
        return f"its {nq} queries and {k_shape[-2]} keys are not one square grid"
    if grid > side:
        return f"its {grid} x {grid} grid exceeds the path's {side} x {side} (softmax_relative_side)"
    slots = relative_slots(config, grid)
    if relative_row_beats(config, slots) is None:
        return (f"its key rows of {slots} slots are more beats than a SOFTMAX counts for a grid narrower than the "
                f"path's {side}")
    bound = unit.relative.term_bound(layer.q.act_bits)
    if bound >= 1 << (RELATIVE_TERM_BITS - 1):
        return f"its relative-position terms can reach {bound}, beyond the path's {RELATIVE_TERM_BITS}-bit terms"
    return None


def _grid_fit(config: CoreConfig, unit: LogSoftmax, q_shape: tuple, k_shape: tuple
              ) -> tuple[np.ndarray | None, str | None]:
    """The layer's attention bias as a grid-bias table [heads, s, s], and why the path cannot add it (None:
    it can)."""
    if not config.softmax_bias_side:
        return None, "its logits take an attention bias, and the path adds none (softmax_bias_side 0)"
    table = grid_table(unit.bias)
    if table is None:
        return None, "its attention bias is not a function of the query-key offsets on a square grid"
    heads, side = table.shape[:2]
    if not config.softmax_lanes <= side <= config.softmax_bias_side:
        return table, (f"its grid of side {side} is outside the path's {config.softmax_lanes}.."
                       f"{config.softmax_bias_side} (softmax_lanes..softmax_bias_side)")
    if q_shape[-2] != side * side or k_shape[-2] != side * side or len(q_shape) < 3 or q_shape[-3] != heads:
        return table, (f"its queries {list(q_shape)} and keys {list(k_shape)} are not [..., {heads} heads, "
                       f"{side * side}, d]")
    if np.abs(table).max() >= 1 << (BIAS_BITS - 1):
        return table, f"its attention bias reaches {int(np.abs(table).max())}, beyond the path's {BIAS_BITS}-bit table"
    return table, None


def recorded_op(op: str | None) -> str | None:
    """The op a model run records for ``op``: ``probs`` takes the query and key codes of its QK^T."""
    return "scores" if op == "probs" else op


def with_softmax(spec):
    """A QK^T's invocation spec as the ``probs`` invocation of the same query and key shapes."""
    return dataclasses.replace(spec, op="probs")


def softmax_on_chip(calls: list, config: CoreConfig) -> list:
    """A model's invocations (spec, layer) as ``config`` runs them: each QK^T the softmax path can take, with
    rows of at least ``cols`` keys, becomes the ``probs`` invocation of the same query and key shapes.

    Shorter rows stay on the host: the unit's three row slots each pass a load, a sum and an emit stage of
    some tens of cycles whatever the row's length, so a tile of short rows takes the unit far longer than
    its beats (LiteMedSAM's image-to-token attention, 16 rows of 7 keys a tile: 347 cycles a tile on the
    RTL, where its QK^T alone takes 17 and stores as many words)."""
    out = []
    for spec, layer in calls:
        if (spec.op == "scores" and spec.shape("k")[-2] >= config.cols
                and probs_refusal(config, layer, spec.shape("q"), spec.shape("k")) is None):
            spec = with_softmax(spec)
        out.append((spec, layer))
    return out


def plan_probs(config: CoreConfig, layer: AttentionLayer, q_shape: tuple, k_shape: tuple, where: str,
               slots: int) -> Plan:
    """Jobs of the ``probs`` invocation (module docstring): per item and block of R queries, one job per
    chunk of key blocks the WGT half holds, the last with the SOFTMAX and the store of the block's codes."""
    unit, table, reason = _path_fit(config, layer, q_shape, k_shape)
    if reason:
        raise CompileError(f"{where}: QK^T with the softmax on chip: {reason}")
    q, k, sm = layer.q, layer.k, layer.softmax
    R, K, P = config.rows, config.cols, config.codes_per_act_word
    vw, spw = config.vectors_per_wgt_word, config.slots_per_param_word
    items = _items(where, q_shape, k_shape, ("q", "k"), ((None, layer.key_dim), (None, layer.key_dim)))
    nq, nk, d = q_shape[-2], k_shape[-2], layer.key_dim
    # with relative terms, keys in rows of whole beats of key slots: a narrower grid's rows padded
    grid = math.isqrt(nq) if unit.relative is not None else 0
    row_slots = relative_slots(config, grid) if grid else 0
    n_slots = grid * row_slots if grid else nk
    key_slots = (np.arange(nk) // grid * row_slots + np.arange(nk) % grid) if row_slots != grid else None
    n_ob, j_pad, ks = -(-n_slots // K), round_up(d, vw), round_up(K, spw)
    row_words = softmax_row_words(n_slots, config.act_bits, config.bus_bits)
    arith = Arith.of(Mode.MAC, 1, SOFTMAX_SCORE_BITS, (Segment(0, d, q.zero_point, 0, 1, 0),))
    arith = dataclasses.replace(arith, loops=dataclasses.replace(arith.loops, to_store=1))
    cap = Capacity.of(config, slots, arith)
    side = 0 if table is None else table.shape[1]
    slot_words = -(-ks // spw)
    # what follows the column slots: a head's grid table, or a query block's relative terms
    table_words = bias_table_words(side, config.bus_bits) + relative_terms_words(R * row_slots, config.bus_bits)

    # queries: whole items in ACT when one fits, else chunks of whole words of rows
    m_pad = round_up(nq, R)
    whole = -(-d * m_pad // P) * P <= cap.act_codes
    if not whole:
        m_pad = round_up(nq, lcm(R, P))
    item_words = -(-d * m_pad // P)
    quantum = m_pad if whole else lcm(R, P)
    nr = m_pad if whole else quantum * largest(m_pad // quantum, lambda v: d * v * quantum <= cap.act_codes)
    nob = largest(n_ob, lambda v: v * j_pad <= cap.wgt_vectors)
    if nr < 1 or nob < 1 or (slot_words + table_words) * spw > cap.slots or R * row_words > cap.out_words:
        raise too_big(where, f"one block of {R} queries x {nk} keys over {d} key dims", slots,
                      {"ACT": (-(-d * quantum // P), cap.act_codes // P), "WGT": (j_pad // vw, cap.wgt_vectors // vw),
                       "PARAM": (slot_words + table_words, cap.slots // spw), "OUT": (R * row_words, cap.out_words)})

    descs = {}

    def descriptor(nob_job: int):
        if nob_job not in descs:
            act = DescActStrides(b=0, rb=R, ob=0, c=nr, i=0, d=0)
            other = DescOtherStrides(wgt_b=0, wgt_ob=j_pad, out_b=0, out_ob=R, out_rb=0, out_row=1, col_b=0, col_ob=0)
            descs[nob_job] = arith.descriptor(nob_job, d, 1, 1, act, other)
        return descs[nob_job]

    col_words = j_pad // vw
    softmax = dict(multiplier=unit.multiplier, shift=unit.shift, tau_log2=sm.tau.bit_length() - 1,
                   zero_code=sm.zero_code, offset=unit.offset)
    blocks = m_pad // R

    def slot_fill(head: int, b: int, block: int) -> Fill:
        slots = tuple(contiguous("slots", 0, slot_words))
        if side:
            return Fill("slots", ("slots", head), slots + tuple(contiguous("bias", head * table_words, table_words,
                                                                           slot_words)))
        if row_slots:
            return Fill("slots", ("slots", b, block), slots + tuple(contiguous(
                "relative", (b * blocks + block) * table_words, table_words, slot_words)))
        return Fill("slots", ("slots",), slots)

    # items are [..., heads]; with a grid bias, head by head: the head's table is loaded into the slot area
    # and the path once
    heads = table.shape[0] if side else 1
    order = [(w * heads + h, h) for h in range(heads) for w in range(items // heads)]
    # a block's key chunks in the order opposite to the block before it: the chunk the last block ended on
    # is still in WGT (a row of 4,096 keys does not fit, and every block of R queries needs all of them)
    key_chunks = chunks(n_ob, nob)
    jobs = []
    for b, head in order:
        for r0, nrj in chunks(m_pad, nr):
            if whole:
                act_fill = Fill("act", ("act", b), tuple(contiguous("rows", b * item_words, item_words)))
            else:
                act_fill = Fill("act", ("act", b, r0), (Copy("rows", b * item_words + r0 // P, d, nrj // P, m_pad // P,
                                                             nr // P),))
            for rb in range(-(-min(nrj, nq - r0) // R)):
                queries = min(R, nq - r0 - rb * R)
                block = (r0 + rb * R) // R
                ordered = key_chunks[::-1] if block % 2 else key_chunks
                for o0, nobj in ordered:
                    last = (o0, nobj) == ordered[-1]
                    fills = (act_fill, Fill("wgt", ("wgt", b, o0), tuple(contiguous(
                                 "columns", (b * n_ob + o0) * col_words, nobj * col_words))),
                             slot_fill(head, b, block))
                    step = dict(softmax, n_rows=queries, keys=n_slots) if last else None
                    if step and side:       # the head's table after the column slots; the block's first query
                        first = r0 + rb * R
                        step.update(bias_side=side, query_row=first // side, query_col=first % side,
                                    bias_offset=slot_words, bias_key=(head,))
                    elif step and row_slots:    # the block's terms after the column slots, copied by each
                        beats = relative_row_beats(config, row_slots)
                        step.update(bias_offset=slot_words, bias_key=(b, block), bias_side=beats,
                                    query_col=row_slots - grid)
                    stores = tuple(contiguous("out", (b * nq + r0 + rb * R) * row_words, queries * row_words)) \
                        if last else ()
                    jobs.append(Job(fills, descriptor(nobj), rb * R, 0, 0, 1, 1, stores, softmax=step,
                                    out_base=o0 * R))

    slot = ColumnSlot(k.zero_point, 0, 0, 0, 0)
    static = {"slots": pack_entries(slot_blocks([slot] * K, ks, K, True), config.bus_bits)}
    if side:
        static["bias"] = pack_bias_tables(table, config.bus_bits)
    inputs = {"rows": rows_region("q", tuple(q_shape), tuple(range(len(q_shape))), (items, nq, d), m_pad, item_words,
                                  config.act_bits, q.act_bits, np.full(d, q.zero_point)),
              "columns": vectors_region("k", tuple(k_shape), _swap_last(len(k_shape)), (items, d, nk), K, j_pad,
                                        config.weight_bits, k.act_bits, np.full(n_ob * K, k.zero_point),
                                        items * n_ob * col_words, key_slots)}
    if row_slots:
        inputs["relative"] = relative_region("q", tuple(q_shape), tuple(range(len(q_shape))), (items, nq, d),
                                             unit.relative, grid, R, m_pad, table_words, q.act_bits, row_slots)
    per_word = config.bus_bits // config.act_bits
    outputs = {"out": out_region("probs", tuple(q_shape[:-1]) + (nk,), tuple(range(len(q_shape))), (items, nq, nk),
                                 nq, row_words, per_word, config.act_bits, False, 1, key_slots=key_slots)}
    return Plan(jobs, slots, static, inputs, outputs, macs=items * nq * d * nk)
