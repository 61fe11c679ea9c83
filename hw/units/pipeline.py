"""Register chains that carry side signals (valid flags, per-output constants) beside a pipelined
datapath, so they reach each stage in the cycle that stage uses them."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value


def delay(m: Module, value: Value, cycles: int, name: str) -> Value:
    """``value`` as it was ``cycles`` clock cycles ago (``value`` itself for 0 cycles)."""
    for stage in range(cycles):
        reg = Signal(Value.cast(value).shape(), name=f"{name}_d{stage + 1}")
        m.d.sync += reg.eq(value)
        value = reg
    return value
