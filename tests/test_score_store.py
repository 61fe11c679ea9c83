# amaranth: UnusedElaboratable=no
"""The tile store between the core's lanes and the softmax unit (hw/softmax/score_store.py) in Amaranth's
simulator: tiles written as the array delivers them (a row of K keys per cycle, rows interleaved, blocks in
any order), rows read back P keys per beat, every score and bias compared with the tile in numpy."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.softmax.score_store import READ_LATENCY, ScoreStore
from hw.softmax.stream import pack
from hw.units.block_ram import ebr_blocks
from sw.estimate.softmax_unit import tile_store_ebr


def _unpack(word: int, n: int, bits: int) -> list[int]:
    out = [(word >> (i * bits)) & ((1 << bits) - 1) for i in range(n)]
    return [v - (1 << bits) if v >> (bits - 1) else v for v in out]


def tile_writes(store: ScoreStore, rows: int) -> list[tuple[int, int]]:
    """Every (row, key block) of a tile, in the order the array delivers them: a block's rows in turn."""
    return [(r, blk) for blk in range(store.blocks) for r in range(rows)]


async def write_tile(ctx, ports, store: ScoreStore, scores: np.ndarray, order):
    """A tile of ``scores`` [rows, keys] through ``ports``' w_* inputs, a (row, key block) of ``order`` per
    cycle, the keys past the row's end written as 0."""
    rows, keys = scores.shape
    k = store.cols
    padded = np.zeros((rows, store.blocks * k), np.int64)
    padded[:, :keys] = scores
    for r, blk in order:
        ctx.set(ports.w_en, 1)
        ctx.set(ports.w_row, int(r))
        ctx.set(ports.w_block, int(blk))
        ctx.set(ports.w_scores, pack(padded[r, blk * k:(blk + 1) * k], store.score_bits))
        await ctx.tick()
    ctx.set(ports.w_en, 0)


async def write_relative_terms(ctx, ports, heights: np.ndarray, widths: np.ndarray):
    """The relative-position terms [rows, side] through ``ports``' rel_* inputs, one per cycle."""
    rows, side = heights.shape
    for r in range(rows):
        for i in range(side):
            ctx.set(ports.rel_en, 1)
            ctx.set(ports.rel_row, r)
            ctx.set(ports.rel_index, i)
            ctx.set(ports.rel_height, int(heights[r, i]))
            ctx.set(ports.rel_width, int(widths[r, i]))
            await ctx.tick()
    ctx.set(ports.rel_en, 0)


def run_store(store: ScoreStore, scores: np.ndarray, heights=None, widths=None, seed: int = 0, gaps: float = 0.3):
    """Write ``scores`` [rows, keys] (and the relative terms [rows, side]) and read every row back; returns
    the scores and biases read, [rows, keys] each, with the reads' beats in row order and random idle cycles."""
    rng = np.random.default_rng(seed)
    rows, keys = scores.shape
    p, b = store.lanes, store.score_bits
    writes = tile_writes(store, rows)
    rng.shuffle(writes)
    beats = [(int(r), i) for r in rng.permutation(rows) for i in range(-(-keys // p))]
    got_s, got_b = np.zeros((rows, keys), np.int64), np.zeros((rows, keys), np.int64)

    async def bench(ctx):
        await write_tile(ctx, store, store, scores, writes)
        if store.relative_side:
            await write_relative_terms(ctx, store, heights, widths)
            ctx.set(store.rel_words, heights.shape[1] // p)    # key rows of the terms' side
        pending = []
        queue = list(beats)
        while queue or pending:
            issue = bool(queue) and rng.random() >= gaps
            if issue:
                r, i = queue.pop(0)
                ctx.set(store.r_row, int(r))
                ctx.set(store.r_first, int(i == 0))
            ctx.set(store.r_en, issue)
            await ctx.tick()
            pending = [(t - 1, beat) for t, beat in pending] + ([(READ_LATENCY, (r, i))] if issue else [])
            while pending and pending[0][0] == 1:
                _, (row, beat) = pending.pop(0)
                await ctx.delay(1e-9)       # the registered outputs of the edge just taken
                assert ctx.get(store.out_valid)
                cols = [c for c in range(beat * p, beat * p + p) if c < keys]
                vals = _unpack(ctx.get(store.out_scores), p, b)
                got_s[row, cols] = vals[:len(cols)]
                if store.relative_side:
                    got_b[row, cols] = _unpack(ctx.get(store.out_bias), p, store.bias_bits)[:len(cols)]

    sim = Simulator(store)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got_s, got_b


@pytest.mark.parametrize("cols,lanes,keys", [(4, 1, 13), (4, 2, 16), (8, 4, 20), (4, 4, 8)])
def test_rows_come_back_in_key_order_whatever_the_write_order(cols, lanes, keys):
    rng = np.random.default_rng(cols * 10 + lanes)
    rows, bits = 3, 15
    store = ScoreStore(cols, rows, keys, bits, lanes)
    scores = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (rows, keys))
    got, _ = run_store(store, scores, seed=keys)
    assert np.array_equal(got, scores)


@pytest.mark.parametrize("lanes", [1, 2])
def test_relative_terms_sum_per_key(lanes):
    rng = np.random.default_rng(lanes)
    rows, side, bits, bias_bits = 2, 4, 15, 18
    store = ScoreStore(4, rows, side * side, bits, lanes, relative_side=side, bias_bits=bias_bits)
    scores = rng.integers(-(1 << 14), 1 << 14, (rows, side * side))
    heights, widths = (rng.integers(-(1 << 16), 1 << 16, (rows, side)) for _ in range(2))
    got_s, got_b = run_store(store, scores, heights, widths, seed=lanes)
    key_row, key_col = np.divmod(np.arange(side * side), side)
    assert np.array_equal(got_s, scores)
    assert np.array_equal(got_b, heights[:, key_row] + widths[:, key_col])


def test_a_narrower_grid_reads_its_rows_of_key_slots():
    """Rows of 4 key slots on a path built for side 8: the terms of slot (y, x) are those of key row y and
    column x of the narrower grid, and ``r_row_end`` marks each key row's last beat."""
    rng = np.random.default_rng(5)
    rows, side, slots, lanes = 2, 8, 4, 2
    store = ScoreStore(4, rows, side * side, 15, lanes, relative_side=side, bias_bits=18)
    scores = rng.integers(-(1 << 14), 1 << 14, (rows, 3 * slots))
    heights, widths = (rng.integers(-(1 << 16), 1 << 16, (rows, slots)) for _ in range(2))
    got_s, got_b = run_store(store, scores, heights, widths, seed=9)
    key_row, key_col = np.divmod(np.arange(3 * slots), slots)
    assert np.array_equal(got_s, scores)
    assert np.array_equal(got_b, heights[:, key_row] + widths[:, key_col])

    ends = []

    async def bench(ctx):
        ctx.set(store.rel_words, slots // lanes)
        for beat in range(3 * slots // lanes):
            ctx.set(store.r_en, 1)
            ctx.set(store.r_first, int(beat == 0))
            ends.append(ctx.get(store.r_row_end))
            await ctx.tick()

    sim = Simulator(store)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert ends == [0, 1] * 3


def test_its_memories_are_the_ones_the_estimate_prices():
    """ViT-B's global rows on a 16 x 16 core: 16 memories of 16 x 256 scores, and the two tables."""
    store = ScoreStore(16, 16, 4096, 15, 2, relative_side=64)
    score_blocks = store.cols * ebr_blocks(store.score_bits, store.rows * store.blocks)
    tables = ebr_blocks(18, 16 * 64) + ebr_blocks(2 * 18, 16 * 32)
    assert score_blocks + tables == tile_store_ebr(16, 16, 4096, 15, relative_side=64) == 66


def test_refuses_lanes_that_do_not_divide_the_tile():
    with pytest.raises(ValueError, match="power of two dividing cols 16"):
        ScoreStore(16, 16, 4096, 15, 3)
    with pytest.raises(ValueError, match="multiple of lanes 4"):
        ScoreStore(16, 16, 196, 15, 4, relative_side=14)
