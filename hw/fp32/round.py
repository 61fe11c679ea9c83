"""Round to nearest even and pack: the last stages of the float32 multiplier and adder.

The caller hands over a sign, an exponent, the 24 significand bits it keeps, the guard bit below
them and the bits below the guard (``sticky``, OR-ed here, in parallel with the denormalizing
shift). The significand is normalized (hidden bit set) unless the exponent is 1, where an
unnormalized significand is a subnormal.

Ports:

    in   sign       1
    in   exp        signed(EXP_IN_BITS)   biased exponent of the hidden bit; <= 0 is below the normal
                                          range (only with ``denormalize``), >= 255 overflows to inf
    in   sig        24                    significand, hidden bit at 23
    in   guard      1
    in   sticky     ``sticky_bits``
    in   force_nan, force_inf, force_zero  special results decided by the caller, in that priority:
                                          canonical NaN, signed infinity, signed zero
    out  result     32                    the float32 word, ``latency`` cycles after the inputs

Packing puts the fraction under exponent field ``exp`` (0 when the hidden bit is clear: a
subnormal), and the round-up increment of that 31-bit word carries into the exponent field by
itself: a subnormal rounds up into the smallest normal, the largest finite rounds up into infinity.

``denormalize`` (three stages): an exponent below 1 is raised to 1 by shifting the significand
right with the guard and sticky bits, as the multiplier's products can fall below the normal range;
the shift amount gets a stage of its own. Without it (one stage) the caller must keep exp >= 1, as
the adder does by limiting its normalizing shift.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..units.pipeline import delay
from .bits import shift_right_sticky
from .format import CANONICAL_NAN, EXP_ALL_ONES, FRAC_BITS, SIG_BITS, WORD_BITS, signed_inf, signed_zero

EXP_IN_BITS = 10  # a product's exponent before rounding spans -171 .. 382
_DENORM_BITS = SIG_BITS + 2  # significand, guard, sticky


def feed_registered(m: Module, rounder: "RoundPack", **values):
    """Register each of ``values`` (keyed by the rounder's port names) one stage, into the rounder."""
    for name, value in values.items():
        m.d.comb += getattr(rounder, name).eq(delay(m, value, 1, f"norm_{name}"))


def round_increment(lsb, guard, sticky):
    """Round to nearest, ties to even: up when above half an ulp, or exactly half and the lsb is odd."""
    return guard & (sticky | lsb)


class RoundPack(wiring.Component):
    def __init__(self, sticky_bits: int = 1, denormalize: bool = True):
        if sticky_bits < 1:
            raise ValueError(f"RoundPack needs at least one sticky bit, got {sticky_bits}")
        self.denormalize = denormalize
        self.latency = 3 if denormalize else 1
        super().__init__({
            "sign": In(1), "exp": In(signed(EXP_IN_BITS)), "sig": In(SIG_BITS), "guard": In(1),
            "sticky": In(sticky_bits), "force_nan": In(1), "force_inf": In(1), "force_zero": In(1),
            "result": Out(WORD_BITS),
        })

    rounding = staticmethod(round_increment)

    def elaborate(self, platform):
        m = Module()
        sign, exp, sig, guard, sticky = self.sign, self.exp, self.sig, self.guard, self.sticky.any()
        flags = {"nan": self.force_nan, "inf": self.force_inf, "zero": self.force_zero}
        if self.denormalize:
            # Stage 1: only the shift amount, so that the shifter of stage 2 starts from a register.
            below = exp < 1
            # A shift of 26 or more moves every bit into the sticky bit; clamping keeps the shifter 5 bits.
            amount = Mux(below, Mux(exp < 1 - _DENORM_BITS, _DENORM_BITS, 1 - exp), 0)[:5]
            staged = {"sign": sign, "exp": Mux(below, 1, exp), "amount": amount, "sig": sig, "guard": guard,
                      "sticky": sticky, **flags}
            staged = {name: delay(m, value, 1, f"denorm_{name}") for name, value in staged.items()}
            shifted, lost = shift_right_sticky(Cat(Const(0, 1), staged["guard"], staged["sig"]), staged["amount"])
            staged.update(sig=shifted[2:], guard=shifted[1], sticky=staged["sticky"] | shifted[0] | lost)
            staged = {name: delay(m, staged[name], 1, f"shifted_{name}")
                      for name in ("sign", "exp", "sig", "guard", "sticky", *flags)}
            sign, exp, sig, guard, sticky = (staged[name] for name in ("sign", "exp", "sig", "guard", "sticky"))
            flags = {name: staged[name] for name in flags}
        overflow = exp >= EXP_ALL_ONES
        up = self.rounding(sig[0], guard, sticky)
        # Exponent field: exp when the hidden bit is set; 0 for a subnormal (hidden bit clear, exp 1).
        packed = (Cat(sig[:FRAC_BITS], Mux(sig[FRAC_BITS], exp[:8], 0)) + up)[:WORD_BITS - 1]
        result = Mux(flags["nan"], CANONICAL_NAN,
                     Mux(flags["inf"] | overflow, signed_inf(sign),
                         Mux(flags["zero"], signed_zero(sign), Cat(packed, sign))))
        m.d.comb += self.result.eq(delay(m, result, 1, "rounded"))
        return m
