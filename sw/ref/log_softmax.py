"""The attention's softmax and its AGQ encoding in integer arithmetic, as an on-chip unit would compute it.

The host step (``layers.probabilities_from_scores``) computes p = softmax(logits) in float64 and encodes
code = round(-tau log2(p / scale)). In the log domain that is, per key j of a row,

    -log2(p_j / scale) = d_j + log2(sum_k 2^-d_k) + log2(scale),   d_j = (max_k l_k - l_j) log2(e)

so the codes need no division and no exponential of their own: one shift-and-LUT 2^-d per key for the
row's sum, one logarithm per row. In fixed point with F fraction bits (units of 2^-F in log2):

    t_j  = ((S_j * M + 2^(shift-1)) >> shift) + B_j     logit in log2 units (M, shift: s_q s_k logit_scale
                                                       log2(e) 2^F as a bundle multiplier; B: TinyViT's
                                                       per-head bias, rounded to the same units)
    d_j  = max_k t_k - t_j                             >= 0
    e_j  = EXP[d_j mod 2^F] >> (d_j div 2^F)           EXP[f] = round(2^E 2^(-f / 2^F))
    sum  = sum_k e_k                                   >= 2^E (the row's maximum gives 2^E)
    L    = n 2^F + LOG[mantissa] + OFFSET             n = floor(log2 sum), mantissa: the G bits after
                                                       the leading one, LOG[i] = round(2^F log2(1 + i/2^G)),
                                                       OFFSET = round(2^F (log2(scale) - E))
    code = clamp((tau (d_j + L) + 2^(F-1)) >> F, 0, zero code)

Codes at or past the all-ones code are the zero probability, as ``host.agq_encode`` writes them. SAM
ViT's relative-position term is a float function of the query, not part of this definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..bundle import AgqCodes, AttentionLayer, BundleError
from ..bundle.fixed_point import quantize_multiplier
from .arith import requantize
from .steps import IntegerLayers

FRAC_BITS = 10    # F: 1/1024 of a log2 step; AGQ's finest step (tau = 4) is 256 of them
EXP_BITS = 20     # E: 2^-d to 20 bits; a row of 4096 keys sums below 2^33
LOG_BITS = 10     # G: mantissa bits the logarithm's LUT reads
T_LIMIT = 1 << 40   # logits are clamped to +-2^40 (2^30 log2 steps at F = 10) before the bias


def exp_table(frac_bits: int = FRAC_BITS, exp_bits: int = EXP_BITS) -> np.ndarray:
    """EXP[f] = round(2^E 2^(-f / 2^F)), f = 0 .. 2^F - 1 (int64): the same for every layer."""
    return np.round(2.0**exp_bits * 2.0 ** (-np.arange(2**frac_bits) / 2**frac_bits)).astype(np.int64)


def log_table(frac_bits: int = FRAC_BITS, log_bits: int = LOG_BITS) -> np.ndarray:
    """LOG[i] = round(2^F log2(1 + i / 2^G)), i = 0 .. 2^G - 1 (int64): the same for every layer."""
    return np.round(2**frac_bits * np.log2(1 + np.arange(2**log_bits) / 2**log_bits)).astype(np.int64)


@dataclass(frozen=True)
class LogSoftmax:
    """One attention layer's integer softmax into AGQ codes: its constants and LUTs."""

    name: str
    multiplier: int
    shift: int
    bias: np.ndarray | None       # int64 [heads, Nq, Nk] in 2^-F log2 units, or None
    tau: int
    zero_code: int
    offset: int
    exp_lut: np.ndarray           # int64 [2^F]
    log_lut: np.ndarray           # int64 [2^G]
    frac_bits: int = FRAC_BITS
    exp_bits: int = EXP_BITS
    log_bits: int = LOG_BITS

    @classmethod
    def of(cls, layer: AttentionLayer, frac_bits: int = FRAC_BITS, exp_bits: int = EXP_BITS,
           log_bits: int = LOG_BITS) -> "LogSoftmax":
        if not (1 <= frac_bits <= 16 and 1 <= log_bits <= exp_bits <= 30):
            raise ValueError(f"{layer.name}: unsupported integer softmax widths F={frac_bits}, E={exp_bits}, "
                             f"G={log_bits} (need 1 <= F <= 16 and 1 <= G <= E <= 30)")
        sm = layer.softmax
        if not isinstance(sm, AgqCodes):
            raise BundleError(f"{layer.name}: the integer softmax writes AGQ codes, this layer's post-softmax codes "
                              f"are {sm.TAG}")
        if layer.rel_pos_h is not None:
            raise BundleError(f"{layer.name}: SAM ViT's relative-position term is a float function of the query; "
                              "the integer softmax takes TinyViT's bias or none")
        unit = layer.q.scale * layer.k.scale * layer.logit_scale / math.log(2) * 2**frac_bits
        multiplier, shift = quantize_multiplier(unit)
        bias = None
        if layer.attention_bias is not None:
            bias = np.round(layer.attention_bias.astype(np.float64) / math.log(2) * 2**frac_bits).astype(np.int64)
        exp_lut, log_lut = exp_table(frac_bits, exp_bits), log_table(frac_bits, log_bits)
        offset = round(2**frac_bits * (math.log2(sm.scale) - exp_bits))
        return cls(layer.name, multiplier, shift, bias, sm.tau, sm.zero_code, offset, exp_lut, log_lut, frac_bits,
                   exp_bits, log_bits)

    def logits(self, scores: np.ndarray) -> np.ndarray:
        """t [..., heads, Nq, Nk]: the integer scores as logits in 2^-F log2 units."""
        t = requantize(scores, self.multiplier, self.shift, 0, -T_LIMIT, T_LIMIT)
        if self.bias is not None:
            if self.bias.shape != t.shape[-3:]:
                raise BundleError(f"{self.name}: scores of shape {list(t.shape)} do not match the bias "
                                  f"{list(self.bias.shape)}")
            t = t + self.bias
        return t

    def codes(self, scores: np.ndarray) -> np.ndarray:
        """AGQ codes [..., heads, Nq, Nk] of the post-softmax map from integer scores (module docstring)."""
        f = self.frac_bits
        t = self.logits(np.asarray(scores, np.int64))
        d = t.max(axis=-1, keepdims=True) - t
        e = self.exp_lut[d & (2**f - 1)] >> np.minimum(d >> f, 63)
        total = e.sum(axis=-1, keepdims=True)
        n = np.frexp(total.astype(np.float64))[1].astype(np.int64) - 1     # exact: total < 2^53
        mantissa = ((total << self.log_bits) >> n) - 2**self.log_bits
        row = n * 2**f + self.log_lut[mantissa] + self.offset
        code = (self.tau * (d + row) + 2 ** (f - 1)) >> f
        return np.clip(code, 0, self.zero_code)


class LogSoftmaxLayers(IntegerLayers):
    """This reference with every attention's softmax computed by ``LogSoftmax`` instead of the host's
    float step (``Steps`` takes it as ``layers``)."""

    def __init__(self, frac_bits: int = FRAC_BITS, exp_bits: int = EXP_BITS, log_bits: int = LOG_BITS):
        self.bits = dict(frac_bits=frac_bits, exp_bits=exp_bits, log_bits=log_bits)
        self._units: dict[str, LogSoftmax] = {}

    def unit(self, layer: AttentionLayer) -> LogSoftmax:
        if layer.name not in self._units:
            self._units[layer.name] = LogSoftmax.of(layer, **self.bits)
        return self._units[layer.name]

    def probabilities(self, layer: AttentionLayer, scores: np.ndarray, q: np.ndarray) -> np.ndarray:
        return self.unit(layer).codes(scores)
