"""The four token counters between the units (the flag table of ``isa.py``).

Each counter has one producer and one consumer unit. A signal in cycle x is counted at the end of x,
so an instruction waiting for it can start in x + 1 and takes the token at the end of that cycle.
A unit flag with no counter (LOAD's ``*_prev``, STORE's ``*_next``) is ignored.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import TOKEN_BITS

# counter: (producer unit, producer flag, consumer unit, consumer flag)
COUNTERS = {
    "load_to_compute": ("load", "signal_next", "compute", "wait_prev"),
    "compute_to_load": ("compute", "signal_prev", "load", "wait_next"),
    "compute_to_store": ("compute", "signal_next", "store", "wait_prev"),
    "store_to_compute": ("store", "signal_prev", "compute", "wait_next"),
}


def counter_for(unit: str, flag: str) -> str | None:
    """The counter a unit's flag refers to, or None where the flag means nothing for that unit."""
    for name, (producer, pflag, consumer, cflag) in COUNTERS.items():
        if (unit, flag) in ((producer, pflag), (consumer, cflag)):
            return name
    return None


class TokenCounters(wiring.Component):
    def __init__(self):
        members = {"run_start": In(1)}
        for name in COUNTERS:
            members |= {f"{name}_inc": In(1), f"{name}_dec": In(1), f"{name}_any": Out(1)}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for name in COUNTERS:
            count = Signal(TOKEN_BITS, name=name)
            inc, dec = getattr(self, f"{name}_inc"), getattr(self, f"{name}_dec")
            m.d.comb += getattr(self, f"{name}_any").eq(count != 0)
            with m.If(self.run_start):
                m.d.sync += count.eq(0)
            with m.Elif(inc & ~dec):
                m.d.sync += count.eq(count + 1)
            with m.Elif(dec & ~inc):
                m.d.sync += count.eq(count - 1)
        return m
