"""The arithmetic building blocks the core and the FP32 lanes share (hw.units) in Amaranth's simulator,
every output bit against exact integer products, and the torch-free import of all of hw.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.generate import unit_verilog
from hw.units.dsp_multiply import PipelinedMultiplier, piece_offsets
from hw.units.shift_add import shift_add_multiply
from torchless import run_without_torch

MULT18X18D_BITS = 18  # operand width of one ECP5 hard multiplier


def multiplies(text: str) -> dict[str, list[tuple[int, int]]]:
    """Operand widths (A, B) of every ``$mul`` cell in RTLIL ``text``, by module name."""
    found = {}
    for block in re.split(r"\n(?=module )", text):
        name = block.split("\n", 1)[0].removeprefix("module \\")
        cells = re.findall(r"cell \$mul .*?parameter \\A_WIDTH (\d+)\s+parameter \\B_WIDTH (\d+)", block, re.S)
        if cells:
            found[name] = [(int(a), int(b)) for a, b in cells]
    return found


def assert_dsp_sized(text: str, modules: set[str]) -> list[tuple[int, int]]:
    """The hard multiplies are exactly those of ``modules`` and each fits one MULT18X18D (18 x 18
    operands); returns them."""
    found = multiplies(text)
    assert set(found) == modules, found
    cells = [c for cells in found.values() for c in cells]
    assert all(a <= MULT18X18D_BITS and b <= MULT18X18D_BITS for a, b in cells), cells
    return cells


# ---- shift-add products --------------------------------------------------------------------------

class _Product(wiring.Component):
    def __init__(self, a_shape, b_shape):
        self.product_shape = (Signal(a_shape) * Signal(b_shape)).shape()
        super().__init__({"a": In(a_shape), "b": In(b_shape), "p": Out(self.product_shape)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.p.eq(shift_add_multiply(self.a, self.b))
        return m


@pytest.mark.parametrize("a_shape,b_shape", [(signed(4), signed(5)), (unsigned(3), signed(4)), (signed(5), unsigned(3)),
                                             (unsigned(4), unsigned(3)), (signed(1), signed(3))])
def test_shift_add_multiply_is_exact_for_every_operand_pair(a_shape, b_shape):
    dut = _Product(a_shape, b_shape)
    pairs = list(itertools.product(range(_lo(a_shape), _hi(a_shape) + 1), range(_lo(b_shape), _hi(b_shape) + 1)))
    got = []

    async def bench(ctx):
        for a, b in pairs:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            got.append(ctx.get(dut.p))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert got == [a * b for a, b in pairs]
    assert "$mul" not in rtlil.convert(dut)


def _lo(shape):
    return -(2 ** (shape.width - 1)) if shape.signed else 0


def _hi(shape):
    return 2 ** (shape.width - 1) - 1 if shape.signed else 2**shape.width - 1


# ---- pipelined hard multiplier --------------------------------------------------------------------

def _operands(shape, rng, count):
    lo, hi = _lo(shape), _hi(shape)
    corners = [v for v in (lo, hi, 0, 1, -1, lo + 1, hi - 1) if lo <= v <= hi]
    return corners + [int(v) for v in rng.integers(lo, hi, count, endpoint=True, dtype=np.int64)]


@pytest.mark.parametrize("a_shape,b_shape", [
    (signed(16), unsigned(27)), (signed(44), unsigned(31)), (signed(18), signed(18)), (unsigned(18), signed(19)),
    (signed(36), signed(35)), (unsigned(5), unsigned(3)), (signed(1), unsigned(40)), (signed(19), unsigned(17))])
def test_pipelined_multiplier_is_exact_every_cycle_with_dsp_sized_pieces(a_shape, b_shape):
    rng = np.random.default_rng(a_shape.width * 100 + b_shape.width)
    a_values, b_values = _operands(a_shape, rng, 60), _operands(b_shape, rng, 60)
    pairs = [(a, b) for a in a_values[:7] for b in b_values[:7]] + list(zip(a_values, b_values[::-1]))
    dut = PipelinedMultiplier(a_shape, b_shape)
    got = []

    async def bench(ctx):
        for cycle in range(len(pairs) + dut.latency):
            if cycle < len(pairs):
                ctx.set(dut.a, pairs[cycle][0])
                ctx.set(dut.b, pairs[cycle][1])
            await ctx.tick()
            got.append(ctx.get(dut.p))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got[dut.latency - 1:][:len(pairs)] == [a * b for a, b in pairs]
    pieces = len(piece_offsets(a_shape)) * len(piece_offsets(b_shape))
    assert len(assert_dsp_sized(rtlil.convert(dut, name="top"), {"top"})) == pieces
    assert dut.latency == 1 + (pieces - 1).bit_length()  # piece register, then one per adder level


# ---- Verilog and the torch-free import -----------------------------------------------------------

def test_unit_verilog_emits_a_module_with_the_signature_ports():
    text = unit_verilog(PipelinedMultiplier(signed(20), unsigned(12)))
    header = re.search(r"module PipelinedMultiplier\(([^)]*)\);", text)
    assert header is not None
    assert {p.strip() for p in header.group(1).split(",")} == {"a", "b", "p", "clk", "rst"}
    assert re.search(r"output \[31:0\] p;", text)


def test_hw_imports_and_elaborates_without_torch():
    code = """
import importlib, pkgutil, sys
import hw
names = {m.name for m in pkgutil.walk_packages(hw.__path__, "hw.")}
for name in sorted(names):
    importlib.import_module(name)
assert {"hw.generate", "hw.core.core", "hw.compiler", "hw.fsim", "hw.fp32", "hw.units.shift_add",
        "hw.units.dsp_multiply", "hw.units.pipeline"} <= names, names
from amaranth.back import rtlil
from amaranth.hdl import signed, unsigned
from hw.core.config import CoreConfig
from hw.core.core import Core
from hw.units.dsp_multiply import PipelinedMultiplier
rtlil.convert(PipelinedMultiplier(signed(20), unsigned(12)))
rtlil.convert(Core(CoreConfig(rows=2, cols=2, act_words=16, wgt_words=16, out_words=16, param_words=16,
                              prog_words=16, max_shift=15, pe_acc_bits=40, max_segments=4)))
assert "torch" not in sys.modules
print(len(names))
"""
    result = run_without_torch(code)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 8
