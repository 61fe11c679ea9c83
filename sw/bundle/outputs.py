"""Where an integer layer's accumulator goes: requantized codes for the next quantizer, or a signed
host code for a float step. Both are fixed-point requantizations (``fixed_point``) with per-output
constants; an attention's A.V output has one constant for every output (arrays of length 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .codes import ACT_BITS_DOC, code_max
from .fixed_point import MULTIPLIER_MIN, SHIFT_MAX, SHIFT_MIN
from .record import Record, check_length, check_range, require, tensor, value

MULTIPLIER_DOC = "fixed-point multiplier M, 2^30 <= M < 2^31, per output channel (or one for all)"
SHIFT_DOC = "right shift, 17 <= shift <= 78, per output channel (or one for all)"


@dataclass(frozen=True, eq=False)
class Output(Record):
    """Subclasses give zero_point [O], q_min and q_max."""

    TAG_KEY: ClassVar[str] = "to"
    multiplier: np.ndarray = tensor("int64", "O", MULTIPLIER_DOC)
    shift: np.ndarray = tensor("int64", "O", SHIFT_DOC)

    @property
    def channels(self) -> int:
        return int(self.multiplier.shape[0])

    def _check_requant(self) -> None:
        check_length(self.shift, self.channels, "shift", "one per multiplier")
        check_range(self.multiplier, MULTIPLIER_MIN, 2 * MULTIPLIER_MIN - 1, "multiplier")
        check_range(self.shift, SHIFT_MIN, SHIFT_MAX, "shift")


@dataclass(frozen=True, eq=False)
class CodesOutput(Output):
    """Codes of the quantizers that read the output directly (q/k/v projections, A.V)."""

    TAG: ClassVar[str] = "codes"
    act_bits: int = value(ACT_BITS_DOC)
    consumers: str = value("which quantizers read these codes")
    zero_point: np.ndarray = tensor("int64", "O", "code of real 0 of the consuming quantizer")

    @property
    def q_min(self) -> int:
        return 0

    @property
    def q_max(self) -> int:
        return code_max(self.act_bits)

    def check(self) -> None:
        self._check_requant()
        check_length(self.zero_point, self.channels, "zero_point", "one per multiplier")
        check_range(self.zero_point, 0, self.q_max, "zero_point")


@dataclass(frozen=True, eq=False)
class HostOutput(Output):
    """A symmetric signed host code with one real scale for the whole layer (zero point 0)."""

    TAG: ClassVar[str] = "host"
    host_bits: int = value("width of the signed host code: codes -(2^(b-1) - 1) .. 2^(b-1) - 1")
    scale: float = value("real value of one host code step (2 x the largest |output| in calibration / 32767)")

    @property
    def q_min(self) -> int:
        return -self.q_max

    @property
    def q_max(self) -> int:
        return (1 << (self.host_bits - 1)) - 1

    @property
    def zero_point(self) -> np.ndarray:
        return np.zeros(self.channels, np.int64)

    def check(self) -> None:
        require(2 <= self.host_bits <= 32, "host_bits", f"unsupported host code width {self.host_bits}")
        require(self.scale > 0, "scale", f"must be positive, got {self.scale}")
        self._check_requant()


LayerOutput = CodesOutput | HostOutput
