"""Rows of scores as the softmax unit's input beats, and its output beats back as codes (numpy only)."""

from __future__ import annotations

import numpy as np

from .unit import CODE_BITS


def _pack(values, bits: int) -> int:
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    return word


def row_beats(scores: np.ndarray, bias: np.ndarray | None, lanes: int, score_bits: int,
              bias_bits: int) -> list[tuple[int, int, int, int]]:
    """(scores word, bias word, keep mask, last) per beat of one row of K keys; lanes past K are not keys."""
    scores = np.asarray(scores, np.int64)
    limit = 1 << (score_bits - 1)
    if scores.size and (int(scores.max()) >= limit or int(scores.min()) < -limit):
        raise ValueError(f"a score of {int(np.abs(scores).max())} does not fit the unit's {score_bits}-bit input")
    bias = np.zeros_like(scores) if bias is None else np.asarray(bias, np.int64)
    keys = len(scores)
    beats = []
    for start in range(0, keys, lanes):
        part = slice(start, min(start + lanes, keys))
        n = part.stop - part.start
        beats.append((_pack(scores[part], score_bits), _pack(bias[part], bias_bits), (1 << n) - 1,
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
