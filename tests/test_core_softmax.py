"""The softmax path inside the core: a QK^T whose rows go to the path's store and a SOFTMAX that turns them
into AGQ codes in OUT (``op`` probs). Compiled for small cores and run on the RTL in Amaranth's simulator,
every output code must equal sw/ref's integer softmax, external memory must equal the functional
model's byte for byte, and the run must take exactly the cycles of the cycle model."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from hw.compiler.errors import CompileError
from hw.compiler.model import reference_outputs
from hw.compiler.program import compile_layer
from hw.compiler.softmax import plan_probs
from hw.core.config import CoreConfig, CoreConfigError
from hw.compiler.plan import Arith
from hw.core.isa import (Buffer, DescActStrides, DescOtherStrides, Gemm, Instruction, Mode, Opcode, Segment, Softmax,
                         Transfer, softmax_row_words)
from hw.core.pysim import run_rtl
from hw.core.streams import Streams
from hw.core.timing import run_timing
from hw.fsim import FsimError
from hw.fsim import run as fsim_run
from hw.fsim.layout import (pack_bias_tables, pack_descriptor, pack_relative_terms, relative_terms_words,
                            unpack_relative_terms)
from sim.random_layers import attention_layer
from sw.ref.kernels import attention_scores
from sw.ref.log_softmax import LogSoftmax, grid_bias, grid_table
from tests.synthetic_layers import with_field

CORE = CoreConfig(rows=4, cols=4, act_bits=4, weight_bits=4, act_words=64, wgt_words=64, out_words=64,
                  param_words=32, prog_words=128, max_shift=15, pe_acc_bits=24, softmax_lanes=2,
                  softmax_max_keys=64, mem_read_latency=4, mem_write_latency=3)

# (name, core, tau, items, queries, keys, key dim): rows and keys that are not whole tiles or beats, keys
# whose vectors need two WGT fills per query block, queries that need ACT chunks, 4 keys a beat
CASES = [
    ("tau2", CORE, 2, 2, 10, 50, 8),
    ("tau1-keys-in-two-fills", dataclasses.replace(CORE, wgt_words=16), 1, 1, 6, 61, 8),
    ("tau4-query-chunks-4-lanes", dataclasses.replace(CORE, act_words=32, softmax_lanes=4), 4, 1, 150, 24, 16),
]


def run_probs(config: CoreConfig, layer, q: np.ndarray, k: np.ndarray):
    program = compile_layer(config, layer, "probs", {"q": q.shape, "k": k.shape})
    inv = program.invocations[0]
    memory = program.memory()
    inv.write_inputs(memory, config.bus_bits, q=q, k=k)
    cycles = model = 0
    expect = memory
    for streams in inv.parts:
        rtl = run_rtl(config, streams, memory, max_cycles=400_000)
        model += run_timing(config, streams, memory).cycles
        expect = fsim_run(config, streams, memory)
        assert np.array_equal(rtl.memory, expect)
        cycles += rtl.cycles
        memory = expect
    return inv.read_outputs(memory, config.bus_bits)["probs"], cycles, model, inv


@pytest.mark.parametrize("name,config,tau,items,nq,nk,d", CASES, ids=[c[0] for c in CASES])
def test_codes_on_the_rtl_equal_the_integer_softmax_in_the_modelled_cycles(name, config, tau, items, nq, nk, d):
    rng = np.random.default_rng([nq, nk, d])
    layer = attention_layer(rng, tau, {1: 14, 2: 7, 4: 3}[tau], keys=nk, dim=d)
    layer = with_field(layer, "q.scale", 0.6)     # scores spread over many codes
    q = rng.integers(0, 16, (items, 1, nq, d))
    k = rng.integers(0, 16, (items, 1, nk, d))
    codes, cycles, model, inv = run_probs(config, layer, q, k)
    want = LogSoftmax.of(layer).codes(attention_scores(q, layer.q.zero_point, k, layer.k.zero_point))
    assert np.array_equal(codes, want)
    assert np.array_equal(codes, reference_outputs(layer, "probs", {"q": q, "k": k})["probs"])
    assert len(np.unique(want)) > 4          # the rows are not all one code
    assert cycles == model
    ops = [Opcode(w & 0xF) for p in inv.parts for w in p.compute]
    assert ops.count(Opcode.SOFTMAX) == items * -(-nq // config.rows)


def test_each_query_block_starts_on_the_key_chunk_the_block_before_ended_on():
    """Rows too long for WGT: every block of R queries needs all key chunks, and alternating their order
    leaves the last chunk in place for the next block (whole buffers: one fill fewer a block)."""
    config = dataclasses.replace(CORE, wgt_words=8)      # 16 key blocks of one word each: two chunks
    layer = attention_layer(np.random.default_rng(2), 1, 14, keys=61, dim=8)
    plan = plan_probs(config, layer, (1, 1, 12, 8), (1, 1, 61, 8), "attn", 1)
    blocks, chunk = [], []
    for job in plan.jobs:                  # a block's jobs end with the one that takes its SOFTMAX
        chunk.append(next(f.key for f in job.fills if f.area == "wgt"))
        if job.softmax is not None:
            blocks, chunk = blocks + [chunk], []
    assert len(blocks) == 3 and len(blocks[0]) >= 2 and not chunk
    assert all(a[-1] == b[0] for a, b in zip(blocks, blocks[1:]))
    assert all(sorted(b) == sorted(blocks[0]) for b in blocks)


@pytest.mark.parametrize("prog_words", [13, 14, 15, 16])
def test_a_softmax_tile_never_straddles_two_runs_of_the_core(prog_words):
    """Programs longer than the instruction RAM continue in a new run, which starts with an empty store: a
    tile's to_store GEMMs and its SOFTMAX must share a run, wherever the RAM fills up."""
    config = dataclasses.replace(CORE, wgt_words=8, prog_words=prog_words)      # two key chunks a tile
    rng = np.random.default_rng(prog_words)
    layer = with_field(attention_layer(rng, 1, 14, keys=61, dim=8), "q.scale", 0.6)
    q, k = rng.integers(0, 16, (2, 1, 12, 8)), rng.integers(0, 16, (2, 1, 61, 8))
    program = compile_layer(config, layer, "probs", {"q": q.shape, "k": k.shape})
    inv = program.invocations[0]
    assert len(inv.parts) > 1
    memory = program.memory()
    inv.write_inputs(memory, config.bus_bits, q=q, k=k)
    for streams in inv.parts:
        memory = fsim_run(config, streams, memory)
    want = LogSoftmax.of(layer).codes(attention_scores(q, layer.q.zero_point, k, layer.k.zero_point))
    assert np.array_equal(inv.read_outputs(memory, config.bus_bits)["probs"], want)


def grid_biased(layer, rng, heads: int, side: int, top: int = 3000):
    """``layer`` with ``heads`` heads and a random TinyViT-style grid bias on a side x side grid, whose
    integer table (2^-F log2 units) is returned too."""
    table = rng.integers(-top, top + 1, (heads, side, side))
    bias = np.stack([grid_bias(t, 0, side * side) for t in table]) * (math.log(2) / 1024)
    layer = with_field(with_field(layer, "heads", heads), "attention_bias", bias.astype(np.float32))
    return layer, table


BIAS_CORE = dataclasses.replace(CORE, param_words=64, softmax_bias_side=7)     # room for a 7 x 7 table

# (name, core, windows, heads, grid side): beats that straddle key rows (odd sides), a head change between
# items, query blocks that start mid grid row, 4 keys a beat
BIAS_CASES = [
    ("side5-two-heads", BIAS_CORE, 2, 2, 5),
    ("side7-4-lanes", dataclasses.replace(BIAS_CORE, softmax_lanes=4), 1, 1, 7),
]


@pytest.mark.parametrize("name,config,windows,heads,side", BIAS_CASES, ids=[c[0] for c in BIAS_CASES])
def test_grid_biased_codes_on_the_rtl_equal_the_integer_softmax_in_the_modelled_cycles(name, config, windows, heads,
                                                                                       side):
    rng = np.random.default_rng([windows, heads, side])
    n, d = side * side, 8
    layer = with_field(attention_layer(rng, 2, 7, keys=n, dim=d), "q.scale", 0.6)
    layer, table = grid_biased(layer, rng, heads, side)
    q = rng.integers(0, 16, (windows, heads, n, d))
    k = rng.integers(0, 16, (windows, heads, n, d))
    codes, cycles, model, inv = run_probs(config, layer, q, k)
    unit = LogSoftmax.of(layer)
    assert np.array_equal(grid_table(unit.bias), table)
    scores = attention_scores(q, layer.q.zero_point, k, layer.k.zero_point)
    want = unit.codes(scores)
    assert np.array_equal(codes, want)
    assert not np.array_equal(codes, dataclasses.replace(unit, bias=None).codes(scores))   # the bias counts
    assert cycles == model
    softmaxes = [Softmax.decode(w) for p in inv.parts for w in p.compute if Opcode(w & 0xF) == Opcode.SOFTMAX]
    assert len(softmaxes) == windows * heads * -(-n // config.rows)
    assert {(s.query_row, s.query_col) for s in softmaxes} == {divmod(r, side) for r in range(0, n, config.rows)}
    assert heads <= sum(s.bias_load for s in softmaxes) <= heads * len(inv.parts)     # a table per head and run


def relative_positioned(layer, rng, side: int, top: float = 0.3):
    """``layer`` with random SAM ViT relative-position tables for a side x side grid."""
    tables = rng.uniform(-top, top, (2, 2 * side - 1, layer.key_dim)).astype(np.float32)
    return dataclasses.replace(layer, rel_pos_h=tables[0], rel_pos_w=tables[1])


REL_CORE = dataclasses.replace(CORE, param_words=64, softmax_relative_side=8)     # 8 x 8 grids: 64 keys

# (name, core, items, grid side): terms of two query blocks a run, 4 keys a beat; grids narrower than the
# path's, in key rows padded to whole beats (5 keys in 3 beats of 2 slots, 3 keys in a beat of 4), with query
# blocks whose last is short (25 and 9 queries on 4 rows)
REL_CASES = [
    ("side8-two-items", REL_CORE, 2, 8),
    ("side8-4-lanes-wide-rows", dataclasses.replace(REL_CORE, rows=8, softmax_lanes=4), 1, 8),
    ("side5-padded-2-lanes", REL_CORE, 1, 5),
    ("side3-padded-4-lanes-two-items", dataclasses.replace(REL_CORE, softmax_lanes=4), 2, 3),
]


@pytest.mark.parametrize("name,config,items,side", REL_CASES, ids=[c[0] for c in REL_CASES])
def test_relative_position_codes_on_the_rtl_equal_the_integer_softmax_in_the_modelled_cycles(name, config, items,
                                                                                            side):
    rng = np.random.default_rng([items, side, config.rows])
    n, d = side * side, 8
    layer = with_field(attention_layer(rng, 2, 7, keys=n, dim=d), "q.scale", 0.6)
    layer = relative_positioned(layer, rng, side)
    q = rng.integers(0, 16, (items, 1, n, d))
    k = rng.integers(0, 16, (items, 1, n, d))
    codes, cycles, model, inv = run_probs(config, layer, q, k)
    unit = LogSoftmax.of(layer)
    scores = attention_scores(q, layer.q.zero_point, k, layer.k.zero_point)
    want = unit.codes(scores, q)
    assert np.array_equal(codes, want)
    assert np.array_equal(codes, reference_outputs(layer, "probs", {"q": q, "k": k})["probs"])
    assert not np.array_equal(codes, dataclasses.replace(unit, relative=None).codes(scores))   # the terms count
    assert cycles == model
    softmaxes = [Softmax.decode(w) for p in inv.parts for w in p.compute if Opcode(w & 0xF) == Opcode.SOFTMAX]
    assert len(softmaxes) == items * -(-n // config.rows)
    slots = -(-side // config.softmax_lanes) * config.softmax_lanes      # a key row's slots, padding included
    beats = 0 if slots == config.softmax_relative_side else slots // config.softmax_lanes
    assert all(s.bias_load and (s.bias_side, s.query_col, s.keys) == (beats, slots - side, side * slots)
               for s in softmaxes)       # every tile copies its own terms


def test_relative_layers_the_path_cannot_take_are_refused_in_one_line():
    rng = np.random.default_rng(4)
    layer = relative_positioned(with_field(attention_layer(rng, 2, 7, keys=81, dim=8), "q.scale", 0.6), rng, 9)
    with pytest.raises(CompileError, match="its 9 x 9 grid exceeds the path's 8 x 8"):
        compile_layer(REL_CORE, layer, "probs", {"q": (1, 1, 81, 8), "k": (1, 1, 81, 8)})
    with pytest.raises(CompileError, match="its 30 queries and 30 keys are not one square grid"):
        compile_layer(REL_CORE, layer, "probs", {"q": (1, 1, 30, 8), "k": (1, 1, 30, 8)})
    wide = relative_positioned(with_field(attention_layer(rng, 2, 7, keys=64, dim=8), "q.scale", 0.6), rng, 8, 30.0)
    with pytest.raises(CompileError, match="relative-position terms can reach .* beyond the path's 16-bit terms"):
        compile_layer(REL_CORE, wide, "probs", {"q": (1, 1, 64, 8), "k": (1, 1, 64, 8)})
    with pytest.raises(CompileError, match="the path adds none \\(softmax_relative_side 0\\)"):
        compile_layer(CORE, wide, "probs", {"q": (1, 1, 64, 8), "k": (1, 1, 64, 8)})
    with pytest.raises(CoreConfigError, match="either a grid bias or relative-position terms"):
        dataclasses.replace(REL_CORE, softmax_bias_side=4)
    with pytest.raises(CoreConfigError, match="softmax_relative_side must be a multiple of softmax_lanes 2"):
        dataclasses.replace(REL_CORE, softmax_relative_side=7)
    with pytest.raises(CoreConfigError, match="softmax_relative_side needs the softmax path"):
        dataclasses.replace(REL_CORE, softmax_lanes=0)


def _with_then_without_bias(config: CoreConfig, key_blocks: int, wgt_ob: int, n_rows: int, keys: int,
                            table: np.ndarray, bias_fields: tuple, max_cycles: int) -> np.ndarray:
    """One run of two tiles of zero scores (nothing loaded into ACT or WGT): a to_store GEMM of ``key_blocks``
    key blocks and a SOFTMAX of n_rows x keys that copies ``table`` (PARAM words after the descriptor) with
    ``bias_fields`` (bias_side, bias_load, query_row, query_col), then a GEMM and a SOFTMAX with none. Checks
    RTL = functional model = cycle model; returns the OUT words the STORE leaves from word 32, the first
    tile's rows then the second's."""
    arith = Arith.of(Mode.MAC, 1, 16, (Segment(0, 4, 0, 0, 1, 0),))
    desc = arith.descriptor(key_blocks, 4, 1, 1, DescActStrides(0, 0, 0, 4, 0, 0),
                            DescOtherStrides(0, wgt_ob, 0, config.rows, 0, 1, 0, 0))
    desc = dataclasses.replace(desc, loops=dataclasses.replace(desc.loops, to_store=1))
    image = np.concatenate([pack_descriptor(desc, config.bus_bits), table])
    desc_words, words = pack_descriptor(desc, config.bus_bits).size // config.bus_bytes, image.size // config.bus_bytes
    tile_words = n_rows * softmax_row_words(keys, config.act_bits, config.bus_bits)
    constants = (1 << 30, 40, 1, 15, -21000)
    load = [Transfer(Opcode.LOAD, 0, 0, 0, 1, Buffer.PARAM, 0, 0, 1, words, 0, 0), Instruction(Opcode.END)]
    compute = [Gemm(Opcode.GEMM, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1),
               Softmax(Opcode.SOFTMAX, 0, 0, 0, 0, 0, n_rows, keys, *constants, *bias_fields, desc_words),
               Gemm(Opcode.GEMM, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1),
               Softmax(Opcode.SOFTMAX, 0, 0, 0, 1, tile_words, n_rows, keys, *constants), Instruction(Opcode.END)]
    store = [Transfer(Opcode.STORE, 1, 0, 0, 0, Buffer.OUT, 0, 32, 1, 2 * tile_words, 0, 0), Instruction(Opcode.END)]
    streams = Streams.assemble(load, compute, store)
    memory = np.zeros(64 * config.bus_bytes, np.uint8)
    memory[:image.size] = image
    rtl = run_rtl(config, streams, memory, max_cycles=max_cycles)
    expect = fsim_run(config, streams, memory, check_hazards=False)
    assert np.array_equal(rtl.memory, expect)
    assert rtl.cycles == run_timing(config, streams, memory).cycles
    return expect.reshape(-1, config.bus_bytes)[32:32 + 2 * tile_words]


def test_a_softmax_without_terms_adds_nothing_of_the_terms_the_store_still_holds():
    """One run: a SOFTMAX copies relative terms and uses them, the next takes none (the store's term memories
    outlive a tile, and on a board a run); zero scores, so the first tile's codes follow the terms alone and
    the second's are uniform. RTL = functional model = cycle model."""
    config = REL_CORE
    side, rows = config.softmax_relative_side, config.rows
    height, width = np.random.default_rng(6).integers(-3000, 3000, (2, rows, side))
    codes = _with_then_without_bias(config, side * side // config.cols, 16, rows, side * side,
                                    pack_relative_terms(height, width, config.bus_bits), (0, 1, 0, 0), 40_000)
    # a row of 64 4-bit codes a word
    assert len(np.unique(codes[0])) > 1 and all(len(np.unique(row)) == 1 for row in codes[rows:])


def test_relative_terms_round_trip_through_param_words():
    rng = np.random.default_rng(5)
    height, width = rng.integers(-(1 << 15), 1 << 15, (2, 3, 8))
    words = pack_relative_terms(height, width, 256)
    assert words.size == relative_terms_words(24, 256) * 32 == 3 * 32
    param = np.concatenate([np.zeros(64, np.uint8), words])
    got = unpack_relative_terms(param, 2, 3, 8, 256)
    assert np.array_equal(got[0], height) and np.array_equal(got[1], width)
    assert not np.array_equal(unpack_relative_terms(param, 1, 3, 8, 256)[0], height)


def test_a_softmax_without_bias_adds_nothing_of_the_table_the_path_still_holds():
    """One run: a SOFTMAX loads a grid bias table and uses it, the next takes no bias; zero scores, so the
    first tile's codes follow the bias alone and the second's are uniform. RTL = functional model = cycle
    model."""
    table = pack_bias_tables(np.array([[[0, -3000], [-1500, 2500]]]), BIAS_CORE.bus_bits)
    rows = _with_then_without_bias(BIAS_CORE, 1, 0, 2, 4, table, (2, 1, 0, 0), 20_000)[:, :2]   # 4 4-bit codes a row
    assert len(np.unique(rows[0])) > 1 and np.array_equal(rows[2], rows[3]) and len(np.unique(rows[2])) == 1


def test_layers_the_path_cannot_take_are_refused_in_one_line():
    rng = np.random.default_rng(3)
    layer = attention_layer(rng, 2, 7, keys=50, dim=8)
    shapes = {"q": (1, 1, 8, 8), "k": (1, 1, 50, 8)}
    biased = with_field(layer, "attention_bias", np.zeros((1, 8, 50), np.float32))
    with pytest.raises(CompileError, match="the path adds none"):
        compile_layer(CORE, biased, "probs", shapes)
    with pytest.raises(CompileError, match="not a function of the query-key offsets on a square grid"):
        compile_layer(BIAS_CORE, biased, "probs", shapes)
    grid, _ = grid_biased(layer, rng, 1, 8)
    with pytest.raises(CompileError, match="grid of side 8 is outside the path's 2..7"):
        compile_layer(BIAS_CORE, grid, "probs", {"q": (1, 1, 64, 8), "k": (1, 1, 64, 8)})
    grid, _ = grid_biased(layer, rng, 1, 5, top=40000)
    with pytest.raises(CompileError, match="beyond the path's 16-bit table"):
        compile_layer(BIAS_CORE, grid, "probs", {"q": (1, 1, 25, 8), "k": (1, 1, 25, 8)})
    positioned = dataclasses.replace(layer, rel_pos_h=np.zeros((15, 8), np.float32),
                                     rel_pos_w=np.zeros((15, 8), np.float32))
    with pytest.raises(CompileError, match="relative-position terms"):
        compile_layer(BIAS_CORE, positioned, "probs", shapes)
    with pytest.raises(CompileError, match="exceed the path's 64"):
        compile_layer(CORE, layer, "probs", {"q": (1, 1, 8, 8), "k": (1, 1, 80, 8)})
    with pytest.raises(CompileError, match="no softmax path"):
        compile_layer(dataclasses.replace(CORE, softmax_lanes=0), layer, "probs", shapes)
    with pytest.raises(CoreConfigError, match="softmax_lanes must be a power of two dividing cols 4"):
        dataclasses.replace(CORE, softmax_lanes=3)
    with pytest.raises(CoreConfigError, match="softmax_bias_side needs the softmax path"):
        dataclasses.replace(CORE, softmax_lanes=0, softmax_bias_side=7)
    with pytest.raises(CoreConfigError, match="softmax_bias_side must be 2..15"):
        dataclasses.replace(CORE, softmax_bias_side=16)


def _softmax_program(config: CoreConfig, to_store: int, n_rows: int, bias_side: int = 0, bias_load: int = 0):
    """One raw 16-bit GEMM of one tile (to_store or not), then (n_rows > 0) a SOFTMAX of its rows; nothing
    stored. Returns the streams and the memory image."""
    arith = Arith.of(Mode.MAC, 1, 16, (Segment(0, 4, 0, 0, 1, 0),))
    desc = arith.descriptor(1, 4, 1, 1, DescActStrides(0, 0, 0, 4, 0, 0), DescOtherStrides(0, 0, 0, 4, 0, 1, 0, 0))
    desc = dataclasses.replace(desc, loops=dataclasses.replace(desc.loops, to_store=to_store))
    image = pack_descriptor(desc, config.bus_bits)
    words = image.size // config.bus_bytes
    load = [Transfer(Opcode.LOAD, 0, 0, 0, 1, Buffer.PARAM, 0, 0, 1, words, 0, 0), Instruction(Opcode.END)]
    gemm = Gemm(Opcode.GEMM, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1)
    softmax = Softmax(Opcode.SOFTMAX, 0, 0, 0, 0, 0, n_rows, 4, 1 << 30, 40, 1, 15, 0, bias_side, bias_load)
    compute = [gemm, softmax] if n_rows else [gemm]
    memory = np.zeros(64 * config.bus_bytes, np.uint8)
    memory[:image.size] = image
    return Streams.assemble(load, compute + [Instruction(Opcode.END)], [Instruction(Opcode.END)]), memory


def test_the_functional_model_refuses_what_the_path_cannot_do():
    streams, memory = _softmax_program(CORE, to_store=0, n_rows=2)
    with pytest.raises(FsimError, match="reads tile rows no to_store GEMM has written"):
        fsim_run(CORE, streams, memory, check_hazards=False)
    streams, memory = _softmax_program(CORE, to_store=1, n_rows=2)
    fsim_run(CORE, streams, memory, check_hazards=False)
    bare = dataclasses.replace(CORE, softmax_lanes=0)
    with pytest.raises(FsimError, match="compute stream holds SOFTMAX"):
        fsim_run(bare, streams, memory, check_hazards=False)
    streams, memory = _softmax_program(bare, to_store=1, n_rows=0)
    with pytest.raises(FsimError, match="to_store on a core without a softmax path"):
        fsim_run(bare, streams, memory, check_hazards=False)
    streams, memory = _softmax_program(CORE, to_store=1, n_rows=2, bias_side=2)
    with pytest.raises(FsimError, match="grid bias of side 2, the path takes sides up to 0"):
        fsim_run(CORE, streams, memory, check_hazards=False)
    with pytest.raises(FsimError, match="no SOFTMAX of this run has loaded a table of that side"):
        fsim_run(BIAS_CORE, streams, memory, check_hazards=False)
    streams, memory = _softmax_program(BIAS_CORE, to_store=1, n_rows=2, bias_side=2, bias_load=1)
    fsim_run(BIAS_CORE, streams, memory, check_hazards=False)        # 4 keys: a 2 x 2 grid
    streams, memory = _softmax_program(BIAS_CORE, to_store=1, n_rows=2, bias_side=3, bias_load=1)
    with pytest.raises(FsimError, match="2 rows x 4 keys from query .0, 0. is not a part of a 3 x 3 grid"):
        fsim_run(BIAS_CORE, streams, memory, check_hazards=False)
    # relative terms: 4 keys in rows of 2 slots (one beat) are a 2 x 2 grid; rows of 6 slots are not
    streams, memory = _softmax_program(REL_CORE, to_store=1, n_rows=2, bias_side=1, bias_load=1)
    fsim_run(REL_CORE, streams, memory, check_hazards=False)
    streams, memory = _softmax_program(REL_CORE, to_store=1, n_rows=2, bias_side=3, bias_load=1)
    with pytest.raises(FsimError, match="relative-position terms of 4 keys, not rows of 6 slots"):
        fsim_run(REL_CORE, streams, memory, check_hazards=False)
    streams, memory = _softmax_program(REL_CORE, to_store=1, n_rows=2, bias_side=1)
    with pytest.raises(FsimError, match="SOFTMAX without relative terms .bias_load 0. and the grid fields set"):
        fsim_run(REL_CORE, streams, memory, check_hazards=False)
