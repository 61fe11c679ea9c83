"""One GEMM instruction, executed on the buffer contents exactly as docs/core.md's pseudo-code says,
with every tile of the instruction computed at once in numpy.

Exactness: each segment's X and Y are matrix products of integer row terms and signed column operands.
A product is taken in float64 BLAS when its worst case is below 2^53 (every partial sum is then an
exact integer), in int64 when below 2^63, and with Python integers otherwise. The lanes' sums and the
requantization are exact for every value their fields can hold. A result that does not fit the
hardware's registers (X, Y: ``pe_acc_bits``; the lanes: 48 bits) is an error, not a silent wrap: the
compiler guarantees it never happens, so seeing it means a wrong program.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.core.config import LANE_ACC_BITS, SOFTMAX_SCORE_BITS, CoreConfig
from hw.core.isa import DESC_FIXED_WORDS, LOOKUP_VALUE_BITS, Gemm, Mode, element_bits, lookup
from .layout import (Descriptor, decode_descriptor, decode_slots, out_slots_per_word, out_words_per_row, pack_out_rows,
                     slot_word)


class GemmError(ValueError):
    """A GEMM the core cannot execute as written (bad descriptor, out-of-range address, overflow)."""


@dataclass(frozen=True)
class GemmResult:
    """What one GEMM writes (row vectors, in execution order) and which buffer words it touches."""

    out_first_word: np.ndarray   # [n] OUT word of each row vector
    out_bytes: np.ndarray        # [n, words_per_row * bus_bytes], or [n, row bytes] when packed
    out_part: np.ndarray         # [n] which row of its word (packed: byte offset out_part * row bytes)
    act_words: np.ndarray
    wgt_words: np.ndarray
    param_words: np.ndarray
    out_words: np.ndarray
    store_rows: np.ndarray | None = None     # a to_store GEMM: the store row (OUT row address) of each row
    store_scores: np.ndarray | None = None   # ... and its K scores


def _fits(values: np.ndarray, bits: int) -> bool:
    if not values.size:
        return True
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return int(values.min()) >= lo and int(values.max()) <= hi


def _absmax(values: np.ndarray) -> int:
    return int(np.abs(values).max()) if values.size else 0


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for integer operands, exact (see the module docstring), as int64 (or object if larger)."""
    bound = _absmax(a) * _absmax(b) * a.shape[-1]
    if bound < 1 << 53:
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)
    if bound < 1 << 63:
        return np.matmul(a.astype(np.int64), b.astype(np.int64))
    return np.matmul(a.astype(object), b.astype(object))


def _segment_product(op: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row operands [b, ob_act, M, J] times column operands [b_w, ob, J, K] -> [b, ob, M, K]; when the
    row operands do not depend on the column block, all blocks go through one wider product."""
    if op.shape[1] == 1 and w.shape[1] > 1:
        b_w, nob, jl, k = w.shape
        wide = exact_matmul(op[:, 0], w.transpose(0, 2, 1, 3).reshape(b_w, jl, nob * k))
        return wide.reshape(wide.shape[0], wide.shape[1], nob, k).transpose(0, 2, 1, 3)
    return exact_matmul(op, w)


def _scaled_sum(terms: list[tuple[np.ndarray, np.ndarray]], start: np.ndarray) -> np.ndarray:
    """start + sum(m * X) exactly: int64 when the bound allows, Python integers otherwise."""
    bound = _absmax(start) + sum(_absmax(m) * _absmax(x) for m, x in terms)
    kind = np.int64 if bound < 1 << 62 else object
    acc = start.astype(kind)
    for m, x in terms:
        acc = acc + m.astype(kind) * x.astype(kind)
    return acc


def requantize(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, zero_point: np.ndarray, q_min: int,
               q_max: int) -> np.ndarray:
    """clamp(((acc * M + 2^(shift - 1)) >> shift) + zero_point, q_min, q_max), exact for |acc| <= 2^47,
    M < 2^31 and any 7-bit shift (shift 0 adds no rounding term)."""
    acc, multiplier, shift, zero_point = (np.asarray(x, np.int64) for x in (acc, multiplier, shift, zero_point))
    acc, multiplier, shift, zero_point = np.broadcast_arrays(acc, multiplier, shift, zero_point)
    out = np.empty(acc.shape, np.int64)
    # acc * M = acc * m_hi * 2^16 + acc * m_lo, both products below 2^63; the rounding constant and the
    # low part's floor fold into the high part for shift >= 17 (floor(floor(x / 2^16) / 2^s) = floor(x / 2^(16+s))).
    mid = (shift >= 17) & (shift <= 78)
    if mid.any():
        a, m, s = acc[mid], multiplier[mid], shift[mid]
        high = a * (m >> 16) + (np.int64(1) << (s - 17)) + ((a * (m & 0xFFFF)) >> 16)
        out[mid] = high >> (s - 16)
    # |acc * M| < 2^78, so adding 2^(shift - 1) >= 2^78 and dividing by 2^shift leaves 0.
    out[shift > 78] = 0
    low = shift < 17
    if low.any():
        # A small shift leaves more than 64 bits: Python integers, clamped before they return to int64.
        vals = [min(max(((int(a) * int(m) + ((1 << (int(s) - 1)) if s else 0)) >> int(s)) + int(z), q_min), q_max)
                for a, m, s, z in zip(acc[low], multiplier[low], shift[low], zero_point[low])]
        out[low] = np.array(vals, np.int64)
    rest = ~low
    out[rest] = np.clip(out[rest] + zero_point[rest], q_min, q_max)
    return out


def decode_row(codes: np.ndarray, mode: int, seg, loops) -> tuple[np.ndarray, np.ndarray | None]:
    """What row codes add per unit of the column operand w, in one segment (docs/core.md's row_terms
    table): X and Y factors (Y None when the mode has no Y path): MAC c - z; HLUQ 2^(c-1) or
    2^(L-1) and c - L; AGQ 2^(Q - c div tau) split by residue. A ``y_terms`` segment has Y's factor
    as its X and no Y. ``loops``: the DescLoops."""
    x, y = _row_factors(codes.astype(np.int64), mode, seg, loops)
    if seg.y_terms:
        return (y if y is not None else np.zeros_like(x)), None
    return x, y


def _row_factors(c: np.ndarray, mode: int, seg, loops) -> tuple[np.ndarray, np.ndarray | None]:
    if mode == Mode.MAC:
        return c - seg.zero_point, None
    if mode == Mode.HLUQ:
        levels = loops.log_levels
        log = np.where(c > 0, np.int64(1) << np.clip(np.minimum(c, levels) - 1, 0, None), 0)
        return log, np.where(c > levels, c - levels, 0)
    tau = 1 << loops.tau_log2
    exponent, residue = c // tau, c % tau
    magnitude = np.where((c != loops.zero_code) & (exponent <= loops.max_shift),
                         np.int64(1) << np.clip(loops.max_shift - exponent, 0, None), 0)
    if tau == 1:
        return magnitude, None
    return (np.where(residue == 2 * seg.residue_pass, magnitude, 0),
            np.where(residue == 2 * seg.residue_pass + 1, magnitude, 0))


def _check_descriptor(config: CoreConfig, desc: Descriptor, where: str) -> None:
    loops = desc.loops
    problems = []
    if loops.mode not in tuple(Mode):
        problems.append(f"unknown mode {loops.mode}")
    if loops.tau_log2 > 2:
        problems.append(f"tau_log2 {loops.tau_log2} (tau is 1, 2 or 4)")
    if not 1 <= loops.n_seg <= config.max_segments:
        problems.append(f"{loops.n_seg} segments (the core has 1 to {config.max_segments})")
    if loops.raw and loops.n_seg != 1:
        problems.append(f"raw output with {loops.n_seg} segments (raw keeps the X of a single segment)")
    if min(loops.n_c, loops.n_i, loops.n_d) < 1:
        problems.append(f"empty reduction loop n_c={loops.n_c} n_i={loops.n_i} n_d={loops.n_d}")
    if loops.mode == Mode.HLUQ:
        if "hluq" not in config.formats:
            problems.append("HLUQ mode, which this core does not include")
        if not 1 <= loops.log_levels <= config.max_shift + 1:
            problems.append(f"log_levels {loops.log_levels} (shifts up to max_shift {config.max_shift})")
    if loops.mode == Mode.AGQ:
        if "agq" not in config.formats:
            problems.append("AGQ mode, which this core does not include")
        if loops.max_shift > config.max_shift:
            problems.append(f"AGQ max_shift {loops.max_shift} above the core's {config.max_shift}")
    if loops.to_store:
        if not config.softmax_lanes:
            problems.append("to_store on a core without a softmax path (softmax_lanes 0)")
        elif not loops.raw or element_bits(loops.out_width) != SOFTMAX_SCORE_BITS or loops.packed:
            problems.append(f"to_store needs a raw, unpacked GEMM of {SOFTMAX_SCORE_BITS}-bit elements")
    if loops.mode == Mode.MAC and loops.n_seg > 1 and "cag" not in config.formats:
        problems.append(f"{loops.n_seg} MAC segments (channel groups), which this core does not include")
    if loops.uses_y and not config.y_accumulators:
        problems.append("uses_y on a core whose PEs have no Y accumulator")
    y_shift = loops.log_levels - 1 if loops.mode == Mode.HLUQ else loops.max_shift if loops.mode == Mode.AGQ else 0
    if loops.uses_y and y_shift > config.y_shift_limit:
        problems.append(f"uses_y with Y terms shifted by up to {y_shift}, the core's Y takes {config.y_shift_limit} "
                        f"(y_max_shift)")
    if loops.lookup_steps:
        if loops.lookup_steps > config.lookup_steps:
            problems.append(f"{loops.lookup_steps} lookup steps (the core has {config.lookup_steps})")
        if loops.raw:
            problems.append("an output lookup on a raw output")
        bound = 1 << (LOOKUP_VALUE_BITS - 1)
        if not -bound <= loops.q_min <= loops.q_max < bound:
            problems.append(f"an output lookup with clamp bounds {loops.q_min}..{loops.q_max} beyond the "
                            f"{LOOKUP_VALUE_BITS}-bit thresholds")
    total = loops.n_c * loops.n_i * loops.n_d
    for s, seg in enumerate(desc.segments):
        if seg.y_terms and (loops.uses_y or loops.mode == Mode.MAC):
            problems.append(f"segment {s} takes Y's terms in X, which only HLUQ and AGQ without uses_y do")
        if seg.j_start + seg.j_len > total:
            problems.append(f"segment {s} covers j {seg.j_start}..{seg.j_start + seg.j_len - 1}, the loops "
                            f"have {total}")
    if problems:
        raise GemmError(f"{where}: descriptor at PARAM word: {'; '.join(problems)}")


def _in_range(addresses: np.ndarray, limit: int, what: str, where: str) -> None:
    if addresses.size and (int(addresses.min()) < 0 or int(addresses.max()) >= limit):
        bad = int(addresses.min()) if int(addresses.min()) < 0 else int(addresses.max())
        raise GemmError(f"{where}: {what} {bad} is outside the buffer (0..{limit - 1})")


def execute_gemm(config: CoreConfig, inst: Gemm, act_codes: np.ndarray, wgt_codes: np.ndarray, param: np.ndarray,
                 where: str, track_words: bool = True) -> GemmResult:
    """Run one GEMM: ``act_codes``/``wgt_codes`` are every code of the ACT/WGT buffers in address order,
    ``param`` the PARAM buffer's bytes. Returns the row vectors to write and, with ``track_words`` (the
    hazard check needs them; they cost a fifth of the run), the ACT/WGT/PARAM words it reads."""
    rows, cols, bus = config.rows, config.cols, config.bus_bits
    if inst.desc_addr + DESC_FIXED_WORDS > config.param_words:
        raise GemmError(f"{where}: descriptor at PARAM word {inst.desc_addr} runs past the buffer ({config.param_words})")
    desc = decode_descriptor(param, inst.desc_addr, bus)
    end = inst.desc_addr + desc.words(bus)
    if end > config.param_words:
        raise GemmError(f"{where}: descriptor at PARAM word {inst.desc_addr} runs past the buffer ({config.param_words})")
    where = f"{where} (descriptor at {inst.desc_addr})"
    _check_descriptor(config, desc, where)
    loops, sa, so = desc.loops, desc.act, desc.other
    param_words = [np.arange(inst.desc_addr, end)]
    nb, nob, nrb = inst.n_batch, loops.n_ob, inst.n_rb
    segments = [s for s in desc.segments]
    e_bits = element_bits(loops.out_width)
    wpr = out_words_per_row(cols, e_bits, bus)
    per_word = out_slots_per_word(config, loops)
    empty = np.zeros(0, np.int64)
    if nb * nob * nrb == 0:
        return GemmResult(empty, np.zeros((0, wpr * bus // 8), np.uint8), empty, empty, empty,
                          np.concatenate(param_words), empty)

    used = [s for s in segments if s.j_len]
    j_lo = min((s.j_start for s in used), default=0)
    j_hi = max((s.j_start + s.j_len for s in used), default=0)
    j = np.arange(j_lo, j_hi, dtype=np.int64)
    c, i, d = j // (loops.n_i * loops.n_d), (j // loops.n_d) % loops.n_i, j % loops.n_d
    j_offset = c * sa.c + i * sa.i + d * sa.d

    b = np.arange(nb, dtype=np.int64)
    ob = np.arange(nob, dtype=np.int64)
    rb = np.arange(nrb, dtype=np.int64)
    r = np.arange(rows, dtype=np.int64)
    ob_act = ob if sa.ob else ob[:1]
    tile_base = (inst.act_base + b[:, None, None] * sa.b + ob_act[None, :, None] * sa.ob + rb[None, None, :] * sa.rb)
    # [b, ob_act, rb, r, j] -> rows of a tile are rb * R + r
    act_addr = tile_base[..., None, None] + r[:, None] + j_offset
    _in_range(act_addr, act_codes.size, "ACT code", where)
    codes = act_codes[act_addr].reshape(nb, len(ob_act), nrb * rows, len(j))

    b_wgt = b if so.wgt_b else b[:1]
    vec = inst.wgt_base + b_wgt[:, None, None] * so.wgt_b + ob[None, :, None] * so.wgt_ob + j
    _in_range(vec, wgt_codes.size // cols, "WGT vector", where)
    wcodes = wgt_codes.reshape(-1, cols)[vec].astype(np.int64)          # [b_wgt, ob, j, K]

    b_col = b if so.col_b else b[:1]
    slot = inst.col_base + b_col[:, None, None] * so.col_b + ob[None, :, None] * so.col_ob + np.arange(cols)
    slots_per_word = bus // 128
    _in_range(slot, config.param_words * slots_per_word, "constant slot", where)
    consts = decode_slots(param, slot, bus)                             # each [b_col, ob, K]
    if track_words:
        param_words.append(np.unique(slot_word(slot.reshape(-1), bus)))
    w = wcodes - consts["zero_point"][:, :, None, :]                     # [b_w, ob, j, K]

    acc = np.broadcast_to(consts["bias"][:, :, None, :], (nb, nob, 1, cols)).astype(np.int64)
    out = None
    for seg in segments:
        part = slice(seg.j_start - j_lo, seg.j_start - j_lo + seg.j_len)
        x_op, y_op = decode_row(codes[..., part], loops.mode, seg, loops)
        ws = w[:, :, part, :]
        x = _segment_product(x_op, ws)                                   # [b, ob, M, K]
        y = _segment_product(y_op, ws) if y_op is not None else None
        for name, value in (("X", x), ("Y", y)):
            if value is not None and not _fits(value, config.pe_acc_bits):
                raise GemmError(f"{where}: PE accumulator {name} reaches {_absmax(value)}, beyond "
                                f"{config.pe_acc_bits} signed bits")
        if loops.raw:
            out = x
            continue
        terms = [(np.int64(seg.m_x), x)]
        if loops.uses_y and y is not None:
            terms.append((np.int64(seg.m_y), y))
        acc = _scaled_sum(terms, acc)
    if not loops.raw:
        acc = np.broadcast_to(acc, (nb, nob, nrb * rows, cols))
        if not _fits(acc, LANE_ACC_BITS):
            raise GemmError(f"{where}: lane accumulator reaches {_absmax(acc)}, beyond {LANE_ACC_BITS} signed bits")
        acc = acc.astype(np.int64)
        expand = (slice(None), slice(None), None, slice(None))
        out = requantize(acc, consts["multiplier"][expand], consts["shift"][expand],
                         consts["out_zero_point"][expand], loops.q_min, loops.q_max)
        if loops.lookup_steps:
            out = lookup(out, loops.lookup_base, desc.lookup)
    out = np.broadcast_to(out, (nb, nob, nrb * rows, cols)).astype(np.int64)

    addr = (inst.out_base + b[:, None, None, None] * so.out_b + ob[None, :, None, None] * so.out_ob
            + rb[None, None, :, None] * so.out_rb + r[None, None, None, :] * so.out_row).reshape(-1)
    if loops.to_store:
        _in_range(addr, config.softmax_store_rows, "softmax store row", where)
        scores = out.reshape(-1, cols)
        if not _fits(scores, SOFTMAX_SCORE_BITS):
            raise GemmError(f"{where}: a score for the softmax store reaches {_absmax(scores)}, beyond "
                            f"{SOFTMAX_SCORE_BITS} signed bits")
        none = np.zeros(0, np.int64)
        acts = np.unique(act_addr // config.codes_per_act_word) if track_words else empty
        wgts = np.unique(vec // config.vectors_per_wgt_word) if track_words else empty
        return GemmResult(none, np.zeros((0, wpr * bus // 8), np.uint8), none, acts, wgts,
                          np.concatenate(param_words), none, addr, scores)
    first, part = addr // per_word, addr % per_word     # a packed GEMM's addresses are row slots
    out_words = (first[:, None] + np.arange(wpr)).reshape(-1)
    _in_range(out_words, config.out_words, "OUT word", where)
    rows_bytes = pack_out_rows(out.reshape(-1, cols), e_bits, bus)
    if per_word > 1:
        rows_bytes = rows_bytes[:, :cols * e_bits // 8]
    if not track_words:
        return GemmResult(first, rows_bytes, part, empty, empty, empty, out_words)
    return GemmResult(first, rows_bytes, part,
                      np.unique(act_addr // config.codes_per_act_word),
                      np.unique(vec // config.vectors_per_wgt_word), np.concatenate(param_words), out_words)
