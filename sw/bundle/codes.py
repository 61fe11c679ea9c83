"""Code formats: how a layer's input, q/k/v, or post-softmax map is encoded as unsigned integer codes.

    uniform  x = scale * (code - zero_point)                                   one partial sum
    cag      x = group_scale[g] * (code - group_zero_point[g]), g = channel_group[c]   one per group
    hluq     0: x = m; 1..L: x = m + s_log 2^-(L - code); L+1..2^k-1: x = m + s_log + (code - L) s_uni
             two partial sums (log path, uniform path)
    agq      p = scale * 2^(-code / tau); code 2^k - 1 is an exact zero
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .fixed_point import CODE_BITS_MAX, CODE_BITS_MIN
from .record import Record, check_length, check_range, require, tensor, value

ACT_BITS_DOC = "code width k: codes are 0 .. 2^k - 1"


def code_max(bits: int) -> int:
    return (1 << bits) - 1


def _check_scale(scale: float, path: str) -> None:
    require(math.isfinite(scale) and scale > 0, path, f"must be positive and finite, got {scale}")


@dataclass(frozen=True, eq=False)
class CodeFormat(Record):
    TAG_KEY: ClassVar[str] = "format"
    act_bits: int = value(ACT_BITS_DOC)

    @property
    def partial_sums(self) -> int:
        """Partial accumulators a GEMM with this input keeps before combining them."""
        return 1

    def check(self) -> None:
        require(CODE_BITS_MIN <= self.act_bits <= CODE_BITS_MAX, "act_bits",
                f"unsupported code width {self.act_bits} (supported: {CODE_BITS_MIN} to {CODE_BITS_MAX} bits)")


@dataclass(frozen=True, eq=False)
class UniformCodes(CodeFormat):
    """Per-tensor uniform asymmetric codes."""

    TAG: ClassVar[str] = "uniform"
    scale: float = value("real value of one code step")
    zero_point: int = value("code of real 0, within the code range")

    def check(self) -> None:
        super().check()
        _check_scale(self.scale, "scale")
        check_range(self.zero_point, 0, code_max(self.act_bits), "zero_point")


@dataclass(frozen=True, eq=False)
class CagCodes(CodeFormat):
    """Channel-aware grouping (AHCPTQ): uniform codes with one scale and zero point per channel group."""

    TAG: ClassVar[str] = "cag"
    channel_group: np.ndarray = tensor("int64", "C", "group of each input channel")
    permutation: np.ndarray = tensor("int64", "C", "an order of the channels in which each group is contiguous")
    group_scale: np.ndarray = tensor("float32", "G", "real value of one code step, per group")
    group_zero_point: np.ndarray = tensor("int64", "G", "code of real 0, per group")

    @property
    def groups(self) -> int:
        return int(self.group_scale.shape[0])

    @property
    def channels(self) -> int:
        return int(self.channel_group.shape[0])

    @property
    def partial_sums(self) -> int:
        return self.groups

    def check(self) -> None:
        super().check()
        check_length(self.group_zero_point, self.groups, "group_zero_point", "one per group")
        check_length(self.permutation, self.channels, "permutation", "one per channel")
        check_range(self.channel_group, 0, self.groups - 1, "channel_group")
        check_range(self.group_zero_point, 0, code_max(self.act_bits), "group_zero_point")
        require(bool(np.all(self.group_scale > 0)), "group_scale", "must be positive")
        require(sorted(self.permutation.tolist()) == list(range(self.channels)), "permutation",
                "is not a permutation of the channels")


@dataclass(frozen=True, eq=False)
class HluqCodes(CodeFormat):
    """Hybrid log-uniform codes (AHCPTQ) of post-GELU/ReLU activations: L log levels, then uniform."""

    TAG: ClassVar[str] = "hluq"
    m: float = value("real value of code 0 (the activation's minimum)")
    s_log: float = value("top of the log range above m")
    s_uni: float = value("step of the uniform codes above m + s_log")
    log_levels: int = value("L: codes 1..L are log levels")

    @property
    def partial_sums(self) -> int:
        return 2

    def check(self) -> None:
        super().check()
        _check_scale(self.s_log, "s_log")
        _check_scale(self.s_uni, "s_uni")
        check_range(self.log_levels, 1, code_max(self.act_bits), "log_levels")


AGQ_TAUS = (1, 2, 4)


@dataclass(frozen=True, eq=False)
class AgqCodes(CodeFormat):
    """Adaptive-granularity log codes (PTQ4SAM) of a post-softmax map: p = scale 2^(-code / tau)."""

    TAG: ClassVar[str] = "agq"
    tau: int = value("base 2^(1/tau), tau in 1, 2, 4")
    scale: float = value("probability of code 0")
    max_shift: int = value("Q: A.V enters lut[code mod tau] << (Q - code div tau); codes past Q give 0")
    lut_frac_bits: int = value("fraction bits of the LUT entries (0 when tau = 1)")
    lut: np.ndarray = tensor("int64", "tau", "round(2^lut_frac_bits 2^(-r / tau)), r = 0 .. tau - 1")

    @property
    def zero_code(self) -> int:
        """The all-ones code: an exact zero probability."""
        return code_max(self.act_bits)

    @property
    def drops_codes(self) -> bool:
        """Whether codes below the zero code can lie past ``max_shift`` (and so contribute 0)."""
        return self.max_shift < (code_max(self.act_bits) - 1) // self.tau

    def check(self) -> None:
        super().check()
        require(self.tau in AGQ_TAUS, "tau", f"must be one of {AGQ_TAUS}, got {self.tau}")
        _check_scale(self.scale, "scale")
        check_range(self.max_shift, 0, code_max(self.act_bits), "max_shift")
        check_length(self.lut, self.tau, "lut", "one entry per residue mod tau")
        require(bool(np.all(self.lut > 0)) and int(self.lut[0]) == 1 << self.lut_frac_bits, "lut",
                f"must be positive with lut[0] = 2^lut_frac_bits, got {self.lut.tolist()}")


InputCodes = UniformCodes | CagCodes | HluqCodes
SoftmaxCodes = AgqCodes | UniformCodes
