"""Register widths of the arithmetic units, derived from operand bit widths and reduction lengths.

Every accumulator is sized from the largest magnitude its inputs can produce, so no input that fits
the unit's ports can overflow it; the bundle's actual weights and codes are never consulted (the same
hardware must accept any layer of that shape). The bounds, with all codes and zero points unsigned
k-bit values in [0, 2^k - 1] (what the quantizers produce: zero points are clamped into the code range):

    operand  d = code - z              |d| <= 2^a - 1                      (a: activation/value bits)
    weight   w = code_w - z_w          |w| <= 2^b - 1                      (b: weight bits)
    uniform / CAG term   d * w         |t| <= (2^a - 1)(2^b - 1)
    HLUQ log term        w << (L - 1)  |t| <= (2^b - 1) 2^(L-1)            (k-bit codes, L log levels)
    HLUQ uniform term    (c - L) w     |t| <= (2^b - 1)(2^k - 1 - L)
    AGQ term  (lut[r] d) << Q          |t| <= max(lut) (2^a - 1) 2^Q
    partial   n terms                  |P| <= n |t|max
    combined  bias + sum_g m_g P_g     |acc| <= m_max * (sum over groups of |P_g|max) + 2^(B-1)

with m_max = 2^M - 1 (M: multiplier port bits) and B the signed bias port width. CAG groups partition
the n input channels, so their partial bounds sum to n |t|max; HLUQ uniform codes feed both paths,
so the two bounds add. Each bound is tight: the worst-case inputs reach it exactly (the tests drive
them), and a signed register of ``signed_bits(-bound, bound)`` bits is the narrowest that holds it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from sw.bundle import AgqCodes, AttentionLayer, CagCodes, GemmLayer, HluqCodes
from sw.bundle.fixed_point import MULTIPLIER_BITS, SHIFT_MAX, SHIFT_MIN



def signed_bits(lo: int, hi: int) -> int:
    """Narrowest two's complement width holding every integer in [lo, hi]."""
    bits = 1
    while lo < -(1 << (bits - 1)) or hi > (1 << (bits - 1)) - 1:
        bits += 1
    return bits


def magnitude_bits(bound: int) -> int:
    """Signed width of [-bound, bound]."""
    return signed_bits(-bound, bound)


def bits_of_values(values) -> int:
    """Signed width of a set of integers (e.g. a layer's bias_acc), at least 1."""
    values = [int(v) for v in values]
    return signed_bits(min(values, default=0), max(values, default=0))


def code_max(bits: int) -> int:
    return (1 << bits) - 1


class CombineWidths(ABC):
    """Widths shared by the units that end in ``bias + sum_g m_g P_g`` (grouped MAC, HLUQ PE).

    Subclasses give groups, mult_bits (group multiplier port), bias_bits (signed bias port) and the
    three bounds below."""

    groups: int
    mult_bits: int
    bias_bits: int

    @property
    @abstractmethod
    def term_max(self) -> int:
        """Largest |term| entering any one partial in one cycle."""

    @property
    @abstractmethod
    def partial_max(self) -> int:
        """Largest |P_g| of any single group."""

    @property
    @abstractmethod
    def partial_sum_max(self) -> int:
        """Largest sum over groups of |P_g| for one output."""

    @property
    def term_bits(self) -> int:
        return magnitude_bits(self.term_max)

    @property
    def partial_bits(self) -> int:
        return magnitude_bits(self.partial_max)

    @property
    def acc_max(self) -> int:
        return self.partial_sum_max * code_max(self.mult_bits) + (1 << (self.bias_bits - 1))

    @property
    def acc_bits(self) -> int:
        return magnitude_bits(self.acc_max)


@dataclass(frozen=True)
class MacWidths(CombineWidths):
    """Uniform (groups = 1) or CAG inputs: terms (code - z_g) * w over ``terms`` input channels."""

    act_bits: int
    weight_bits: int
    terms: int
    groups: int
    mult_bits: int
    bias_bits: int

    @property
    def term_max(self) -> int:
        return code_max(self.act_bits) * code_max(self.weight_bits)

    @property
    def partial_max(self) -> int:
        # Any one group may own every channel (the channel labels are runtime data).
        return self.terms * self.term_max

    @property
    def partial_sum_max(self) -> int:
        return self.terms * self.term_max  # groups partition the channels


@dataclass(frozen=True)
class HluqWidths(CombineWidths):
    """HLUQ inputs: log partial (shifted weights) and uniform partial ((c - L) * w)."""

    act_bits: int
    log_levels: int
    weight_bits: int
    terms: int
    mult_bits: int
    bias_bits: int

    @property
    def groups(self) -> int:
        return 2

    def __post_init__(self):
        if not 1 <= self.log_levels <= code_max(self.act_bits):
            raise ValueError(f"log_levels {self.log_levels} outside 1..{code_max(self.act_bits)} "
                             f"for {self.act_bits}-bit codes")

    @property
    def uniform_max(self) -> int:
        """Largest uniform-path operand c - L."""
        return code_max(self.act_bits) - self.log_levels

    @property
    def log_term_max(self) -> int:
        return code_max(self.weight_bits) << (self.log_levels - 1)

    @property
    def uniform_term_max(self) -> int:
        return code_max(self.weight_bits) * self.uniform_max

    @property
    def term_max(self) -> int:
        return max(self.log_term_max, self.uniform_term_max)

    @property
    def partial_max(self) -> int:
        return self.terms * self.term_max

    @property
    def partial_sum_max(self) -> int:
        return self.terms * (self.log_term_max + self.uniform_term_max)  # c = 2^k - 1 feeds both


@dataclass(frozen=True)
class AgqWidths:
    act_bits: int
    tau: int
    lut: tuple[int, ...]
    max_shift: int
    value_bits: int
    terms: int

    def __post_init__(self):
        object.__setattr__(self, "lut", tuple(int(v) for v in self.lut))
        if self.tau not in (1, 2, 4) or len(self.lut) != self.tau:
            raise ValueError(f"AGQ needs tau in (1, 2, 4) with tau LUT entries, got tau={self.tau}, "
                             f"{len(self.lut)} entries")
        if min(self.lut) < 1:
            raise ValueError(f"AGQ LUT entries must be positive, got {self.lut}")

    @property
    def lut_bits(self) -> int:
        return max(1, max(self.lut).bit_length())

    @property
    def product_bits(self) -> int:
        """Signed width of lut[r] * d (before the shift)."""
        return magnitude_bits(max(self.lut) * code_max(self.value_bits))

    @property
    def term_max(self) -> int:
        return max(self.lut) * code_max(self.value_bits) << self.max_shift

    @property
    def term_bits(self) -> int:
        return magnitude_bits(self.term_max)

    @property
    def acc_max(self) -> int:
        return self.terms * self.term_max

    @property
    def acc_bits(self) -> int:
        return magnitude_bits(self.acc_max)


@dataclass(frozen=True)
class RequantWidths:
    """acc * M, floored by 2^(shift - 1), then rounded: (t + 1) >> 1, + zero point, clamp."""

    acc_bits: int
    q_min: int
    q_max: int

    @property
    def product_bits(self) -> int:
        # |acc| <= 2^(A-1), M < 2^31: |acc * M| < 2^(A+30).
        return self.acc_bits + MULTIPLIER_BITS

    @property
    def floored_bits(self) -> int:
        # shift - 1 >= SHIFT_MIN - 1 drops at least 16 bits of the product.
        return self.product_bits - (SHIFT_MIN - 1)

    @property
    def shift_bits(self) -> int:
        return SHIFT_MAX.bit_length()

    @property
    def zero_point_bits(self) -> int:
        # The zero point lies in the output range (quantizers clamp it there; host outputs use 0).
        return signed_bits(self.q_min, self.q_max)

    @property
    def out_signed(self) -> bool:
        return self.q_min < 0

    @property
    def out_bits(self) -> int:
        if self.out_signed:
            return signed_bits(self.q_min, self.q_max)
        return max(1, self.q_max.bit_length())


# ---- widths of a bundle layer ---------------------------------------------------------------------
# The bundle contract has already checked that every zero point lies in its code range, which the
# bounds above assume.

def gemm_widths(layer: GemmLayer) -> CombineWidths:
    """Widths of a linear/conv layer's MAC lane (uniform or CAG) or HLUQ PE."""
    fmt, weight_bits = layer.input, layer.weights.weight_bits
    mult_bits = max(int(m) for m in layer.group_multiplier).bit_length()
    bias_bits = bits_of_values(layer.bias_acc)
    if isinstance(fmt, HluqCodes):
        return HluqWidths(fmt.act_bits, fmt.log_levels, weight_bits, layer.reduction, mult_bits, bias_bits)
    groups = fmt.groups if isinstance(fmt, CagCodes) else 1
    return MacWidths(fmt.act_bits, weight_bits, layer.reduction, groups, mult_bits, bias_bits)


def attention_widths(layer: AttentionLayer, terms: int | None = None) -> AgqWidths:
    """Widths of an attention layer's AGQ A.V unit; ``terms`` defaults to the layer's max_keys."""
    sm = layer.softmax
    if not isinstance(sm, AgqCodes):
        raise ValueError(f"layer '{layer.name}' has no AGQ softmax")
    return AgqWidths(sm.act_bits, sm.tau, sm.lut, sm.max_shift, layer.v.act_bits,
                     int(terms if terms is not None else layer.max_keys))


def requant_widths(layer: GemmLayer | AttentionLayer, acc_bits: int | None = None) -> RequantWidths:
    """Requantizer of a layer's accumulator (width from the layer's MAC/PE/AGQ bound unless given)."""
    if acc_bits is None:
        acc_bits = attention_widths(layer).acc_bits if isinstance(layer, AttentionLayer) else gemm_widths(layer).acc_bits
    return RequantWidths(int(acc_bits), layer.output.q_min, layer.output.q_max)
