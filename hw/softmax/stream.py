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


def lane_beats(scores: np.ndarray, bias: np.ndarray | None, lanes: int) -> dict[str, np.ndarray]:
    """Rows of scores [rows, keys] (and their bias) as beats: per-lane arrays [beats, lanes], each row's last
    beat padded with lanes that are not keys, its ``keep`` mask and ``last`` flag per beat."""
    scores = np.asarray(scores, np.int64)
    rows, keys = scores.shape
    n = -(-keys // lanes)
    pad = n * lanes - keys

    def lanes_of(a):
        return np.pad(np.asarray(a, np.int64), ((0, 0), (0, pad))).reshape(rows * n, lanes)

    keep = np.tile([(1 << lanes) - 1] * (n - 1) + [(1 << (lanes - pad)) - 1], rows)
    last = np.tile([0] * (n - 1) + [1], rows)
    return {"scores": lanes_of(scores), "bias": lanes_of(np.zeros_like(scores) if bias is None else bias),
            "keep": keep.astype(np.int64), "last": last.astype(np.int64)}


def row_beats(scores: np.ndarray, bias: np.ndarray | None, lanes: int, score_bits: int,
              bias_bits: int) -> list[tuple[int, int, int, int]]:
    """(scores word, bias word, keep mask, last) per beat of one row of K keys; lanes past K are not keys."""
    scores = checked_scores(scores, score_bits)
    b = lane_beats(scores[None], None if bias is None else np.asarray(bias)[None], lanes)
    return [(pack(s, score_bits), pack(z, bias_bits), int(k), int(e))
            for s, z, k, e in zip(b["scores"], b["bias"], b["keep"], b["last"])]


def beat_codes(words: list[tuple[int, int]], lanes: int) -> np.ndarray:
    """The codes of the kept lanes of output beats (codes word, keep mask), in order."""
    out = []
    for codes, keep in words:
        for i in range(lanes):
            if keep >> i & 1:
                out.append(codes >> (i * CODE_BITS) & ((1 << CODE_BITS) - 1))
    return np.array(out, np.int64)
