"""How the core's buffers and external memory hold codes, column vectors, output row vectors, GEMM
descriptors and constant slots (docs/core.md, "Storage"). The functional model reads its buffers with
these functions and the compiler writes its memory images with them, so both sides share one layout.

Words are ``bus_bits`` wide and little-endian: bit ``i`` of a word is bit ``i % 8`` of byte ``i // 8``.

    ACT     code a at bits [(a mod P) * act_bits, ...) of word a div P, P = bus_bits / act_bits
    WGT     column vector v (cols codes of weight_bits) right after vector v - 1: cols * weight_bits
            divides bus_bits, so vectors never straddle a word and packing them is packing codes
    OUT     a row vector of cols elements of e bits, element k at bits [k e, (k + 1) e) of its
            ceil(cols e / bus_bits) words; bits past cols * e are written as zeros. A packed GEMM puts
            P = bus_bits / (cols e) rows in a word (CoreConfig.rows_per_out_word): row slot s at bits
            [(s mod P) cols e, ...) of word s div P, the rest of the word left as it was
    PARAM   a descriptor: DescLoops, DescActStrides, DescOtherStrides in the low 256 bits of three
            words, then its segments, then its lookup steps; segments and constant slots are 128-bit
            entries, bus_bits / 128 per word, lookup steps 32-bit entries, 8 in the low 256 bits of a
            word (``hw.core.isa.desc_words``); a grid-bias table's entry e = dy s + dx in the low
            BIAS_BITS (signed) of constant slot e of its words (``isa.Softmax``); a tile's relative-
            position term pair e = r s + i in bits [32 e, 32 e + 32) from its first word, height term
            low, width term high (``pack_relative_terms``)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.core import isa
from hw.core.config import BIAS_BITS, RELATIVE_PAIR_BITS, SLOT_BITS, CoreConfig
from hw.core.isa import (DESC_FIXED_WORDS, DESC_WORD_BITS, LOOKUP_STEPS_PER_WORD, ColumnSlot, DescActStrides,
                         DescLoops, DescOtherStrides, LookupStep, Segment, desc_words)


def words_for_bits(bits: int, bus_bits: int) -> int:
    return -(-bits // bus_bits)


# ---- codes (ACT buffer, WGT vectors) --------------------------------------------------------------

def pack_codes(codes: np.ndarray, bits: int, bus_bits: int) -> np.ndarray:
    """Unsigned codes (any shape, flattened in C order) -> bytes of whole words [words * bus_bytes]."""
    codes = np.asarray(codes).reshape(-1)
    if codes.size and (codes.min() < 0 or codes.max() >= 1 << bits):
        raise ValueError(f"codes outside 0..{(1 << bits) - 1} cannot be stored at {bits} bits")
    per_word = bus_bits // bits
    words = -(-codes.size // per_word)
    padded = np.zeros(words * per_word, np.uint8)
    padded[:codes.size] = codes
    if bits == 8:
        return padded
    if bits == 4:
        pairs = padded.reshape(-1, 2)
        return (pairs[:, 0] | (pairs[:, 1] << 4)).astype(np.uint8)
    raise ValueError(f"codes are stored at 4 or 8 bits, not {bits}")


def unpack_codes(data: np.ndarray, bits: int) -> np.ndarray:
    """Bytes -> every code they hold (uint8), in address order."""
    data = np.asarray(data, np.uint8).reshape(-1)
    if bits == 8:
        return data
    if bits == 4:
        return np.stack([data & 0xF, data >> 4], axis=1).reshape(-1)
    raise ValueError(f"codes are stored at 4 or 8 bits, not {bits}")


# ---- OUT row vectors ------------------------------------------------------------------------------

OUT_DTYPES = {8: np.int8, 16: np.int16, 32: np.int32}


def out_words_per_row(cols: int, element_bits: int, bus_bits: int) -> int:
    return words_for_bits(cols * element_bits, bus_bits)


def out_slots_per_word(config: CoreConfig, loops: DescLoops) -> int:
    """A GEMM's OUT addresses per word: the rows of its width a word holds when it is packed, else 1."""
    return config.rows_per_out_word(isa.element_bits(loops.out_width)) if loops.packed else 1


def pack_out_rows(values: np.ndarray, element_bits: int, bus_bits: int) -> np.ndarray:
    """Row vectors [n, cols] of integers -> bytes [n, words_per_row * bus_bytes], each element its low
    ``element_bits`` bits (two's complement), the rest of the last word zero."""
    values = np.asarray(values, np.int64)
    n, cols = values.shape
    width = out_words_per_row(cols, element_bits, bus_bits) * (bus_bits // 8)
    if element_bits == 4:       # element k in the low (even k) or high nibble of byte k // 2
        nibbles = np.zeros((n, cols + cols % 2), np.uint8)
        nibbles[:, :cols] = values & 0xF
        raw = nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)
    else:
        low = (values & ((1 << element_bits) - 1)).astype(f"<u{element_bits // 8}")
        raw = low.view(np.uint8).reshape(n, cols * element_bits // 8)
    out = np.zeros((n, width), np.uint8)
    out[:, :raw.shape[1]] = raw
    return out


def unpack_out_rows(data: np.ndarray, cols: int, element_bits: int, signed: bool) -> np.ndarray:
    """Bytes [n, words_per_row * bus_bytes] -> row vectors [n, cols] (int64)."""
    data = np.ascontiguousarray(np.asarray(data, np.uint8))
    if element_bits == 4:
        nibbles = np.stack([data & 0xF, data >> 4], axis=2).reshape(data.shape[0], -1)[:, :cols].astype(np.int64)
        return np.where(nibbles >= 8, nibbles - 16, nibbles) if signed else nibbles
    raw = data[:, :cols * element_bits // 8].copy()
    dtype = np.dtype(OUT_DTYPES[element_bits] if signed else f"<u{element_bits // 8}").newbyteorder("<")
    return raw.view(dtype).reshape(data.shape[0], cols).astype(np.int64)


# ---- PARAM: descriptors and constant slots --------------------------------------------------------

@dataclass(frozen=True)
class Descriptor:
    """A GEMM descriptor as the PARAM buffer holds it (docs/core.md, "GEMM semantics")."""

    loops: DescLoops
    act: DescActStrides
    other: DescOtherStrides
    segments: tuple[Segment, ...]
    lookup: tuple[LookupStep, ...] = ()      # loops.lookup_steps of them

    def words(self, bus_bits: int) -> int:
        return desc_words(len(self.segments), bus_bits, len(self.lookup))


def _word_bytes(value: int, bits: int, bus_bits: int) -> np.ndarray:
    out = np.zeros(bus_bits // 8, np.uint8)
    out[:bits // 8] = np.frombuffer(int(value).to_bytes(bits // 8, "little"), np.uint8)
    return out


def pack_entries(entries, bus_bits: int) -> np.ndarray:
    """128-bit records (segments, constant slots) -> bytes of whole words, bus_bits / 128 per word."""
    per_word = bus_bits // SLOT_BITS
    words = -(-len(entries) // per_word)
    out = np.zeros(words * bus_bits // 8, np.uint8)
    for i, entry in enumerate(entries):
        out[i * SLOT_BITS // 8:(i + 1) * SLOT_BITS // 8] = np.frombuffer(
            entry.encode().to_bytes(SLOT_BITS // 8, "little"), np.uint8)
    return out


def pack_bias_tables(table: np.ndarray, bus_bits: int) -> np.ndarray:
    """Grid tables T [heads, s, s] -> bytes of whole PARAM words, ceil(s^2 / slots a word) per head."""
    heads, side = table.shape[:2]
    slots = np.zeros((heads, bias_table_words(side, bus_bits) * (bus_bits // SLOT_BITS), SLOT_BITS // BIAS_BITS), "<i2")
    slots[:, :side * side, 0] = table.reshape(heads, side * side)
    return slots.view(np.uint8).reshape(-1)


def bias_table_words(side: int, bus_bits: int) -> int:
    """PARAM words one grid table of side ``side`` takes."""
    return -(-side * side // (bus_bits // SLOT_BITS))


def unpack_bias_table(param: np.ndarray, addr: int, side: int, bus_bits: int) -> np.ndarray:
    """The grid table T [s, s] (int64) whose words start at PARAM word ``addr`` (bytes of the buffer)."""
    slots = np.asarray(param, np.uint8).reshape(-1, SLOT_BITS // 8)[addr * (bus_bits // SLOT_BITS):][:side * side]
    return slots[:, :BIAS_BITS // 8].copy().view("<i2").astype(np.int64).reshape(side, side)


def pack_relative_terms(height: np.ndarray, width: np.ndarray, bus_bits: int) -> np.ndarray:
    """A tile's relative-position terms H, W [rows, s] -> bytes of whole PARAM words: pair e = r s + i at
    bits [32 e, 32 e + 32) counted from the first word, H_r[i] in the low 16 bits, W_r[i] in the high 16
    (``isa.Softmax``)."""
    pairs = np.stack([np.asarray(height).reshape(-1), np.asarray(width).reshape(-1)], axis=1).astype("<i2")
    out = np.zeros(relative_terms_words(pairs.shape[0], bus_bits) * bus_bits // 8, np.uint8)
    out[:pairs.nbytes] = pairs.view(np.uint8).reshape(-1)
    return out


def relative_terms_words(pairs: int, bus_bits: int) -> int:
    """PARAM words ``pairs`` relative-term pairs take."""
    return -(-pairs * RELATIVE_PAIR_BITS // bus_bits)


def unpack_relative_terms(param: np.ndarray, addr: int, n_rows: int, side: int, bus_bits: int
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The terms H, W [n_rows, s] (int64) whose pairs start at PARAM word ``addr`` (bytes of the buffer)."""
    start = addr * bus_bits // 8
    raw = np.asarray(param, np.uint8)[start:start + n_rows * side * RELATIVE_PAIR_BITS // 8]
    pairs = raw.copy().view("<i2").astype(np.int64).reshape(n_rows, side, 2)
    return pairs[..., 0], pairs[..., 1]


def pack_descriptor(desc: Descriptor, bus_bits: int) -> np.ndarray:
    """Descriptor -> bytes of its ``desc.words(bus_bits)`` PARAM words."""
    if bus_bits < DESC_WORD_BITS:
        raise ValueError(f"descriptors need bus_bits >= {DESC_WORD_BITS}, got {bus_bits}")
    fixed = [_word_bytes(r.encode(), DESC_WORD_BITS, bus_bits) for r in (desc.loops, desc.act, desc.other)]
    if len(desc.lookup) != desc.loops.lookup_steps:
        raise ValueError(f"descriptor with {len(desc.lookup)} lookup steps says lookup_steps = "
                         f"{desc.loops.lookup_steps}")
    steps = []
    for w in range(0, len(desc.lookup), LOOKUP_STEPS_PER_WORD):
        part = desc.lookup[w:w + LOOKUP_STEPS_PER_WORD]
        value = sum(step.encode() << (i * LookupStep.BITS) for i, step in enumerate(part))
        steps.append(_word_bytes(value, DESC_WORD_BITS, bus_bits))
    out = np.concatenate(fixed + [pack_entries(desc.segments, bus_bits)] + steps)
    assert out.size == desc.words(bus_bits) * bus_bits // 8
    return out


def _int_at(param: np.ndarray, word: int, lo_bit: int, bits: int, bus_bits: int) -> int:
    start = word * bus_bits // 8 + lo_bit // 8
    return int.from_bytes(param[start:start + bits // 8].tobytes(), "little")


def decode_descriptor(param: np.ndarray, desc_addr: int, bus_bits: int) -> Descriptor:
    """The descriptor at PARAM word ``desc_addr`` (``param``: the PARAM buffer's bytes)."""
    loops = DescLoops.decode(_int_at(param, desc_addr, 0, DESC_WORD_BITS, bus_bits))
    act = DescActStrides.decode(_int_at(param, desc_addr + 1, 0, DESC_WORD_BITS, bus_bits))
    other = DescOtherStrides.decode(_int_at(param, desc_addr + 2, 0, DESC_WORD_BITS, bus_bits))
    per_word = bus_bits // SLOT_BITS
    segments = tuple(Segment.decode(_int_at(param, desc_addr + DESC_FIXED_WORDS + s // per_word,
                                            (s % per_word) * SLOT_BITS, SLOT_BITS, bus_bits))
                     for s in range(loops.n_seg))
    first = desc_addr + desc_words(loops.n_seg, bus_bits)
    lookup = tuple(LookupStep.decode(_int_at(param, first + i // LOOKUP_STEPS_PER_WORD,
                                             (i % LOOKUP_STEPS_PER_WORD) * LookupStep.BITS, LookupStep.BITS, bus_bits))
                   for i in range(loops.lookup_steps))
    return Descriptor(loops, act, other, segments, lookup)


def slot_word(slot: int, bus_bits: int) -> int:
    """The PARAM word that holds constant slot ``slot``."""
    return slot // (bus_bits // SLOT_BITS)


def decode_slot(param: np.ndarray, slot: int, bus_bits: int) -> ColumnSlot:
    per_word = bus_bits // SLOT_BITS
    return ColumnSlot.decode(_int_at(param, slot // per_word, (slot % per_word) * SLOT_BITS, SLOT_BITS, bus_bits))


def decode_slots(param: np.ndarray, slots: np.ndarray, bus_bits: int) -> dict[str, np.ndarray]:
    """Fields of many constant slots, each an int64 array shaped like ``slots``. Vectorized: a GEMM reads
    thousands of slots, and decoding them one by one was the functional model's largest cost."""
    slots = np.asarray(slots, np.int64)
    unique, inverse = np.unique(slots, return_inverse=True)
    per_word, slot_bytes = bus_bits // SLOT_BITS, SLOT_BITS // 8
    start = (unique // per_word) * (bus_bits // 8) + (unique % per_word) * slot_bytes
    raw = np.asarray(param, np.uint8)[start[:, None] + np.arange(slot_bytes)]
    halves = np.ascontiguousarray(raw).view("<u8").astype(np.uint64)       # [n, 2]: bits 0-63, 64-127
    lo_half, hi_half = halves[:, 0], halves[:, 1]
    out = {}
    for f in ColumnSlot.LAYOUT:
        if f.lo >= 64:
            bits = hi_half >> np.uint64(f.lo - 64)
        elif f.lo + f.width <= 64:
            bits = lo_half >> np.uint64(f.lo)
        else:
            bits = (lo_half >> np.uint64(f.lo)) | (hi_half << np.uint64(64 - f.lo))
        value = (bits & np.uint64((1 << f.width) - 1)).astype(np.int64)
        if f.signed:
            value = np.where(value >> (f.width - 1), value - (1 << f.width), value)
        out[f.name] = value[inverse].reshape(slots.shape)
    return out
