"""Integer kernels: the arithmetic the accelerator performs, on integer codes only.

Every function here takes and returns int64 arrays and is exact. Three input encodings reach a GEMM
(the bundle's ``input.format``):

    uniform   d = code - z                                   one partial sum
    cag       d = code - z[g(c)]                             one partial sum per channel group g
    hluq      log codes 1..L: 2^(code-1) (a shift);          two partial sums, log and uniform,
              uniform codes L+1..: 2^(L-1) and (code - L)    (code 0 contributes nothing)

Partial sums are combined with integer group multipliers (``group_multiplier``: each group's unit as a
fixed-point multiple of the smallest, m_g = round(2^F u_g / u_min) >= 2^F), so every layer ends in one
accumulator with one real unit per output channel, which the fixed-point requantizer
(``arith.requantize``) turns into codes.

AGQ attention probabilities enter A.V as ``lut[code mod tau] << (Q - code // tau)``: a tau-entry LUT
for the fractional power of two and a shift for the integer part, with Q the module's largest shift.
Codes whose shift exceeds Q (below 2^-Q of the largest level) and the zero code contribute nothing.
"""

from __future__ import annotations

import numpy as np

from .arith import MAX_ACC_BITS

# float64 represents every integer below 2^53 exactly, so a BLAS product whose every partial sum is
# bounded below that is exact; accumulators are limited to MAX_ACC_BITS (47) anyway.
assert MAX_ACC_BITS < 53


def _bound_bits(a: np.ndarray, b: np.ndarray, terms: int) -> int:
    amax = int(np.abs(a).max()) if a.size else 0
    bmax = int(np.abs(b).max()) if b.size else 0
    return (amax * bmax * terms).bit_length()


def int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact a @ b for int64 operands (a [..., n, k], b [..., k, m])."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    bits = _bound_bits(a, b, a.shape[-1])
    if bits > MAX_ACC_BITS:
        raise OverflowError(f"integer product needs {bits} accumulator bits (limit {MAX_ACC_BITS})")
    return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)


def signed_weight(codes: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """Weight codes (unsigned, per-output-channel zero point on axis 0) as signed integers."""
    zp = np.asarray(zero_point, np.int64).reshape((-1,) + (1,) * (codes.ndim - 1))
    return codes.astype(np.int64) - zp


def hluq_terms(codes: np.ndarray, log_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """(log-path operand, uniform-path operand) of HLUQ codes; see the module docstring."""
    codes = codes.astype(np.int64)
    top = np.int64(1) << (log_levels - 1)
    log_term = np.where(codes > log_levels, top, np.where(codes >= 1, np.int64(1) << np.maximum(codes - 1, 0), 0))
    uni_term = np.where(codes > log_levels, codes - log_levels, 0)
    return log_term, uni_term


def linear_partials(codes: np.ndarray, weight: np.ndarray, fmt: str, *, zero_point=None, groups=None,
                    log_levels: int | None = None) -> list[np.ndarray]:
    """Partial accumulators [..., O] of x @ weight.T, one per input group (``weight`` signed [O, C])."""
    codes = np.asarray(codes, np.int64)
    wt = weight.T
    if fmt == "uniform":
        return [int_matmul(codes - int(zero_point), wt)]
    if fmt == "cag":
        groups = np.asarray(groups)
        d = codes - np.asarray(zero_point, np.int64)[groups]
        return [int_matmul(d[..., groups == g], wt[groups == g]) for g in range(len(zero_point))]
    if fmt == "hluq":
        log_term, uni_term = hluq_terms(codes, log_levels)
        return [int_matmul(log_term, wt), int_matmul(uni_term, wt)]
    raise ValueError(f"unknown input format '{fmt}'")


def combine_partials(partials: list[np.ndarray], multipliers: np.ndarray) -> np.ndarray:
    """sum_g m_g * P_g: one accumulator in the units of the finest group scale (see module docstring)."""
    acc = np.zeros_like(partials[0])
    for p, m in zip(partials, np.asarray(multipliers, np.int64)):
        acc = acc + p * m
    bits = int(np.abs(acc).max()).bit_length() if acc.size else 0
    if bits > MAX_ACC_BITS:
        raise OverflowError(f"combined accumulator needs {bits} bits (limit {MAX_ACC_BITS})")
    return acc


def _conv_taps(codes: np.ndarray, zero_point: int, kernel: tuple[int, int], stride: int, padding: int):
    """Zero-centred, padded operand and, per kernel tap (i, j), its strided view [B, C, Ho, Wo].

    Padding is the zero point in code space, so it contributes exact zeros."""
    d = np.asarray(codes, np.int64) - int(zero_point)
    if padding:
        d = np.pad(d, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    kh, kw = kernel
    ho, wo = (d.shape[2] - kh) // stride + 1, (d.shape[3] - kw) // stride + 1
    return {(i, j): d[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] for i in range(kh) for j in range(kw)}


def conv2d_partial(codes: np.ndarray, zero_point: int, weight: np.ndarray, stride: int, padding: int,
                   groups: int) -> np.ndarray:
    """Integer conv of uniform codes [B, C, H, W] with signed weight [O, C/groups, kh, kw]."""
    o, cg, kh, kw = weight.shape
    taps = _conv_taps(codes, zero_point, (kh, kw), stride, padding)
    b, _, ho, wo = taps[0, 0].shape
    # patches[b, c, i, j, y, x] = d[b, c, y*stride + i, x*stride + j]
    patches = np.stack([np.stack([taps[i, j] for j in range(kw)], 2) for i in range(kh)], 2)
    og = o // groups
    out = []
    for g in range(groups):
        p = patches[:, g * cg:(g + 1) * cg].transpose(0, 4, 5, 1, 2, 3).reshape(b, ho * wo, cg * kh * kw)
        wg = weight[g * og:(g + 1) * og].reshape(og, cg * kh * kw)
        out.append(int_matmul(p, wg.T))
    return np.concatenate(out, axis=-1).transpose(0, 2, 1).reshape(b, o, ho, wo)


def depthwise_conv2d_partial(codes: np.ndarray, zero_point: int, weight: np.ndarray, stride: int,
                             padding: int) -> np.ndarray:
    """``conv2d_partial`` with groups = channels, without a per-channel matmul loop."""
    taps = _conv_taps(codes, zero_point, weight.shape[2:], stride, padding)
    return sum(view * weight[:, 0, i, j][None, :, None, None] for (i, j), view in taps.items())


def attention_scores(q_codes: np.ndarray, q_zero: int, k_codes: np.ndarray, k_zero: int) -> np.ndarray:
    """(q - z_q) @ (k - z_k)^T per head: [..., Nq, d] x [..., Nk, d] -> [..., Nq, Nk]."""
    q = np.asarray(q_codes, np.int64) - int(q_zero)
    k = np.asarray(k_codes, np.int64) - int(k_zero)
    return int_matmul(q, np.swapaxes(k, -1, -2))


def agq_weights(codes: np.ndarray, tau: int, lut: np.ndarray, max_shift: int, bits: int) -> np.ndarray:
    """Integer A.V operand of AGQ codes: lut[code % tau] << (max_shift - code // tau)."""
    codes = np.asarray(codes, np.int64)
    shift = codes // tau
    keep = (codes != 2**bits - 1) & (shift <= max_shift)
    lut = np.asarray(lut, np.int64)
    return np.where(keep, lut[codes % tau] << np.clip(max_shift - shift, 0, None), 0)


def attention_values(prob_weights: np.ndarray, v_codes: np.ndarray, v_zero: int) -> np.ndarray:
    """A.V with integer probability operands: [..., Nq, Nk] x [..., Nk, d] -> [..., Nq, d]."""
    return int_matmul(prob_weights, np.asarray(v_codes, np.int64) - int(v_zero))
