"""One attention layer's port values for the softmax unit, from its integer definition
(``sw.ref.log_softmax.LogSoftmax``), checked against the widths the unit was built with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw.bundle import BundleError
from sw.bundle.fixed_point import SHIFT_MAX, SHIFT_MIN
from sw.ref.log_softmax import LogSoftmax

from .unit import CODE_BITS, OFFSET_BITS, UnitWidths

TAU_SHIFTS = {1: 0, 2: 1, 4: 2}


@dataclass(frozen=True)
class LayerConstants:
    multiplier: int
    shift: int
    tau_shift: int
    zero_code: int
    offset: int

    @classmethod
    def of(cls, softmax: LogSoftmax, unit: UnitWidths) -> "LayerConstants":
        """The ports' values; a one-line error naming the layer when the unit cannot run it."""
        widths = (softmax.frac_bits, softmax.exp_bits, softmax.log_bits)
        if widths != (unit.frac_bits, unit.exp_bits, unit.log_bits):
            raise BundleError(f"{softmax.name}: integer softmax widths F, E, G = {widths}, the unit is built for "
                              f"{(unit.frac_bits, unit.exp_bits, unit.log_bits)}")
        if not SHIFT_MIN <= softmax.shift <= SHIFT_MAX or softmax.tau not in TAU_SHIFTS:
            raise BundleError(f"{softmax.name}: shift {softmax.shift} or tau {softmax.tau} is outside the unit's "
                              f"range ({SHIFT_MIN}..{SHIFT_MAX}, tau in 1, 2, 4)")
        if not 0 <= softmax.zero_code < 1 << CODE_BITS or abs(softmax.offset) >= 1 << (OFFSET_BITS - 1):
            raise BundleError(f"{softmax.name}: zero code {softmax.zero_code} or offset {softmax.offset} does not "
                              f"fit the unit's {CODE_BITS}-bit code and {OFFSET_BITS}-bit offset")
        if softmax.bias is not None:
            limit = 1 << (unit.bias_bits - 1)
            if softmax.bias.size and (int(softmax.bias.max()) >= limit or int(softmax.bias.min()) < -limit):
                raise BundleError(f"{softmax.name}: attention bias {int(np.abs(softmax.bias).max())} does not fit "
                                  f"the unit's {unit.bias_bits}-bit bias input")
        return cls(softmax.multiplier, softmax.shift, TAU_SHIFTS[softmax.tau], softmax.zero_code, softmax.offset)

    def ports(self) -> dict[str, int]:
        return {"multiplier": self.multiplier, "shift": self.shift, "tau_shift": self.tau_shift,
                "zero_code": self.zero_code, "offset": self.offset}
