"""Host steps: the float operations that stay off the accelerator, with codes in and codes out.

The accelerator hands the host integer accumulators or codes with their real units; the host computes
in float64 and encodes its result for the next integer layer with that layer's input quantizer. The
encoders repeat the fake-quant formulas of ``sw/quant`` (uniform: round half to even, as torch.round;
CAG: uniform with each channel's group scale and zero point; AGQ: the all-ones code is zero; HLUQ: the
code layout of ``sw/quant/hluq.py``).
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def uniform_encode(x: np.ndarray, scale, zero_point, bits: int) -> np.ndarray:
    return np.clip(np.round(x / scale) + zero_point, 0, 2**bits - 1).astype(np.int64)


def cag_encode(x: np.ndarray, group_scale: np.ndarray, group_zero_point: np.ndarray, channel_group: np.ndarray,
               bits: int) -> np.ndarray:
    """Channels (last axis) encoded with their group's scale and zero point, as ``CAGQuantizer.codes``."""
    groups = np.asarray(channel_group, np.int64)
    scale = np.asarray(group_scale, np.float64)[groups]
    zero = np.asarray(group_zero_point, np.int64)[groups]
    return uniform_encode(x, scale, zero, bits)


def agq_encode(p: np.ndarray, scale: float, tau: int, bits: int) -> np.ndarray:
    zero_code = 2**bits - 1
    with np.errstate(divide="ignore"):
        raw = np.round(-tau * np.log2(np.maximum(p, 1e-30) / scale))
    codes = np.maximum(raw, 0)
    return np.where((raw >= zero_code) | (p <= 0), zero_code, codes).astype(np.int64)


def hluq_encode(x: np.ndarray, m: float, s_log: float, s_uni: float, bits: int, log_levels: int) -> np.ndarray:
    shifted = x - m
    c = np.round(-np.log2(np.maximum(shifted, 1e-20) / s_log))
    log_code = np.where(c >= log_levels, 0, log_levels - np.maximum(c, 0))
    u = np.clip(np.round((shifted - s_log) / s_uni), 0, 2**bits - log_levels - 1)
    return np.where(shifted <= s_log, log_code, log_levels + u).astype(np.int64)


def relative_table(q_size: int, k_size: int, rel_pos: np.ndarray) -> np.ndarray:
    """The table's row for each (query, key) position pair [q_size, k_size, d] (SAM's get_rel_pos)."""
    if rel_pos.shape[0] != 2 * max(q_size, k_size) - 1:
        raise ValueError(f"relative-position table of length {rel_pos.shape[0]} does not match {q_size}x{k_size} "
                         "(resized tables are not supported)")
    q_coords = np.arange(q_size)[:, None] * max(k_size / q_size, 1.0)
    k_coords = np.arange(k_size)[None, :] * max(q_size / k_size, 1.0)
    relative = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[relative.astype(np.int64)]


def add_decomposed_rel_pos(logits: np.ndarray, q: np.ndarray, rel_pos_h: np.ndarray, rel_pos_w: np.ndarray,
                           size: tuple[int, int]) -> np.ndarray:
    """SAM ViT's decomposed relative-position term, from the dequantized q [B, H*W, d] (square q/k grids)."""
    h, w = size
    rh, rw = relative_table(h, h, rel_pos_h), relative_table(w, w, rel_pos_w)
    b, _, dim = q.shape
    r_q = q.reshape(b, h, w, dim)
    rel_h = np.einsum("bhwc,hkc->bhwk", r_q, rh)
    rel_w = np.einsum("bhwc,wkc->bhwk", r_q, rw)
    out = logits.reshape(b, h, w, h, w) + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
    return out.reshape(b, h * w, h * w)
