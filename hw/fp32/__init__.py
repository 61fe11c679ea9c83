"""IEEE 754 binary32 arithmetic for the FP32 baseline accelerator (numpy + Amaranth only).

Units, each bit-exact with numpy float32 (round to nearest even, subnormals kept, as numpy on x86):
``Fp32Multiplier`` (``multiply``), ``Fp32Adder`` (``add``), and the lanes of ``mac``: ``Fp32MulAdd``
(acc + a * b, two roundings) and ``Fp32MacLane`` (a float32 accumulator fed back through the adder,
interleaving its pipeline's slots). Helpers: float32 fields (``format``), leading zeros and sticky
shifts (``bits``), the 24 x 24 significand product on three MULT18X18D (``significand``), rounding and
packing (``round``).

NaN policy: every NaN result is the canonical quiet NaN 0x7FC00000, whatever the operands' payloads
and signs. numpy's NaN bits follow the x86 SSE rules (the first NaN operand's payload, quieted; the
negative default NaN 0xFFC00000 for invalid operations such as inf * 0 or inf - inf), and which
operand counts as first depends on how numpy's loops order them, so the tests require: wherever
numpy's result is a NaN the hardware's is exactly 0x7FC00000, and every other result equals numpy's
bit for bit. A NaN operand of either kind (quiet or signaling) gives a NaN result.
"""

from .add import Fp32Adder
from .mac import INTERLEAVE, LANE_LATENCY, Fp32MacLane, Fp32MulAdd, mac_lane_cycles
from .multiply import Fp32Multiplier

__all__ = ["Fp32Adder", "Fp32MacLane", "Fp32MulAdd", "Fp32Multiplier", "INTERLEAVE", "LANE_LATENCY",
           "mac_lane_cycles"]
