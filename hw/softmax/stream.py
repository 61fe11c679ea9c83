"""Rows of scores as the softmax unit's input beats, and its output beats back as codes (numpy only)."""

from __future__ import annotations

import numpy as np

from .unit import CODE_BITS


def pack(values, bits: int) -> int:
    """One port word from per-lane values, lane i at bits [i bits, (i + 1) bits), two's complement."""
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    return word


def checked_scores(scores, score_bits: int) -> np.ndarray:
    """``scores`` as int64; a one-line error when one does not fit the unit's signed input."""
    scores = np.asarray(scores, np.int64)
    limit = 1 << (score_bits - 1)
    if scores.size and (int(scores.max()) >= limit or int(scores.min()) < -limit):
        raise ValueError(f"a score of {int(np.abs(scores).max())} does not fit the unit's {score_bits}-bit input")
    return scores


def row_beats(scores: np.ndarray, bias: np.ndarray | None, lanes: int, score_bits: int,
              bias_bits: int) -> list[tuple[int, int, int, int]]:
    """(scores word, bias word, keep mask, last) per beat of one row of K keys; lanes past K are not keys."""
    scores = checked_scores(scores, score_bits)
    bias = np.zeros_like(scores) if bias is None else np.asarray(bias, np.int64)
    keys = len(scores)
    beats = []
    for start in range(0, keys, lanes):
        part = slice(start, min(start + lanes, keys))
        n = part.stop - part.start
        beats.append((pack(scores[part], score_bits), pack(bias[part], bias_bits), (1 << n) - 1,
                      int(part.stop == keys)))
    return beats


def beat_codes(words: list[tuple[int, int]], lanes: int) -> np.ndarray:
    """The codes of the kept lanes of output beats (codes word, keep mask), in order."""
    out = []
    for codes, keep in words:
        for i in range(lanes):
            if keep >> i & 1:
                out.append(codes >> (i * CODE_BITS) & ((1 << CODE_BITS) - 1))
    return np.array(out, np.int64)
