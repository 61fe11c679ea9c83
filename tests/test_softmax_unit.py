"""The softmax unit (hw/softmax) in Amaranth's simulator: every code of every row equal to the integer
definition (sw/ref/log_softmax.LogSoftmax.codes), the cycles a row holds the unit equal to its cycle
model (``schedule``: when each row goes in, when the last code comes out), and one-line refusals of
what it cannot run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from hw.softmax.constants import LayerConstants
from hw.softmax.stream import beat_codes, row_beats
from hw.softmax.unit import LogSoftmaxUnit, UnitWidths, row_cycles, schedule
from sim.random_layers import attention_layer, with_field
from sw.bundle import BundleError
from sw.bundle.fixed_point import MULTIPLIER_BITS
from sw.ref.log_softmax import T_LIMIT, LogSoftmax
from test_hw_units import assert_dsp_sized


def softmax_of(rng, tau: int, rows: int, keys: int, bias: bool) -> LogSoftmax:
    layer = attention_layer(rng, tau, 7, keys, dim=8)
    layer = with_field(layer, "q.scale", 0.35)
    layer = with_field(layer, "k.scale", 0.4)
    layer = with_field(layer, "softmax.scale", 0.3)
    if bias:
        layer = with_field(layer, "attention_bias", rng.normal(0, 1.5, (1, rows, keys)).astype(np.float32))
    return LogSoftmax.of(layer)


def run_unit(unit: LogSoftmaxUnit, softmax: LogSoftmax, scores: np.ndarray, gaps: float = 0.0, seed: int = 0):
    """Codes [rows, keys] the unit writes for ``scores`` [rows, keys] (head 0 of the bias), the cycle each
    row's first beat went in and the cycle the last code came out, from the first beat in."""
    rng = np.random.default_rng(seed)
    rows, keys = scores.shape
    w = unit.widths
    bias = softmax.bias[0] if softmax.bias is not None else [None] * rows
    queue = [b for r in range(rows) for b in row_beats(scores[r], bias[r], w.lanes, w.score_bits, w.bias_bits)]
    beats_per_row = len(queue) // rows
    expected_beats = len(queue)
    out, firsts, last_out = [], [], []

    async def bench(ctx):
        for name, value in LayerConstants.of(softmax, unit.widths).ports().items():
            ctx.set(getattr(unit, name), value)
        cycle, taken = 0, 0
        while taken < expected_beats or len(out) < expected_beats:
            offer = taken < expected_beats and rng.random() >= gaps
            if offer:
                s, b, keep, last = queue[taken]
                ctx.set(unit.in_scores, s)
                ctx.set(unit.in_bias, b)
                ctx.set(unit.in_keep, keep)
                ctx.set(unit.in_last, last)
            ctx.set(unit.in_valid, offer)
            moved = offer and ctx.get(unit.in_ready)
            if ctx.get(unit.out_valid):
                out.append((ctx.get(unit.out_codes), ctx.get(unit.out_keep)))
                last_out[:] = [cycle]
            await ctx.tick()
            if moved:
                if taken % beats_per_row == 0:
                    firsts.append(cycle)
                taken += 1
            cycle += 1
            assert cycle < 100 * expected_beats + 1000, "the unit stopped"

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    firsts = np.array(firsts)
    return beat_codes(out, w.lanes).reshape(rows, keys), firsts - firsts[0], last_out[0] - firsts[0]


@pytest.mark.parametrize("lanes,keys,tau,bias", [(1, 7, 1, False), (3, 49, 4, True), (4, 16, 2, False),
                                                 (8, 49, 4, True), (8, 64, 2, True)])
def test_every_code_equals_the_integer_definition_and_rows_take_the_modelled_cycles(lanes, keys, tau, bias):
    rng = np.random.default_rng(lanes * 100 + keys)
    rows = 6
    softmax = softmax_of(rng, tau, rows, keys, bias)
    scores = rng.integers(-900, 900, (rows, keys))
    scores[1] = 0                                  # equal logits: every key the same code
    scores[2, -1] = 40000                          # one dominant key: the others the zero code
    unit = LogSoftmaxUnit(UnitWidths(lanes=lanes, max_keys=-(-keys // lanes) * lanes + lanes))
    codes, starts, done = run_unit(unit, softmax, scores)
    ref = softmax.codes(scores[None, None])[0, 0] if not bias else softmax.codes(scores[None])[0]
    assert codes.shape == ref.shape
    assert np.array_equal(codes, ref), np.argwhere(codes != ref)[:5]
    assert len(set(ref.ravel().tolist())) > 2
    model = schedule([-(-keys // lanes)] * rows, unit.widths)
    assert starts.tolist() == model["start"] and done == model["done"][-1]
    assert row_cycles(keys, rows, unit.widths) == done + 1


def test_input_gaps_change_nothing_but_time():
    rng = np.random.default_rng(5)
    softmax = softmax_of(rng, 4, 5, 30, True)
    scores = rng.integers(-900, 900, (5, 30))
    unit = LogSoftmaxUnit(UnitWidths(lanes=4, max_keys=32))
    codes, starts, done = run_unit(unit, softmax, scores, gaps=0.4, seed=1)
    assert np.array_equal(codes, softmax.codes(scores[None])[0])
    assert done > row_cycles(30, 5, unit.widths) - 1


def test_extreme_scores_reach_the_clamp_and_the_zero_code():
    """The largest multiplier at the smallest shift takes 31-bit scores past +-2^40 (the clamp), and
    keys far below the maximum shift their e to 0."""
    rng = np.random.default_rng(7)
    base = softmax_of(rng, 2, 4, 12, False)
    softmax = dataclasses.replace(base, multiplier=(1 << MULTIPLIER_BITS) - 1, shift=17)
    scores = rng.integers(-(1 << 31), 1 << 31, (4, 12))
    scores[0, :3] = [(1 << 31) - 1, -(1 << 31), 0]
    scores[1] = rng.integers(-3, 4, 12)            # small logits still give codes below the zero code
    t = softmax.logits(scores)
    assert (np.abs(t) == T_LIMIT).any()
    unit = LogSoftmaxUnit(UnitWidths(lanes=4, max_keys=16))
    codes, _, _ = run_unit(unit, softmax, scores)
    ref = softmax.codes(scores)
    assert np.array_equal(codes, ref)
    assert (ref == softmax.zero_code).any() and (ref < softmax.zero_code).any()


def test_one_line_refusals():
    rng = np.random.default_rng(2)
    softmax = softmax_of(rng, 4, 2, 8, True)
    unit = UnitWidths(lanes=2, max_keys=8, bias_bits=4)
    with pytest.raises(BundleError, match="attn: attention bias .* 4-bit bias input"):
        LayerConstants.of(softmax, unit)
    with pytest.raises(BundleError, match="attn: integer softmax widths"):
        LayerConstants.of(dataclasses.replace(softmax, frac_bits=8), UnitWidths(lanes=2, max_keys=8))
    with pytest.raises(ValueError, match="does not fit the unit's 16-bit input"):
        row_beats(np.array([1 << 15]), None, 2, 16, 18)
    with pytest.raises(ValueError, match="positive multiple of lanes"):
        UnitWidths(lanes=3, max_keys=8)


def test_products_fit_hard_multipliers():
    text = rtlil.convert(LogSoftmaxUnit(UnitWidths(lanes=2, max_keys=8)))
    assert len(assert_dsp_sized(text, {"top.product_0", "top.product_1"})) == 2 * 2 * 2


def test_verilator_writes_every_code_of_the_definition_in_the_modelled_cycles(tmp_path):
    """The unit's Verilog in Verilator (cocotb): rows of 49 keys (the last beat partly padded) with
    TinyViT-like bias, every code against the integer definition, every row in its modelled cycle."""
    from sim.softmax_cosim import cosimulate

    rng = np.random.default_rng(11)
    softmax = softmax_of(rng, 4, 5, 49, True)
    scores = rng.integers(-900, 900, (5, 49))
    scores[3] = 0
    widths = UnitWidths(lanes=4, max_keys=64)
    codes, starts, done, _ = cosimulate(widths, LayerConstants.of(softmax, widths).ports(), scores, softmax.bias[0],
                                        tmp_path)
    ref = softmax.codes(scores[None])[0]
    assert np.array_equal(codes, ref), np.argwhere(codes != ref)[:5]
    model = schedule([13] * 5, widths)
    assert starts.tolist() == model["start"] and done == model["done"][-1]


def test_row_cycles_extends_the_schedule_exactly():
    """Past the first rows the schedule repeats every three rows; row_cycles extends it without running it."""
    widths = UnitWidths(lanes=4, max_keys=4096)
    for keys in (3, 49, 196, 4096):
        for rows in (1, 2, 3, 7, 15, 16, 17, 40, 301):
            assert row_cycles(keys, rows, widths) == schedule([-(-keys // 4)] * rows, widths)["done"][-1] + 1
