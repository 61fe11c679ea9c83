"""Verilog text of a unit, for the co-simulation and synthesis steps that follow."""

from __future__ import annotations

from amaranth.back import verilog
from amaranth.lib import wiring


def unit_verilog(unit: wiring.Component, name: str | None = None) -> str:
    """Verilog of ``unit`` with its signature as the port list (needs amaranth's builtin Yosys or
    AMARANTH_USE_YOSYS=system); ``name`` defaults to the class name."""
    return verilog.convert(unit, name=name or type(unit).__name__, emit_src=False)
