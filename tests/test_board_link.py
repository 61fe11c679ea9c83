"""The board design (``hw/board``): link protocol, UART, PLL dividers, the ULX3S top's build plan, and
the whole board (core, block-RAM memory, UART, link) on Verilator driven through its UART pins by
cocotbext-uart, with the host driver running real LiteMedSAM layer slices of each kind bit-exactly and
malformed frames answered with errors.

The Verilator tests build the board with a 2 x 2 W4 core once (cached in sim_build/, keyed by the
design; a few minutes the first time) and export an AHCPTQ W4A4 LiteMedSAM bundle with its captured
input codes (about a minute).
"""

from __future__ import annotations

import importlib.util
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from hw.board import protocol as P

ROOT = Path(__file__).resolve().parents[1]


# ---- protocol, PLL ------------------------------------------------------------------------------

def test_crc_is_ccitt_false_and_its_xor_masks_match_the_bytewise_update():
    assert P.crc16(b"123456789") == 0x29B1          # CRC-16/CCITT-FALSE check value
    rng = np.random.default_rng(0)
    masks = P.crc16_masks()
    for _ in range(200):
        crc, byte = int(rng.integers(0, 1 << 16)), int(rng.integers(0, 256))
        bits = [(bin(crc & cm).count("1") + bin(byte & bm).count("1")) & 1 for cm, bm in masks]
        assert sum(b << i for i, b in enumerate(bits)) == P.crc16_update(crc, byte)
    frame = P.request(P.WRITE_MEM, 7, 1, bytes(range(32)))
    assert P.crc16(frame[1:]) == 0 and len(frame) == P.REQUEST_HEADER + 32 + P.CRC_BYTES


def test_pll_dividers_match_ecppll_and_the_uart_divides_the_clock():
    from hw.board.pll import pll_setting, uart_baud

    # what prjtrellis' ecppll writes for these outputs from 25 MHz
    for mhz, divs in ((60, (5, 12, 10)), (75, (1, 3, 8)), (150, (1, 6, 4)), (48, (8, 15, 13))):
        s = pll_setting(25_000_000, mhz * 1e6)
        assert (s.clki_div, s.clkfb_div, s.clkop_div) == divs
        assert 400e6 <= s.vco <= 800e6 and s.pfd >= 3.125e6
    assert float(pll_setting(25_000_000, 48e6).output) == 46.875e6
    assert uart_baud(60_000_000) == 3_000_000 and uart_baud(100_000_000) == 2_000_000
    with pytest.raises(ValueError):
        pll_setting(25_000_000, 500e6)


# ---- the link and the UART in Amaranth's simulator ----------------------------------------------

def _link_bench(frames: list[bytes], stage_bytes=128, mem_words=64, timeout=50, busy=False):
    """HostLink + BlockRamMemory + 16 plain registers; each frame's bytes go straight into the link's
    receive port; returns the bytes the link sends after each frame."""
    from amaranth.hdl import Array, Module, Signal
    from amaranth.lib import wiring
    from amaranth.sim import Simulator

    from hw.board.extmem import BlockRamMemory
    from hw.board.link import HostLink

    class Bench(wiring.Component):
        def __init__(self):
            self.link = HostLink(256, mem_words, stage_bytes, timeout, clock_khz=1234, divisor=8)
            super().__init__({})

        def elaborate(self, platform):
            m = Module()
            m.submodules.link = link = self.link
            m.submodules.mem = mem = BlockRamMemory(256, 33, mem_words)
            registers = Array(Signal(32, name=f"r{i}") for i in range(16))
            with m.If(link.reg_we):
                m.d.sync += registers[link.reg_addr[:4]].eq(link.reg_wdata)
            m.d.sync += link.reg_rdata.eq(registers[link.reg_addr[:4]])
            m.d.comb += [mem.host_sel.eq(link.mem_sel), mem.host_addr.eq(link.mem_addr),
                         mem.host_wdata.eq(link.mem_wdata), mem.host_we.eq(link.mem_we),
                         link.mem_rdata.eq(mem.host_rdata), link.core_busy.eq(busy)]
            return m

    bench = Bench()
    sim = Simulator(bench)
    sim.add_clock(1e-8)
    answers, got = [], bytearray()

    async def collect(ctx):
        ctx.set(bench.link.tx_ready, 1)
        async for _, _, valid, data in ctx.tick().sample(bench.link.tx_valid, bench.link.tx_data):
            if valid:
                got.append(data)

    async def send(ctx):
        link = bench.link
        for frame in frames:
            for b in frame:
                ctx.set(link.rx_data, b)
                ctx.set(link.rx_valid, 1)
                await ctx.tick()
                ctx.set(link.rx_valid, 0)
                await ctx.tick().repeat(2)
            await ctx.tick().repeat(3 * timeout)
            answers.append(bytes(got))
            got.clear()

    sim.add_process(collect)
    sim.add_testbench(send)
    sim.run()
    return answers


def test_the_link_answers_every_frame_and_a_broken_frame_changes_nothing():
    words = bytes(range(64))
    bad = bytearray(P.request(P.WRITE_MEM, 7, 1, bytes([9] * 32)))
    bad[12] ^= 1
    frames = [
        P.request(P.WRITE_REGS, 3, 2, struct.pack("<2I", 0x11223344, 0xDEADBEEF)),
        P.request(P.READ_REGS, 2, 3),
        P.request(P.WRITE_MEM, 5, 2, words),
        P.request(P.READ_MEM, 4, 3),
        bytes(bad),
        P.request(P.READ_MEM, 7, 1),
        P.request(P.READ_MEM, 63, 2),
        P.request(0x77),
        P.request(P.WRITE_MEM, 0, 5, bytes(160)),          # 160 bytes > the 128-byte staging buffer
        P.request(P.READ_REGS, 0, 1)[:5],                   # truncated
        b"\x00\x13" + P.request(P.STATUS),                  # garbage first
    ]
    answers = _link_bench(frames)
    assert all(P.crc16(a[1:]) == 0 and a[0] == P.SOF_ANSWER for a in answers)
    assert answers[0] == P.answer(P.WRITE_REGS, P.OK)
    assert answers[1] == P.answer(P.READ_REGS, P.OK, 3, struct.pack("<3I", 0, 0x11223344, 0xDEADBEEF))
    assert answers[2] == P.answer(P.WRITE_MEM, P.OK)
    assert answers[3] == P.answer(P.READ_MEM, P.OK, 3, bytes(32) + words)
    assert answers[4] == P.answer(P.WRITE_MEM, P.ERR_CRC)
    assert answers[5] == P.answer(P.READ_MEM, P.OK, 1, bytes(32))    # the bad frame wrote nothing
    assert answers[6] == P.answer(P.READ_MEM, P.ERR_RANGE)
    assert answers[7] == P.answer(0x77, P.ERR_COMMAND)
    assert answers[8] == P.answer(P.WRITE_MEM, P.ERR_RANGE)
    assert answers[9] == P.answer(0, P.ERR_TIMEOUT)
    flags, errors, mem_words, khz, info, timeout = struct.unpack("<6I", answers[10][5:-2])
    assert (errors, mem_words, khz, timeout) == (5, 64, 1234, 50) and flags & P.FLAG_LINK_ERROR
    assert info == P.VERSION << 24 | 7 << 16 | 8


def test_memory_commands_and_start_are_refused_while_the_core_runs():
    answers = _link_bench([P.request(P.READ_MEM, 0, 1), P.request(P.START), P.request(P.READ_REGS, 1, 1)], busy=True)
    assert answers[0] == P.answer(P.READ_MEM, P.ERR_BUSY)
    assert answers[1] == P.answer(P.START, P.ERR_BUSY)
    assert answers[2][:5] == bytes([P.SOF_ANSWER, P.READ_REGS, P.OK, 1, 0])


def test_uart_transmitter_and_receiver_round_trip():
    from amaranth.hdl import Module
    from amaranth.sim import Simulator

    from hw.board.uart import UartRx, UartTx

    m = Module()
    m.submodules.tx = tx = UartTx(5)
    m.submodules.rx = rx = UartRx(5)
    m.d.comb += rx.rx.eq(tx.tx)
    sent, got = [0x00, 0xFF, 0xA5, 0x5A, 0x01, 0x80], []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def bench(ctx):
        for b in sent:
            ctx.set(tx.data, b)
            ctx.set(tx.valid, 1)
            await ctx.tick().until(tx.ready)
            await ctx.tick()
            ctx.set(tx.valid, 0)
        for _ in range(200):
            if ctx.get(rx.valid):
                got.append(ctx.get(rx.data))
            await ctx.tick()

    async def watch(ctx):
        async for _, _, valid, data in ctx.tick().sample(rx.valid, rx.data):
            if valid:
                got.append(data)

    sim.add_process(watch)
    sim.add_testbench(bench)
    sim.run_until(1e-8 * 2000)
    assert got[:len(sent)] == sent


def test_the_ulx3s_top_uses_the_board_pins_and_constrains_the_pll_clock(tmp_path):
    from bitstreams.ulx3s import prepare
    from hw.board.ulx3s import board_design
    from sim.board_cases import small_core

    design = board_design(small_core(2, 2), 60)
    assert design.clock_hz == 60_000_000 and design.link.divisor == 20 and design.link.baud == 3_000_000
    prepare(design, tmp_path)
    lpf = (tmp_path / "top.lpf").read_text()
    for pin in ("G2", "M1", "L4", "B2", "H3", "D6"):
        assert f'SITE "{pin}"' in lpf
    assert 'SITE "L3"' not in lpf                     # uart_tx_enable stays an FPGA input
    assert 'FREQUENCY PORT "clk25_0__io" 25000000' in lpf   # nextpnr derives the core clock through the PLL
    rtlil = (tmp_path / "top.il").read_text()
    assert "EHXPLLL" in rtlil and "CLKFB_DIV" in rtlil
    # the synchronized reset reaches the flip-flops through a global buffer, not fabric routing
    buffer = re.search(r"cell \\DCCA \\reset_buffer\n((?:\s+connect [^\n]*\n)+)", rtlil)
    assert buffer and "connect \\CLKI \\reset_sync_rst" in buffer[1] and "connect \\CLKO \\rst\n" in buffer[1]


def test_lane_memories_go_to_lut_ram_on_request_and_free_their_block_rams():
    import dataclasses

    from amaranth.back import rtlil

    from hw.core.config import PRESETS, CoreConfig, CoreConfigError
    from hw.core.lane import Lane
    from hw.board.ulx3s import core_ebr_estimate

    block = PRESETS["w4-16x16"]
    lut = dataclasses.replace(block, lane_ram="lut")
    assert "lane_ram" not in block.to_dict() and lut.to_dict()["lane_ram"] == "lut"   # old digests stay
    assert CoreConfig.from_dict(lut.to_dict()) == lut and lut.digest != block.digest
    styles = {}
    for cfg in (block, lut):
        text = rtlil.convert(Lane(cfg))
        styles[cfg.lane_ram] = re.findall(r'attribute \\ram_style "(\w+)"', text)
    assert styles == {"block": ["block"] * 3, "lut": ["distributed"] * 3}
    # 16 lanes x (2 blocks of 64-bit X, Y sums + 2 x 2 blocks of 48-bit accumulators)
    assert core_ebr_estimate(block) - core_ebr_estimate(lut) == 16 * 6
    with pytest.raises(CoreConfigError, match="lane_ram must be one of"):
        dataclasses.replace(block, lane_ram="distributed")


def test_samhw_build_refuses_a_clock_the_pll_cannot_make_in_one_line(tmp_path):
    import subprocess
    import sys

    got = subprocess.run([sys.executable, "-m", "sw.cli", "build", "--board", "ulx3s-85f", "--core", "w4-16x16",
                          "--out", str(tmp_path), "--clock-mhz", "500"], capture_output=True, text=True, cwd=ROOT)
    assert got.returncode == 2 and got.stderr.count("\n") == 1 and "EHXPLLL output" in got.stderr, got.stderr
    assert not any(tmp_path.iterdir())


def test_build_keys_follow_the_rtl_not_the_host_driver():
    from bitstreams.ulx3s import build_key

    a = build_key({"x": 1}, ["--seed", "1"], {"yosys": "v"})
    assert a == build_key({"x": 1}, ["--seed", "1"], {"yosys": "v"}) != build_key({"x": 1}, ["--seed", "2"], {"yosys": "v"})
    from hw.board import RTL_SOURCES

    assert "host.py" not in RTL_SOURCES and "link.py" in RTL_SOURCES


# ---- the whole board on Verilator ---------------------------------------------------------------

def _verilator_missing() -> str | None:
    for module in ("cocotb", "cocotb_tools", "cocotbext.uart"):
        if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    from sim.verilator import verilator_root

    try:
        verilator_root()
    except ValueError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def litemedsam_slices(tmp_path_factory):
    """AHCPTQ W4A4 LiteMedSAM (statistics only, one calibration image) and real input codes of its
    layers on a held-out COCO image: linear and attention inputs as the export captures them, conv
    inputs by a hook on the conv's input quantizer."""
    import torch

    from sw.bundle import load_bundle
    from sw.data.calibration import items_from_coco
    from sw.data.coco import DEFAULT_COCO_ROOT, resolve_coco_folder
    from sw.export.bundle import export_bundle
    from sw.export.capture import capture_inputs
    from sw.models import load_model
    from sw.quant.calibrate import quantize
    from sw.quant.config import make_config
    from sw.quant.qmodules import QuantConv2d

    torch.manual_seed(0)
    items = items_from_coco(resolve_coco_folder(DEFAULT_COCO_ROOT, "train"), num_images=2, max_prompts=4)
    qmodel, _ = quantize(load_model("litemedsam"), make_config("ahcptq", "w4a4", recon="none"), items[:1],
                         progress=False)
    bundle = load_bundle(export_bundle(qmodel, items[:1], tmp_path_factory.mktemp("board") / "bundle", progress=False))
    conv_inputs, handles = {}, []
    for name, module in qmodel.named_modules():
        if isinstance(module, QuantConv2d):
            def hook(mod, args, name=name):
                codes = mod.input_quantizer.codes(args[0].detach()).to(torch.int64).numpy()
                conv_inputs.setdefault(f"{name}.input", codes[:1])
            handles.append(module.register_forward_pre_hook(hook))
    try:   # one forward on the held-out image: the export's capture and the conv hooks together
        inputs = capture_inputs(qmodel, items[1])
    finally:
        for h in handles:
            h.remove()
    inputs.update(conv_inputs)
    return bundle, inputs


@pytest.fixture(scope="module")
def board(request):
    reason = _verilator_missing()
    if reason:
        pytest.skip(f"verilator co-simulation unavailable: {reason}")
    from sim.board_cases import memory_words_needed, slice_cases, small_core
    from sim.board_runner import BoardSimulator

    config = small_core(2, 2)
    bundle, inputs = request.getfixturevalue("litemedsam_slices")
    preps, words = memory_words_needed(config, slice_cases(bundle, inputs))
    sim = BoardSimulator(config, max(words, 1024), ROOT / "sim_build")
    sim.build()
    return config, sim, preps, bundle


@pytest.mark.verilator
def test_real_layers_of_each_kind_run_bit_exactly_through_the_uart_link(board):
    from sim.board_cases import board_cosim

    config, sim, preps, _ = board
    results, totals = board_cosim(sim, config, preps, name="test_board_layers")
    lines = "\n".join(r.line() for r in results)
    assert all(r.ok for r in results), lines
    assert {r.layer.invocation_kind for r in results} >= {"linear uniform input", "conv 3x3 depthwise stride 2 (patch merging)",
                                                          "QK^T"} and any(k.layer.invocation_kind.startswith("A.V") for k in results)
    assert sum(r.layer.elements for r in results) > 100
    assert totals["retried"] == 0 and totals["error_answers"] == 0, totals
    # every byte crossed the link: each invocation sent its image's non-zero words and read its outputs
    assert all(r.words_sent > 0 and r.bytes_received > r.layer.words * config.bus_bytes for r in results)


@pytest.mark.verilator
def test_malformed_frames_get_error_answers_and_change_nothing(board):
    config, sim, _, _ = board
    got = sim.run("sim.board_scenarios:malformed", {"config": config.to_dict()}, name="test_board_malformed")
    answers = got["answers"]
    want = {"bad checksum (payload bit flipped)": P.ERR_CRC, "bad checksum (CRC byte)": P.ERR_CRC,
            "truncated header": P.ERR_TIMEOUT, "truncated payload": P.ERR_TIMEOUT, "unknown command": P.ERR_COMMAND,
            "memory range beyond the end": P.ERR_RANGE, "payload larger than the staging buffer": P.ERR_RANGE,
            "garbage, then a good frame": P.OK, "memory write while the core runs": P.ERR_BUSY,
            "START while the core runs": P.ERR_BUSY}
    for name, status in want.items():
        a = answers[name]
        assert a["crc_ok"] and a["status"] == status, (name, a)
        # exactly one answer per frame: header, payload (one INFO word for the good frame), CRC
        assert a["bytes"] == P.ANSWER_HEADER + P.CRC_BYTES + (4 if status == P.OK else 0), (name, a)
    assert got["memory_unchanged"]
    assert got["error_answers"] == len([s for s in want.values() if s != P.OK])
    assert got["driver_raises_status"] == P.ERR_RANGE


@pytest.mark.verilator
def test_the_runtime_backend_runs_an_invocation_on_the_simulated_board(board, tmp_path):
    """hw.board.backend.BoardBackend (hw.runtime's interface) on the QK^T slice: outputs equal sw/ref;
    the static image crosses the link once; a second run of the same inputs sends only the output words
    the first left (to give the invocation the fresh memory the backend contract promises)."""
    from hw.compiler.model import reference_outputs

    config, sim, preps, bundle = board
    case = next(p.case for p in preps if p.case.op == "scores")
    np.savez(tmp_path / "inputs.npz", **case.inputs)
    got = sim.run("sim.board_scenarios:run_backend",
                  {"config": config.to_dict(), "bundle": str(bundle.path), "layer": case.layer.name, "op": case.op,
                   "inputs": str(tmp_path / "inputs.npz"), "outputs": str(tmp_path / "outputs_{i}.npz")},
                  name="test_board_backend")
    want = reference_outputs(case.layer, case.op, case.inputs)
    for i in range(2):
        with np.load(tmp_path / f"outputs_{i}.npz") as out:
            assert set(out.files) == set(want) and all(np.array_equal(out[k], v) for k, v in want.items())
    opened, first, second = got["words_sent"]
    assert 0 < opened <= got["static_words"] and first > 0 and second <= got["output_words"], got
