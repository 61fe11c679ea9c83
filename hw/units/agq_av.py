"""AGQ softmax-value unit: A.V for one query row with AGQ probability codes.

A probability code c (k bits, tau in {1, 2, 4}, largest shift Q) weighs a value operand d = v - z_v as
(sw.ref.kernels.agq_weights / attention_values)

    lut[c mod tau] * d << (Q - c // tau)     if c != 2^k - 1 and c // tau <= Q,   else nothing.

One code is decoded per cycle (a single tau-entry LUT and one shift decoder) and shared by ``lanes``
value lanes, so a row of V (one key, ``lanes`` head dimensions) is consumed per cycle. The LUT
holds the layer's constants; with tau = 1 it is one power of two and the product is a plain shift,
for tau > 1 it is a shift-add product with the (a+1)-bit value operand (no hard multiplier).

Ports (widths from ``hw.widths.AgqWidths``; a = value bits):

    in   valid, first, last        stream control: first/last mark the first/last key of the row
    in   code             unsigned(k)           probability code of (query, key)
    in   values [lanes]   unsigned(a)           value codes of that key
    in   value_zero_point unsigned(a)           z_v
    out  acc [lanes]      signed(acc_bits)      A.V accumulators of the row, valid while/after done
    out  done             1                     one cycle, ``latency`` = 4 cycles after the last key

Rows may follow each other back to back (a one-key row included).
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..widths import AgqWidths, attention_widths, code_max
from .pipeline import delay
from .shift_add import shift_add_multiply


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


class AgqValueUnit(wiring.Component):
    TERM_STAGES = 3
    latency = TERM_STAGES + 1  # then the accumulate
    min_interval = 1

    @classmethod
    def timing(cls, widths: AgqWidths) -> tuple[int, int]:
        return cls.latency, cls.min_interval

    def __init__(self, widths: AgqWidths, lanes: int = 1):
        self.widths = widths
        self.lanes = lanes
        super().__init__({
            "valid": In(1), "first": In(1), "last": In(1),
            "code": In(unsigned(widths.act_bits)),
            "values": In(data.ArrayLayout(unsigned(widths.value_bits), lanes)),
            "value_zero_point": In(unsigned(widths.value_bits)),
            "acc": Out(data.ArrayLayout(signed(widths.acc_bits), lanes)),
            "done": Out(1),
        })

    @classmethod
    def from_layer(cls, layer, lanes: int = 1, terms: int | None = None) -> "AgqValueUnit":
        """``terms``: longest key sequence the unit must accumulate (default: the layer's max_keys)."""
        return cls(attention_widths(layer, terms), lanes)

    def elaborate(self, platform):
        m = Module()
        w = self.widths
        tau_bits = w.tau.bit_length() - 1
        code = self.code

        # Three register stages per term, each one short path: the decode and the operands, the LUT
        # product, the shift.
        # Shared decode: one LUT read and one shift amount per cycle for all lanes.
        exponent = code >> tau_bits
        keep = Signal()
        amount = Signal(max(1, w.max_shift.bit_length()))
        m.d.sync += [keep.eq((code != code_max(w.act_bits)) & (exponent <= w.max_shift)),
                     amount.eq(w.max_shift - exponent)]
        pure_shift = w.tau == 1 and _is_power_of_two(w.lut[0])
        if w.tau == 1:
            lut_value = Const(w.lut[0], w.lut_bits)
        else:
            lut_value = Signal(w.lut_bits)
            m.d.sync += lut_value.eq(Array(Const(v, w.lut_bits) for v in w.lut)[code[:tau_bits]])
        keep, amount = delay(m, keep, 1, "keep"), delay(m, amount, 1, "amount")

        terms = [Signal(signed(w.term_bits), name=f"term{i}") for i in range(self.lanes)]
        for i, term in enumerate(terms):
            operand = Signal(signed(w.value_bits + 1), name=f"operand{i}")
            m.d.sync += operand.eq(self.values[i] - self.value_zero_point)
            if pure_shift:
                product = operand << (w.lut[0].bit_length() - 1)
            else:
                product = shift_add_multiply(lut_value, operand)
            product_reg = Signal(product.shape(), name=f"product{i}")
            m.d.sync += [product_reg.eq(product), term.eq(Mux(keep, product_reg << amount, 0))]
        valid, first, last = (delay(m, getattr(self, name), self.TERM_STAGES, name) for name in ("valid", "first", "last"))

        m.d.sync += self.done.eq(valid & last)
        for i, term in enumerate(terms):
            running = Signal(signed(w.acc_bits), name=f"running{i}")
            total = Signal(signed(w.acc_bits), name=f"total{i}")
            m.d.comb += total.eq(Mux(first, 0, running) + term)
            with m.If(valid):
                m.d.sync += running.eq(total)
                with m.If(last):
                    m.d.sync += self.acc[i].eq(total)
        return m
