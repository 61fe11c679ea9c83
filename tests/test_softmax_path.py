# amaranth: UnusedElaboratable=no
"""The tile store feeding the softmax unit (hw/softmax/path.py) in Amaranth's simulator: a tile written as
the array delivers it comes out as the codes of sw/ref/log_softmax, every one of them, in the unit's own
cycles plus the feeder's fixed latency, with and without SAM ViT's relative-position terms."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.softmax.constants import LayerConstants
from hw.softmax.path import FEED_LATENCY, SoftmaxPath
from hw.softmax.stream import beat_codes
from hw.softmax.unit import UnitWidths, row_cycles
from test_score_store import tile_writes, write_relative_terms, write_tile
from test_softmax_unit import softmax_of


def run_path(path: SoftmaxPath, softmax, scores: np.ndarray, heights=None, widths=None, key_pad: int = 0):
    """Codes [rows, keys] the path writes for a tile of ``scores`` [rows, key slots] (the kept ones: with
    ``key_pad``, each key row's last slots are padding), and the cycles from start to the last code out."""
    rows, keys = scores.shape
    out, cycles = [], []

    async def bench(ctx):
        for name, value in LayerConstants.of(softmax, path.widths).ports().items():
            ctx.set(getattr(path, name), value)
        await write_tile(ctx, path, path.store, scores, tile_writes(path.store, rows))
        if path.relative_side:
            await write_relative_terms(ctx, path, heights, widths)
            ctx.set(path.relative, 1)
            ctx.set(path.rel_words, heights.shape[1] // path.widths.lanes)
            ctx.set(path.key_pad, key_pad)
        ctx.set(path.start, 1)
        ctx.set(path.n_rows, rows)
        ctx.set(path.keys, keys)
        await ctx.tick()
        ctx.set(path.start, 0)
        cycle = 0
        expected = rows * -(-keys // path.widths.lanes)
        while len(out) < expected:
            if ctx.get(path.out_valid):
                out.append((ctx.get(path.out_codes), ctx.get(path.out_keep)))
                cycles[:] = [cycle]
            await ctx.tick()
            cycle += 1
            assert cycle < 50 * expected + 1000, "the path stopped"
        for _ in range(8):                         # nothing more comes out, and the path goes idle
            assert not ctx.get(path.out_valid)
            await ctx.tick()
        assert not ctx.get(path.busy)

    sim = Simulator(path)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return beat_codes(out, path.widths.lanes).reshape(rows, -1), cycles[0]


@pytest.mark.parametrize("lanes,rows,keys,tau", [(2, 4, 24, 2), (1, 3, 13, 1), (4, 5, 48, 4), (2, 2, 2, 2),
                                                  (4, 3, 13, 2)])
def test_a_tile_leaves_as_the_codes_of_the_definition_in_the_units_cycles(lanes, rows, keys, tau):
    rng = np.random.default_rng(lanes * 100 + keys)
    softmax = softmax_of(rng, tau, rows, keys, False)
    scores = rng.integers(-900, 900, (rows, keys))
    scores[0] = 0                                  # equal logits
    widths = UnitWidths(lanes=lanes, max_keys=-(-keys // lanes) * lanes + lanes, score_bits=15)
    codes, cycles = run_path(SoftmaxPath(4, rows, widths), softmax, scores)
    ref = softmax.codes(scores[None, None])[0, 0]
    assert np.array_equal(codes, ref), np.argwhere(codes != ref)[:5]
    assert len(set(ref.ravel().tolist())) > 1
    assert cycles + 1 == row_cycles(keys, rows, widths) + FEED_LATENCY


@pytest.mark.parametrize("lanes", [1, 2])
def test_relative_position_terms_reach_the_unit_as_its_bias(lanes):
    rng = np.random.default_rng(lanes)
    rows, side = 3, 4
    keys = side * side
    softmax = softmax_of(rng, 2, rows, keys, False)
    heights, widths = (rng.integers(-3000, 3000, (rows, side)) for _ in range(2))
    key_row, key_col = np.divmod(np.arange(keys), side)
    softmax = dataclasses.replace(softmax, bias=(heights[:, key_row] + widths[:, key_col])[None])
    scores = rng.integers(-900, 900, (rows, keys))
    unit = UnitWidths(lanes=lanes, max_keys=keys, score_bits=15)
    codes, cycles = run_path(SoftmaxPath(4, rows, unit, relative_side=side), softmax, scores, heights, widths)
    ref = softmax.codes(scores[None])[0]
    assert np.array_equal(codes, ref), np.argwhere(codes != ref)[:5]
    assert cycles + 1 == row_cycles(keys, rows, unit) + FEED_LATENCY


def test_a_narrower_grid_padded_to_whole_beats_gives_the_codes_of_its_own_keys():
    """A 3 x 3 grid on a path built for 8 x 8, two lanes: key rows of 4 slots, the last one padding. The
    padding enters neither maximum nor sum (huge scores there would change every code), and the codes
    are those of the 9 keys alone."""
    rng = np.random.default_rng(11)
    rows, grid, slots, lanes = 3, 3, 4, 2
    real = (np.arange(grid * slots) % slots) < grid
    softmax = softmax_of(rng, 2, rows, grid * grid, False)
    heights, widths = (rng.integers(-3000, 3000, (rows, slots)) for _ in range(2))
    key_row, key_col = np.divmod(np.arange(grid * slots)[real], slots)
    softmax = dataclasses.replace(softmax, bias=(heights[:, key_row] + widths[:, key_col])[None])
    scores = rng.integers(-900, 900, (rows, grid * slots))
    scores[:, ~real] = 30000
    unit = UnitWidths(lanes=lanes, max_keys=64, score_bits=16)
    codes, _ = run_path(SoftmaxPath(4, rows, unit, relative_side=8), softmax, scores, heights, widths, key_pad=1)
    ref = softmax.codes(scores[:, real][None])[0]
    assert np.array_equal(codes, ref), np.argwhere(codes != ref)[:5]
    assert len(set(ref.ravel().tolist())) > 1
