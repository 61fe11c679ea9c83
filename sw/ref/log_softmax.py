"""The attention's softmax and its AGQ encoding in integer arithmetic, as an on-chip unit would compute it.

The host step (``layers.probabilities_from_scores``) computes p = softmax(logits) in float64 and encodes
code = round(-tau log2(p / scale)). In the log domain that is, per key j of a row,

    -log2(p_j / scale) = d_j + log2(sum_k 2^-d_k) + log2(scale),   d_j = (max_k l_k - l_j) log2(e)

so the codes need no division and no exponential of their own: one shift-and-LUT 2^-d per key for the
row's sum, one logarithm per row. In fixed point with F fraction bits (units of 2^-F in log2):

    t_j  = clamp((S_j * M + 2^(shift-1)) >> shift) + B_j   logit in log2 units (M, shift: s_q s_k logit_scale
                                                       log2(e) 2^F as a bundle multiplier; B: TinyViT's
                                                       per-head bias, rounded to the same units, or SAM
                                                       ViT's relative-position term, below)
    d_j  = max_k t_k - t_j                             >= 0
    e_j  = EXP[d_j mod 2^F] >> (d_j div 2^F)           EXP[f] = round(2^E 2^(-f / 2^F))
    sum  = sum_k e_k                                   >= 2^E (the row's maximum gives 2^E)
    L    = n 2^F + LOG[mantissa] + OFFSET             n = floor(log2 sum), mantissa: the G bits after
                                                       the leading one, LOG[i] = round(2^F log2(1 + i/2^G)),
                                                       OFFSET = round(2^F (log2(scale) - E))
    code = clamp((tau (d_j + L) + 2^(F-1)) >> F, 0, zero code)

Codes at or past the all-ones code are the zero probability, as ``host.agq_encode`` writes them.

SAM ViT's decomposed relative-position term adds, per query, q_hat . R_h[relative height] and
q_hat . R_w[relative width] to the logits (q_hat: the dequantized query). In integer form each table is
cut to signed REL_BITS codes (one scale per table, its largest entry at the top code), each sum is an
integer dot product of the query codes (less their zero point) with table codes, requantized to 2^-F log2
units by its own multiplier (s_q s_R log2(e) 2^F), and B_j is the height term of the key's row plus the
width term of its column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..bundle import AgqCodes, AttentionLayer, BundleError
from ..bundle.fixed_point import quantize_multiplier
from .arith import requantize
from .host import relative_table
from .steps import IntegerLayers

FRAC_BITS = 10    # F: 1/1024 of a log2 step; AGQ's finest step (tau = 4) is 256 of them
EXP_BITS = 20     # E: 2^-d to 20 bits; a row of 4096 keys sums below 2^33
LOG_BITS = 10     # G: mantissa bits the logarithm's LUT reads
T_LIMIT = 1 << 40   # logits are clamped to +-2^40 (2^30 log2 steps at F = 10) before the bias
REL_BITS = 16       # SAM ViT's relative-position tables as signed 16-bit codes


def exp_table(frac_bits: int = FRAC_BITS, exp_bits: int = EXP_BITS) -> np.ndarray:
    """EXP[f] = round(2^E 2^(-f / 2^F)), f = 0 .. 2^F - 1 (int64): the same for every layer."""
    return np.round(2.0**exp_bits * 2.0 ** (-np.arange(2**frac_bits) / 2**frac_bits)).astype(np.int64)


def log_table(frac_bits: int = FRAC_BITS, log_bits: int = LOG_BITS) -> np.ndarray:
    """LOG[i] = round(2^F log2(1 + i / 2^G)), i = 0 .. 2^G - 1 (int64): the same for every layer."""
    return np.round(2**frac_bits * np.log2(1 + np.arange(2**log_bits) / 2**log_bits)).astype(np.int64)


@dataclass(frozen=True)
class RelativePosition:
    """SAM ViT's decomposed relative-position term in integer form (module docstring), for one layer."""

    tables: tuple[np.ndarray, np.ndarray]       # int64 [2 side - 1, d]: height, width
    multipliers: tuple[int, int]
    shifts: tuple[int, int]
    q_zero: int

    @classmethod
    def of(cls, layer: AttentionLayer, frac_bits: int) -> "RelativePosition":
        tables, multipliers, shifts = [], [], []
        for table in (layer.rel_pos_h, layer.rel_pos_w):
            table = np.asarray(table, np.float64)
            top = float(np.abs(table).max())
            scale = top / (2 ** (REL_BITS - 1) - 1) if top > 0 else 1.0
            tables.append(np.round(table / scale).astype(np.int64))
            m, sh = quantize_multiplier(layer.q.scale * scale / math.log(2) * 2**frac_bits)
            multipliers.append(m)
            shifts.append(sh)
        return cls(tuple(tables), tuple(multipliers), tuple(shifts), layer.q.zero_point)

    def terms(self, q_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each query's height and width terms [..., N, s] (int64, 2^-F log2 units) from the query codes
        [..., N, d] of a square grid of N = s^2 positions: query i's logit of the key at (y, x) gains
        height[i, y] + width[i, x]."""
        q = np.asarray(q_codes, np.int64) - self.q_zero
        n, dim = q.shape[-2:]
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"relative-position term for {n} queries: not a square grid")
        grid = q.reshape(*q.shape[:-2], side, side, dim)
        terms = []
        for axis, (table, m, sh) in enumerate(zip(self.tables, self.multipliers, self.shifts)):
            rows = relative_table(side, side, table)                      # [side, side, d]
            pattern = "...hwc,hkc->...hwk" if axis == 0 else "...hwc,wkc->...hwk"
            term = requantize(np.einsum(pattern, grid, rows), m, sh, 0, -T_LIMIT, T_LIMIT)
            terms.append(term.reshape(*q.shape[:-2], n, side))
        return terms[0], terms[1]

    def bias(self, q_codes: np.ndarray) -> np.ndarray:
        """B [..., N, N] in 2^-F log2 units from the query codes [..., N, d] of a square grid of N positions."""
        return relative_bias(*self.terms(q_codes))

    def term_bound(self, q_bits: int) -> int:
        """The largest |term| any query codes of ``q_bits`` bits can give (for a unit's term width)."""
        q_top = max(self.q_zero, (1 << q_bits) - 1 - self.q_zero)
        bound = 0
        for table, m, sh in zip(self.tables, self.multipliers, self.shifts):
            dot = q_top * int(np.abs(table).sum(axis=1).max())
            bound = max(bound, int(requantize(np.array([dot]), m, sh, 0, -T_LIMIT, T_LIMIT)[0]))
        return bound


def relative_bias(height: np.ndarray, width: np.ndarray) -> np.ndarray:
    """B [..., n, s^2] from queries' height and width terms [..., n, s] (``RelativePosition.terms``): the key at
    (y, x), key index y s + x, gains height[y] + width[x]."""
    n, side = height.shape[-2:]
    total = height[..., :, :, None] + width[..., :, None, :]
    return total.reshape(*height.shape[:-2], n, side * side)


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
    relative: RelativePosition | None = None
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
        unit = layer.q.scale * layer.k.scale * layer.logit_scale / math.log(2) * 2**frac_bits
        multiplier, shift = quantize_multiplier(unit)
        bias = None
        if layer.attention_bias is not None:
            bias = np.round(layer.attention_bias.astype(np.float64) / math.log(2) * 2**frac_bits).astype(np.int64)
        exp_lut, log_lut = exp_table(frac_bits, exp_bits), log_table(frac_bits, log_bits)
        offset = round(2**frac_bits * (math.log2(sm.scale) - exp_bits))
        relative = RelativePosition.of(layer, frac_bits) if layer.rel_pos_h is not None else None
        return cls(layer.name, multiplier, shift, bias, sm.tau, sm.zero_code, offset, exp_lut, log_lut, relative,
                   frac_bits, exp_bits, log_bits)

    def logits(self, scores: np.ndarray, q_codes: np.ndarray | None = None) -> np.ndarray:
        """t [..., heads, Nq, Nk]: the integer scores as logits in 2^-F log2 units (SAM ViT's relative-position
        term reads the query codes [..., heads, Nq, d])."""
        t = requantize(scores, self.multiplier, self.shift, 0, -T_LIMIT, T_LIMIT)
        if self.relative is not None:
            if q_codes is None:
                raise BundleError(f"{self.name}: the relative-position term needs the query codes")
            t = t + self.relative.bias(q_codes)
        if self.bias is not None:
            if self.bias.shape != t.shape[-3:]:
                raise BundleError(f"{self.name}: scores of shape {list(t.shape)} do not match the bias "
                                  f"{list(self.bias.shape)}")
            t = t + self.bias
        return t

    def codes(self, scores: np.ndarray, q_codes: np.ndarray | None = None) -> np.ndarray:
        """AGQ codes [..., heads, Nq, Nk] of the post-softmax map from integer scores (and, for SAM ViT, the
        query codes) (module docstring)."""
        f = self.frac_bits
        t = self.logits(np.asarray(scores, np.int64), q_codes)
        d = t.max(axis=-1, keepdims=True) - t
        e = self.exp_lut[d & (2**f - 1)] >> np.minimum(d >> f, 63)
        total = e.sum(axis=-1, keepdims=True)
        n = np.frexp(total.astype(np.float64))[1].astype(np.int64) - 1     # exact: total < 2^53
        mantissa = ((total << self.log_bits) >> n) - 2**self.log_bits
        row = n * 2**f + self.log_lut[mantissa] + self.offset
        code = (self.tau * (d + row) + 2 ** (f - 1)) >> f
        return np.clip(code, 0, self.zero_code)


def softmax_codes(scores: np.ndarray, multiplier: int, shift: int, tau: int, zero_code: int, offset: int,
                  bias: np.ndarray | None = None) -> np.ndarray:
    """``LogSoftmax.codes`` of rows of integer scores (with ``bias`` in 2^-F log2 units added to their logits,
    of the scores' shape), from a layer's constants alone (what the core's SOFTMAX instruction carries), at
    the default F, E, G."""
    unit = LogSoftmax("softmax", multiplier, shift, bias, tau, zero_code, offset, exp_table(), log_table())
    return unit.codes(scores)


def grid_table(bias: np.ndarray) -> np.ndarray | None:
    """TinyViT's attention bias [heads, N, N] (2^-F log2 units) as its per-head tables T [heads, s, s] with
    bias[h, i, j] = T[h, |y_i - y_j|, |x_i - x_j|] on the s x s grid of N = s^2 positions (row-major), or
    None when the bias has no such form."""
    heads, n, n_keys = bias.shape
    side = math.isqrt(n)
    if n != n_keys or side * side != n:
        return None
    table = bias[:, 0, :].reshape(heads, side, side)
    if not all(np.array_equal(b, grid_bias(t, 0, n)) for b, t in zip(bias, table)):
        return None
    return table


def grid_bias(table: np.ndarray, first_query: int, n_rows: int) -> np.ndarray:
    """The bias [n_rows, s^2] of the queries first_query .. first_query + n_rows - 1 of one head's grid
    table T [s, s] (``grid_table``)."""
    side = table.shape[0]
    qy, qx = np.divmod(first_query + np.arange(n_rows), side)
    ky, kx = np.divmod(np.arange(side * side), side)
    return table[np.abs(qy[:, None] - ky[None, :]), np.abs(qx[:, None] - kx[None, :])]


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
        return self.unit(layer).codes(scores, q)
