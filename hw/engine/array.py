"""R x K array of the existing PEs (hw.units) in lock step: row r shares its activation code, column k
its weight (or value) operand, so one cycle feeds R*K terms from R + K memory operands.

MAC / HLUQ: PE (r, k) is a GroupedMacLane / HluqPE computing output (row r, column k).
AGQ: row r is one AgqValueUnit with K lanes (the probability code of a row is shared by its lanes).

Ports:

    in   valid, first, last
    in   codes   [R]  unsigned(act_bits)
    in   weights [K]  signed(weight_bits + 1) = code_w - z_w (MAC / HLUQ); unsigned value codes (AGQ)
    in   group        CAG group of this cycle's input channel (MAC with groups > 1)
    in   bias    [K]  signed(bias_bits), sampled with ``last`` (MAC / HLUQ)
    in   zero_points [G], multipliers [G] (MAC), multipliers [2] (HLUQ), value_zero_point (AGQ)
    out  acc     [R*K] signed(acc_bits), index r*K + k, held from ``done`` to the next ``done``
    out  done         ``config.pe_latency`` cycles after ``last``
"""

from __future__ import annotations

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..units import AgqValueUnit
from .config import PE_UNITS, EngineConfig


class PEArray(wiring.Component):
    def __init__(self, config: EngineConfig):
        self.config = config
        c, w = config, config.widths
        ports = {
            "valid": In(1), "first": In(1), "last": In(1),
            "codes": In(data.ArrayLayout(unsigned(c.act_bits), c.pe_rows)),
            "acc": Out(data.ArrayLayout(signed(c.acc_bits), c.pes)),
            "done": Out(1),
        }
        if c.kind == "agq":
            ports["weights"] = In(data.ArrayLayout(unsigned(c.weight_bits), c.pe_cols))
            ports["value_zero_point"] = In(unsigned(c.weight_bits))
        else:
            ports["weights"] = In(data.ArrayLayout(signed(c.weight_bits + 1), c.pe_cols))
            ports["bias"] = In(data.ArrayLayout(signed(w.bias_bits), c.pe_cols))
            ports["multipliers"] = In(data.ArrayLayout(unsigned(w.mult_bits), w.groups))
        if c.kind == "mac":
            ports["group"] = In(unsigned(max(1, (w.groups - 1).bit_length())))
            ports["zero_points"] = In(data.ArrayLayout(unsigned(c.act_bits), w.groups))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        c = self.config
        if c.kind == "agq":
            for r in range(c.pe_rows):
                unit = AgqValueUnit(c.widths, lanes=c.pe_cols)
                m.submodules[f"row{r}"] = unit
                m.d.comb += [unit.valid.eq(self.valid), unit.first.eq(self.first), unit.last.eq(self.last),
                             unit.code.eq(self.codes[r]), unit.values.eq(self.weights),
                             unit.value_zero_point.eq(self.value_zero_point)]
                m.d.comb += [self.acc[r * c.pe_cols + k].eq(unit.acc[k]) for k in range(c.pe_cols)]
                if r == 0:
                    m.d.comb += self.done.eq(unit.done)
            return m
        for r in range(c.pe_rows):
            for k in range(c.pe_cols):
                pe = PE_UNITS[c.kind](c.widths)
                m.submodules[f"pe{r}_{k}"] = pe
                m.d.comb += [pe.valid.eq(self.valid), pe.first.eq(self.first), pe.last.eq(self.last),
                             pe.code.eq(self.codes[r]), pe.weight.eq(self.weights[k]), pe.bias.eq(self.bias[k]),
                             pe.multipliers.eq(self.multipliers), self.acc[r * c.pe_cols + k].eq(pe.acc)]
                if c.kind == "mac":
                    m.d.comb += [pe.group.eq(self.group), pe.zero_points.eq(self.zero_points)]
                if r == 0 and k == 0:
                    m.d.comb += self.done.eq(pe.done)
        return m
