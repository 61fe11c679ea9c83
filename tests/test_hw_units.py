"""Arithmetic units (hw.units) in Amaranth's simulator, every output bit against the numpy reference.

Layers here are synthetic bundle records (tests/synthetic_layers.py, no torch): the units are checked against
sw.ref.layers / sw.ref.kernels / sw.ref.arith on random vectors and on the corners that stress each
width, rounding and code path.
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
from hw.units import AgqValueUnit, GroupedMacLane, HluqPE, Requantizer
from hw.units.dsp_multiply import PipelinedMultiplier, piece_offsets
from hw.units.shift_add import shift_add_multiply
from hw.widths import (AgqWidths, HluqWidths, MacWidths, RequantWidths, attention_widths, gemm_widths,
                       magnitude_bits, requant_widths, signed_bits)
from sw.bundle import ConvLayer, UniformCodes
from sw.ref.arith import requantize
from sw.ref.kernels import agq_weights, attention_values, hluq_terms, signed_weight
from sw.ref.layers import conv_accumulator, linear_accumulator, run_attention_values, run_linear
from synthetic_layers import (CODES_OUT, HOST_OUT, attention_layer, linear_layer, output_record, with_field,
                              with_fitted_shift)
from torchless import run_without_torch

MULT18X18D_BITS = 18  # operand width of one ECP5 hard multiplier


# ---- simulation driver ---------------------------------------------------------------------------

def simulate(dut, static: dict, stream: list[dict], read: list, strobe, tail: int = 16):
    """Hold ``static`` port values, drive one dict of port values per cycle, then ``tail`` idle cycles.
    Returns [(cycle, values of ``read``)] for each cycle in which ``strobe`` is high."""
    idle = {name: 0 if name in ("valid", "first", "last") else value for name, value in stream[-1].items()}
    seen = []

    async def bench(ctx):
        for name, value in static.items():
            ctx.set(getattr(dut, name), value)
        for cycle, inputs in enumerate(stream + [idle] * tail):
            for name, value in inputs.items():
                ctx.set(getattr(dut, name), value if isinstance(value, list) else int(value))
            await ctx.tick()
            if ctx.get(strobe):
                seen.append((cycle + 1, [ctx.get(v) for v in read]))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def last_cycles(stream: list[dict]) -> list[int]:
    return [i for i, s in enumerate(stream) if s["valid"] and s["last"]]


def assert_stream_results(dut, stream, seen, want):
    """Every result, in order, and each exactly ``dut.latency`` cycles after its last term (the
    stream itself keeps the unit's minimum spacing of last terms)."""
    lasts = last_cycles(stream)
    assert all(b - a >= dut.min_interval for a, b in zip(lasts, lasts[1:]))
    assert [v for _, v in seen] == want
    assert [c for c, _ in seen] == [i + dut.latency for i in lasts]


def module_text(unit, name: str) -> str:
    """RTLIL of one module of ``unit``'s design (submodules are separate modules)."""
    text = rtlil.convert(unit, name="top")
    blocks = re.split(r"\n(?=module )", text)
    return next(b for b in blocks if b.startswith(f"module \\{name}\n"))


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


# ---- driving the units with a layer's operands -------------------------------------------------

def gemm_stream(layer, codes: np.ndarray, outputs, rng=None, with_group=True) -> tuple[list, list]:
    """Cycles feeding every (row, output channel) dot product back to back (random bubbles with
    ``rng``), and the reference accumulators in the same order."""
    weight = signed_weight(layer.weights.codes, layer.weights.zero_point)
    c = codes.shape[1]
    groups = getattr(layer.input, "channel_group", np.zeros(c, np.int64))
    ref = linear_accumulator(layer, codes)
    stream, want = [], []
    for b in range(codes.shape[0]):
        for o in outputs:
            for j in range(c):
                cycle = {"valid": 1, "first": j == 0, "last": j == c - 1, "code": codes[b, j],
                         "weight": weight[o, j], "bias": layer.bias_acc[o]}
                if with_group:
                    cycle["group"] = groups[j]
                stream.append(cycle)
                if rng is not None and rng.random() < 0.1:
                    stream.append({**cycle, "valid": 0, "first": 0, "last": 0})
            want.append([int(ref[b, o])])
    return stream, want


def mac_static(layer) -> dict:
    fmt = layer.input
    zero_points = fmt.group_zero_point if fmt.TAG == "cag" else [fmt.zero_point]
    return {"zero_points": [int(z) for z in zero_points],
            "multipliers": [int(m) for m in layer.group_multiplier]}


def run_gemm(layer, codes: np.ndarray, outputs, rng=None) -> tuple[list, wiring.Component]:
    """Simulate the layer's lane/PE over ``outputs``; asserts the reference, returns the accs and unit."""
    hluq = layer.input.TAG == "hluq"
    dut = HluqPE.from_layer(layer) if hluq else GroupedMacLane.from_layer(layer)
    stream, want = gemm_stream(layer, codes, outputs, rng, with_group=not hluq)
    static = {"multipliers": [int(m) for m in layer.group_multiplier]} if hluq else mac_static(layer)
    seen = simulate(dut, static, stream, [dut.acc], dut.done, tail=dut.latency + 2)
    assert_stream_results(dut, stream, seen, want)
    return [v[0] for _, v in seen], dut


def assert_spread(codes: list[int], output) -> None:
    """Guard against a vacuous comparison: most outputs must lie strictly inside the clamp range."""
    inside = [output.q_min < c < output.q_max for c in codes]
    assert sum(inside) >= len(codes) / 2, codes


def run_requant(layer, accs: list[int], channels: list[int]) -> list[int]:
    """Requantize hardware accumulators with the layer's per-channel constants, one per cycle."""
    dut = Requantizer.from_layer(layer)
    out = layer.output
    stream = [{"valid": 1, "acc": a, "multiplier": out.multiplier[ch], "shift": out.shift[ch],
               "zero_point": out.zero_point[ch]} for a, ch in zip(accs, channels)]
    seen = simulate(dut, {}, stream, [dut.out], dut.out_valid, tail=dut.latency + 1)
    assert [c for c, _ in seen] == [i + dut.latency for i in range(len(stream))]
    return [v[0] for _, v in seen]


# ---- widths --------------------------------------------------------------------------------------

def test_signed_bits_is_the_narrowest_twos_complement_width():
    for lo, hi in itertools.product(range(-70, 5), range(-5, 70)):
        if lo > hi:
            continue
        want = next(n for n in range(1, 10) if -(2 ** (n - 1)) <= lo and hi < 2 ** (n - 1))
        assert signed_bits(lo, hi) == want


@pytest.mark.parametrize("act_bits,weight_bits", [(2, 3), (3, 2), (1, 4)])
def test_mac_term_bound_is_the_largest_product_over_every_code_and_zero_point(act_bits, weight_bits):
    a, b = np.arange(2**act_bits), np.arange(2**weight_bits)
    d = (a[:, None] - a[None, :]).ravel()  # code - zero point, every pair
    w = (b[:, None] - b[None, :]).ravel()
    widths = MacWidths(act_bits, weight_bits, terms=7, groups=3, mult_bits=5, bias_bits=6)
    assert int(np.abs(d[:, None] * w[None, :]).max()) == widths.term_max
    assert widths.partial_max == 7 * widths.term_max
    assert widths.acc_max == 7 * widths.term_max * 31 + 32


@pytest.mark.parametrize("bits,levels", [(3, 1), (3, 3), (3, 7), (4, 4), (4, 8)])
def test_hluq_term_bounds_are_the_reference_terms_at_the_largest_weight(bits, levels):
    log_term, uni_term = hluq_terms(np.arange(2**bits), levels)
    widths = HluqWidths(bits, levels, weight_bits=3, terms=5, mult_bits=4, bias_bits=3)
    assert widths.log_term_max == 7 * int(log_term.max())
    assert widths.uniform_term_max == 7 * int(uni_term.max())
    assert widths.partial_sum_max == 5 * 7 * int((log_term + uni_term).max())


@pytest.mark.parametrize("tau,max_shift", [(1, 14), (1, 3), (2, 7), (4, 3), (4, 0)])
def test_agq_term_bound_is_the_largest_reference_operand_times_the_largest_value(tau, max_shift):
    lut = [1] if tau == 1 else [round(2**15 * 2 ** (-r / tau)) for r in range(tau)]
    weights = agq_weights(np.arange(16), tau, np.array(lut), max_shift, 4)
    widths = AgqWidths(4, tau, lut, max_shift, value_bits=3, terms=9)
    assert widths.term_max == int(weights.max()) * 7
    assert widths.acc_max == 9 * widths.term_max


@pytest.mark.parametrize("bound", [1, 2, 3, 7, 8, 255, 256, 2**40 - 1, 2**40])
def test_widths_are_minimal_for_their_bound(bound):
    bits = magnitude_bits(bound)
    assert -(2 ** (bits - 1)) <= -bound and bound <= 2 ** (bits - 1) - 1
    assert bound > 2 ** (bits - 2) - 1  # one bit less cannot hold +bound


def test_requant_widths_hold_the_extreme_products():
    w = RequantWidths(48, 0, 15)
    for acc in (-(2**47), 2**47 - 1):
        product = acc * (2**31 - 1)
        assert signed_bits(product, product) <= w.product_bits
        assert signed_bits(product >> 16, product >> 16) <= w.floored_bits


def test_layer_widths_follow_the_layer_parameters():
    rng = np.random.default_rng(0)
    cag = linear_layer(rng, "cag", 64, 2)
    w = gemm_widths(cag)
    assert isinstance(w, MacWidths) and (w.groups, w.terms, w.act_bits, w.weight_bits) == (4, 64, 4, 4)
    assert w.mult_bits == int(cag.group_multiplier.max()).bit_length()
    assert w.bias_bits == signed_bits(int(cag.bias_acc.min()), int(cag.bias_acc.max()))
    hluq = gemm_widths(linear_layer(rng, "hluq", 32, 2, log_levels=8))
    assert isinstance(hluq, HluqWidths) and (hluq.log_levels, hluq.terms) == (8, 32)
    conv = ConvLayer(name="conv", weights=with_field(cag.weights, "codes", np.zeros((2, 3, 5, 7), np.uint8)),
                     bias=cag.bias, bias_acc=cag.bias_acc, input=UniformCodes(act_bits=4, scale=1.0, zero_point=3),
                     group_multiplier=np.array([2**24]), group_frac_bits=24, output=cag.output, stride=1, padding=0,
                     groups=1)
    assert conv.reduction == 105 and gemm_widths(conv).groups == 1
    assert requant_widths(cag).acc_bits == w.acc_bits and requant_widths(cag).zero_point_bits == 5


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


# ---- requantizer ---------------------------------------------------------------------------------

def _tie_cases() -> list[tuple[int, int, int]]:
    """(acc, M, shift) with acc * M exactly halfway between two multiples of 2^shift, acc < 0 mostly."""
    cases = []
    for shift in (17, 18, 30, 31, 47, 62, 77):
        zeros = min(30, shift - 1)  # trailing zeros of M; acc supplies the rest of 2^(shift-1)
        multiplier = 2**30 if zeros == 30 else (2 ** (30 - zeros) + 1) << zeros
        for odd in (-5, -3, -1, 1, 3):
            acc = odd << (shift - 1 - zeros)
            if abs(acc) < 2**47:
                assert (acc * multiplier) % 2**shift == 2 ** (shift - 1)
                cases.append((acc, multiplier, shift))
    return cases


@pytest.mark.parametrize("kind", [CODES_OUT, HOST_OUT])
def test_requantizer_equals_the_reference_on_random_and_extreme_inputs(kind):
    rng = np.random.default_rng(2)
    out = output_record(rng, kind, 1)
    output = {"min": out.q_min, "max": out.q_max}
    limit = 2**47 - 1  # the reference's accumulator domain
    cases = [(int(a), int(m), int(s)) for a, m, s in zip(
        rng.integers(-limit, limit, 150) >> rng.integers(0, 40, 150), rng.integers(2**30, 2**31, 150),
        rng.integers(17, 79, 150))]
    extremes = [0, 1, -1, 2, -2, 2**46, -(2**46), limit, -limit, 12345, -12345]
    cases += [(a, m, s) for a in extremes for m in (2**30, 2**31 - 1) for s in (17, 78)]
    cases += _tie_cases()
    # shift 31 with M = 2^30 halves acc: odd accs are ties, negative ones round up towards zero.
    cases += [(a, 2**30, 31) for a in range(-9, 10)]
    if output["min"] >= 0:
        zero = rng.integers(output["min"], output["max"] + 1, len(cases))
    else:
        zero = np.zeros(len(cases), np.int64)
    acc, mult, shift = (np.array(x, np.int64) for x in zip(*cases))
    want = requantize(acc, mult, shift, zero, output["min"], output["max"])

    dut = Requantizer(RequantWidths(48, output["min"], output["max"]))
    stream = [{"valid": 1, "acc": a, "multiplier": m, "shift": s, "zero_point": z}
              for (a, m, s), z in zip(cases, zero)]
    stream[5:5] = [{**stream[5], "valid": 0}]  # a bubble: out_valid must skip it
    seen = simulate(dut, {}, stream, [dut.out], dut.out_valid, tail=dut.latency + 1)
    assert [v[0] for _, v in seen] == want.tolist()
    assert [c for c, _ in seen] == [i + dut.latency for i, s in enumerate(stream) if s["valid"]]
    assert np.ptp(want) > 0 and want.min() >= output["min"]
    if output["min"] == 0:  # the clamp ran both ways
        assert {output["min"], output["max"]} <= set(want.tolist())


def test_requantizer_port_shapes_and_its_dsp_sized_multiplies():
    dut = Requantizer(RequantWidths(50, 0, 255))
    assert len(dut.multiplier) == 31 and len(dut.shift) == 7 and len(dut.out) == 8 and not dut.out.shape().signed
    # 50 x 31 bits: 3 x 2 pieces, summed over three registered adder levels, then shift, round, clamp.
    assert len(assert_dsp_sized(rtlil.convert(dut, name="top"), {"top.multiply"})) == 6
    assert dut.latency == 4 + 3
    host = Requantizer(RequantWidths(50, -32767, 32767))
    assert host.out.shape() == signed(16) and host.zero_point.shape() == signed(16)
    rtlil.convert(host)


# ---- grouped MAC lane ----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["uniform", "cag"])
def test_mac_lane_equals_the_reference_accumulator_and_requantizes_like_run_linear(fmt):
    rng = np.random.default_rng(3)
    layer = linear_layer(rng, fmt, 48, 4, output=CODES_OUT if fmt == "cag" else HOST_OUT)
    codes = rng.integers(0, 16, (4, 48))
    codes[0] = 15  # all-max row
    codes[1] = 0  # all-min row
    outputs = [0, 1, 3]
    accs, _ = run_gemm(layer, codes, outputs, rng)
    layer = with_fitted_shift(layer, linear_accumulator(layer, codes))
    got = run_requant(layer, accs, outputs * 4)
    want = run_linear(layer, codes)[:, outputs].ravel().tolist()
    assert got == want
    assert_spread(want, layer.output)


def _worst_case_layer(fmt: str, sign: int, c: int = 64):
    """All operands at the extreme whose products share ``sign``: the accumulator reaches
    +-acc_max (bias at its port's extreme too)."""
    groups = 4 if fmt == "cag" else 1
    rng = np.random.default_rng(4)
    layer = linear_layer(rng, fmt, c, 1, groups=groups, log_levels=4)
    mult_bits, bias_bits = 26, 36
    layer = with_field(layer, "group_multiplier", np.full(len(layer.group_multiplier), 2**mult_bits - 1))
    layer = with_field(layer, "bias_acc", np.array([2 ** (bias_bits - 1) - 1 if sign > 0 else -(2 ** (bias_bits - 1))]))
    high = sign > 0 or fmt != "hluq"  # HLUQ operands are never negative: the weight carries the sign
    layer = with_field(layer, "weights.codes", np.full((1, c), 15 if high else 0, np.uint8))
    layer = with_field(layer, "weights.zero_point", np.array([0 if high else 15]))
    if fmt == "hluq":
        return layer, np.full((1, c), 15)
    if fmt == "cag":
        labels = np.arange(c) % groups
        layer = with_field(layer, "input.channel_group", labels)
        layer = with_field(layer, "input.permutation", np.argsort(labels, kind="stable"))
        layer = with_field(layer, "input.group_zero_point", np.full(groups, 0 if sign > 0 else 15))
    else:
        layer = with_field(layer, "input.zero_point", 0 if sign > 0 else 15)
    return layer, np.full((1, c), 15 if sign > 0 else 0)


@pytest.mark.parametrize("fmt", ["uniform", "cag", "hluq"])
@pytest.mark.parametrize("sign", [1, -1])
def test_worst_case_inputs_reach_the_derived_accumulator_bound(fmt, sign):
    layer, codes = _worst_case_layer(fmt, sign)
    widths = gemm_widths(layer)
    (acc,), _ = run_gemm(layer, codes, [0])
    assert acc == (widths.acc_max - 1 if sign > 0 else -widths.acc_max)
    assert abs(acc) >= 2 ** (widths.acc_bits - 2)  # every accumulator bit is needed


def test_mac_lane_computes_a_padded_strided_conv_like_conv_accumulator():
    rng = np.random.default_rng(7)
    base = linear_layer(rng, "uniform", 12, 2)
    weight_codes = rng.integers(0, 16, (2, 3, 2, 2)).astype(np.uint8)
    layer = ConvLayer(name="conv", weights=with_field(base.weights, "codes", weight_codes), bias=base.bias,
                      bias_acc=base.bias_acc, input=base.input, group_multiplier=base.group_multiplier,
                      group_frac_bits=base.group_frac_bits, output=base.output, stride=2, padding=1, groups=1)
    codes = rng.integers(0, 16, (1, 3, 4, 4))
    z = layer.input.zero_point
    padded = np.pad(codes, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=z)  # padding enters as the zero point
    weight = signed_weight(layer.weights.codes, layer.weights.zero_point)
    stream, want = [], []
    ref = conv_accumulator(layer, codes)
    for o, y, x in itertools.product(range(2), range(3), range(3)):
        patch = padded[0, :, 2 * y:2 * y + 2, 2 * x:2 * x + 2].ravel()
        for j, (code, w) in enumerate(zip(patch, weight[o].ravel())):
            stream.append({"valid": 1, "first": j == 0, "last": j == 11, "code": code, "weight": w, "group": 0,
                           "bias": layer.bias_acc[o]})
        want.append([int(ref[0, o, y, x])])
    dut = GroupedMacLane.from_layer(layer)
    seen = simulate(dut, mac_static(layer), stream, [dut.acc], dut.done, tail=dut.latency + 2)
    assert_stream_results(dut, stream, seen, want)


@pytest.mark.parametrize("fmt,terms", [("cag", 5), ("uniform", 5), ("hluq", 5)])
def test_pes_take_the_shortest_rows_back_to_back(fmt, terms):
    rng = np.random.default_rng(5)
    layer = linear_layer(rng, fmt, terms, 3)
    _, pe = run_gemm(layer, rng.integers(0, 16, (4, terms)), [0, 1, 2])
    # So the rows above came at the fastest allowed rate: the group loop (4 CAG groups + 1), or for
    # fewer groups the hold of the bias until the first product (load, select, 2 multiply stages).
    assert pe.min_interval == terms


def test_mac_lane_keeps_small_products_off_hard_multipliers():
    lane = GroupedMacLane(MacWidths(4, 4, 64, 4, 25, 36))
    # Only the once-per-output m_g * P_g multiplies: a 15-bit partial by 25 bits is two DSP pieces.
    assert len(assert_dsp_sized(rtlil.convert(lane, name="top"), {"top.accumulator.multiplier"})) == 2
    # operands, term, load, 4 groups, multiplier operands, 2 multiply stages, accumulate
    assert lane.latency == 2 + 1 + 4 + 1 + 2 + 1


# ---- HLUQ PE -------------------------------------------------------------------------------------

@pytest.mark.parametrize("levels", [1, 2, 4, 8, 15])
def test_hluq_pe_equals_the_reference_for_every_code(levels):
    rng = np.random.default_rng(6 + levels)
    layer = linear_layer(rng, "hluq", 32, 4, log_levels=levels)
    codes = np.concatenate([np.arange(16), np.arange(16)[::-1]])[None].repeat(3, 0)
    codes[1] = rng.permutation(codes[1])
    codes[2] = rng.integers(0, 16, 32)
    accs, _ = run_gemm(layer, codes, range(4), rng)
    layer = with_fitted_shift(layer, linear_accumulator(layer, codes))
    want = run_linear(layer, codes).ravel().tolist()
    assert run_requant(layer, accs, list(range(4)) * 3) == want
    assert_spread(want, layer.output)


def test_hluq_pe_uses_shifts_and_adds_per_term():
    pe = HluqPE(HluqWidths(4, 4, 4, 64, 27, 36))
    assert "cell $mul" not in module_text(pe, "top")
    assert len(assert_dsp_sized(rtlil.convert(pe, name="top"), {"top.accumulator.multiplier"})) == 2
    assert pe.latency == 2 + 1 + 2 + 1 + 2 + 1  # as the MAC lane's, with 2 groups


# ---- AGQ softmax-value unit ----------------------------------------------------------------------

def run_agq(layer, probs: np.ndarray, values: np.ndarray, rng=None) -> list[list[int]]:
    """Simulate the unit with one lane per head dimension; asserts the reference, returns the accs."""
    sm = layer.softmax
    zero = layer.v.zero_point
    dut = AgqValueUnit.from_layer(layer, lanes=values.shape[1])
    stream = []
    for q in range(probs.shape[0]):
        for k in range(probs.shape[1]):
            stream.append({"valid": 1, "first": k == 0, "last": k == probs.shape[1] - 1, "code": probs[q, k],
                           "values": [int(v) for v in values[k]]})
            if rng is not None and rng.random() < 0.1:
                stream.append({**stream[-1], "valid": 0, "first": 0, "last": 0})
    want = attention_values(agq_weights(probs, sm.tau, sm.lut, sm.max_shift, sm.act_bits), values, zero)
    seen = simulate(dut, {"value_zero_point": zero}, stream, [dut.acc[i] for i in range(dut.lanes)], dut.done,
                    tail=dut.latency + 2)
    assert_stream_results(dut, stream, seen, want.tolist())
    return [v for _, v in seen]


@pytest.mark.parametrize("tau,max_shift", [(1, 14), (1, 5), (2, 7), (2, 3), (4, 3), (4, 1), (4, 0)])
def test_agq_unit_equals_the_reference_for_every_code(tau, max_shift):
    rng = np.random.default_rng(10 * tau + max_shift)
    layer = attention_layer(rng, tau, max_shift, keys=16, value_zero=int(rng.integers(0, 16)))
    probs = np.stack([np.arange(16), rng.permutation(16), rng.integers(0, 16, 16)])
    values = rng.integers(0, 16, (16, 4))
    values[0] = [0, 15, 0, 15]
    accs = run_agq(layer, probs, values, rng)
    layer = with_fitted_shift(layer, np.ravel(accs))
    out = layer.output
    dut = Requantizer.from_layer(layer)
    stream = [{"valid": 1, "acc": a, "multiplier": out.multiplier[0], "shift": out.shift[0],
               "zero_point": out.zero_point[0]} for a in np.ravel(accs)]
    got = [v[0] for _, v in simulate(dut, {}, stream, [dut.out], dut.out_valid, tail=dut.latency + 1)]
    want = run_attention_values(layer, probs, values).ravel().tolist()
    assert got == want
    assert_spread(want, out)


@pytest.mark.parametrize("tau", [1, 2, 4])
@pytest.mark.parametrize("sign", [1, -1])
def test_agq_worst_case_reaches_the_derived_accumulator_bound(tau, sign):
    rng = np.random.default_rng(20 + tau)
    keys = 16
    layer = attention_layer(rng, tau, (16 - 2) // tau, keys=keys, value_zero=0 if sign > 0 else 15)
    widths = attention_widths(layer)
    accs = run_agq(layer, np.zeros((2, keys), np.int64), np.full((keys, 2), 15 if sign > 0 else 0))
    assert accs == [[sign * widths.acc_max] * 2] * 2
    assert widths.acc_max >= 2 ** (widths.acc_bits - 2)


def test_agq_unit_takes_one_key_rows_back_to_back():
    rng = np.random.default_rng(30)
    layer = attention_layer(rng, 2, 7, keys=1, value_zero=8)
    run_agq(layer, rng.integers(0, 16, (6, 1)), rng.integers(0, 16, (1, 3)))


def test_agq_unit_has_one_lut_and_no_hard_multiplier():
    tau4 = AgqValueUnit(AgqWidths(4, 4, (32768, 27554, 23170, 19484), 3, 4, 64), lanes=4)
    text = module_text(tau4, "top")
    assert "cell $mul" not in text
    assert len(re.findall(r"\b32768\b|16'1000000000000000", text)) == 1
    assert text.count("cell $add") == 4 * (4 + 1)  # per lane: 5-term shift-add product, accumulator
    tau1 = module_text(AgqValueUnit(AgqWidths(4, 1, (1,), 14, 4, 64), lanes=4), "top")
    assert "cell $mul" not in tau1
    assert tau1.count("cell $add") == 4  # tau = 1: the product is a wire, only the accumulators add


# ---- Verilog and the torch-free import -----------------------------------------------------------

def test_unit_verilog_emits_a_module_with_the_signature_ports():
    unit = GroupedMacLane(MacWidths(4, 4, 16, 2, 25, 36))
    text = unit_verilog(unit)
    header = re.search(r"module GroupedMacLane\(([^)]*)\);", text)
    assert header is not None
    ports = {p.strip() for p in header.group(1).split(",")}
    assert {"valid", "first", "last", "code", "weight", "group", "zero_points", "multipliers", "bias", "acc",
            "done", "clk", "rst"} <= ports
    assert re.search(r"output \[\d+:0\] acc;", text)


def test_hw_imports_and_elaborates_without_torch():
    code = """
import importlib, pkgutil, sys
import hw
names = {m.name for m in pkgutil.walk_packages(hw.__path__, "hw.")}
for name in sorted(names):
    importlib.import_module(name)
assert {"hw.widths", "hw.generate", "hw.units.requant", "hw.units.grouped_mac", "hw.units.hluq_pe",
        "hw.units.agq_av", "hw.units.combine", "hw.units.shift_add"} <= names, names
import numpy as np
from amaranth.back import rtlil
from hw.generate import unit_verilog
from hw.units import AgqValueUnit, GroupedMacLane, HluqPE, Requantizer
from hw.widths import AgqWidths, HluqWidths, MacWidths, RequantWidths
sys.path.insert(0, "tests")
from synthetic_layers import linear_layer
layer = linear_layer(np.random.default_rng(0), "uniform", 8, 1)
units = [GroupedMacLane(MacWidths(4, 4, 8, 2, 9, 9)), HluqPE(HluqWidths(4, 4, 4, 8, 9, 9)),
         AgqValueUnit(AgqWidths(4, 2, (4, 3), 3, 4, 8)), Requantizer(RequantWidths(20, 0, 15)),
         GroupedMacLane.from_layer(layer)]
for unit in units:
    rtlil.convert(unit)
assert "module Requantizer" in unit_verilog(Requantizer.from_layer(layer))
assert "torch" not in sys.modules
print(len(names))
"""
    result = run_without_torch(code)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 8
