"""GEMM engine (hw.engine) in Amaranth's simulator: whole small layers, QK^T and A.V against sw.ref.

Layers are synthetic (tests/synthetic_layers.py); each run loads the engine through its bus,
starts it, reads every output word back and compares it with the numpy reference, and checks the
cycle count against the tiling model (tiles back to back at max(C, min_gap) cycles each).
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from hw.engine import GemmEngine
from hw.engine.image import decode_outputs, load_words, output_addresses
from hw.engine.layers import engine_config, linear_operands, scores_operands, values_operands
from hw.units.dsp_multiply import piece_offsets
from sw.ref.kernels import attention_scores
from sw.ref.layers import linear_accumulator, run_attention_values, run_linear
from synthetic_layers import CODES_OUT, HOST_OUT, attention_layer, linear_layer, with_field, with_fitted_shift
from test_hw_units import assert_dsp_sized


def run_engine(config, ops, timeout=200_000):
    """Load, start, wait for done, read back. Returns (y [rows, outputs], cycles)."""
    dut = GemmEngine(config)
    words = load_words(config, ops)
    addrs = output_addresses(config, ops.rows)
    result = {}

    async def bench(ctx):
        for addr, data in words:
            ctx.set(dut.addr, addr)
            ctx.set(dut.wdata, data)
            ctx.set(dut.we, 1)
            await ctx.tick()
        ctx.set(dut.we, 0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for _ in range(timeout):
            await ctx.tick()
            if ctx.get(dut.done):
                break
        else:
            raise AssertionError("engine never finished")
        assert not ctx.get(dut.busy)
        result["cycles"] = ctx.get(dut.cycles)
        read = []
        for addr in addrs:  # the sync read port samples addr at the tick; data is there after it
            ctx.set(dut.addr, addr)
            await ctx.tick()
            read.append(ctx.get(dut.rdata))
        result["words"] = read

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    y = decode_outputs(config, result["words"], ops.rows, ops.w.shape[0])
    return y, result["cycles"]


def linear_case(rng, fmt, c, o, rows, output, extreme=False):
    layer = linear_layer(rng, fmt, c, o, output=output)
    codes = rng.integers(0, 16, (rows, c))
    if extreme:  # the largest |term| everywhere: codes and weights at opposite ends of their ranges
        codes = np.where(rng.random((rows, c)) < 0.5, 0, 15)
        layer = with_field(layer, "weights.codes", np.where(rng.random((o, c)) < 0.5, 0, 15).astype(np.uint8))
        if fmt == "cag":
            layer = with_field(layer, "input.group_zero_point", np.where(np.arange(4) % 2 == 0, 0, 15))
    return with_fitted_shift(layer, linear_accumulator(layer, codes)), codes


def assert_run(config, ops, want):
    y, cycles = run_engine(config, ops)
    assert y.shape == want.shape
    np.testing.assert_array_equal(y, want)
    assert cycles == config.expected_cycles(ops.rows)
    return y, cycles


@pytest.mark.parametrize("fmt,output,pes,shape", [
    ("cag", CODES_OUT, (2, 2), (12, 6, 5)),
    ("cag", HOST_OUT, (3, 2), (16, 5, 7)),
    ("uniform", HOST_OUT, (2, 3), (9, 7, 4)),
    ("hluq", HOST_OUT, (2, 2), (12, 6, 5)),
    ("hluq", CODES_OUT, (1, 4), (10, 8, 3)),
])
def test_engine_runs_a_whole_linear_layer_like_run_linear(fmt, output, pes, shape):
    rng = np.random.default_rng(hash((fmt, pes)) % 2**32)
    c, o, rows = shape
    layer, codes = linear_case(rng, fmt, c, o, rows, output)
    config = engine_config(layer, pes=pes, max_rows=8)
    want = run_linear(layer, codes)
    y, _ = assert_run(config, linear_operands(layer, codes), want)
    if output == CODES_OUT:
        out = layer.output
        assert ((y > out.q_min) & (y < out.q_max)).mean() >= 0.5  # not a clamp-only comparison


@pytest.mark.parametrize("fmt", ["cag", "hluq"])
def test_engine_is_exact_at_extreme_codes_and_weights(fmt):
    rng = np.random.default_rng(7)
    layer, codes = linear_case(rng, fmt, 12, 4, 4, HOST_OUT, extreme=True)
    assert_run(engine_config(layer, pes=(2, 2), max_rows=4), linear_operands(layer, codes), run_linear(layer, codes))


def test_engine_waits_for_the_drain_when_the_reduction_is_short():
    """C = 3 < min_gap: tiles must be spaced by min_gap or the drain would read overwritten accumulators."""
    rng = np.random.default_rng(3)
    layer, codes = linear_case(rng, "uniform", 3, 6, 6, HOST_OUT)
    config = engine_config(layer, pes=(2, 2), max_rows=6)
    assert config.min_gap > config.reduction
    assert_run(config, linear_operands(layer, codes), run_linear(layer, codes))


def test_engine_scores_equal_the_reference_qk():
    rng = np.random.default_rng(11)
    layer = attention_layer(rng, 2, 7, keys=9, dim=8)
    q, k = rng.integers(0, 16, (7, 8)), rng.integers(0, 16, (9, 8))
    q[0], k[0] = 15 * (layer.q.zero_point < 8), 15 * (layer.k.zero_point < 8)
    config = engine_config(layer, "scores", pes=(2, 4), max_rows=8)
    want = attention_scores(q, layer.q.zero_point, k, layer.k.zero_point)
    assert_run(config, scores_operands(layer, q, k), want)


@pytest.mark.parametrize("tau,max_shift", [(1, 14), (2, 7), (4, 3)])
def test_engine_values_equal_run_attention_values(tau, max_shift):
    rng = np.random.default_rng(tau)
    keys, dim, queries = 10, 6, 5
    layer = attention_layer(rng, tau, max_shift, keys=keys, dim=dim)
    probs, values = rng.integers(0, 16, (queries, keys)), rng.integers(0, 16, (keys, dim))
    probs[0] = 0  # the largest operand in every term of one row
    from sw.ref.kernels import agq_weights, attention_values
    acc = attention_values(agq_weights(probs, tau, layer.softmax.lut, max_shift, 4), values, layer.v.zero_point)
    layer = with_fitted_shift(layer, acc)
    config = engine_config(layer, "values", pes=(2, 4), max_rows=queries)
    assert layer.softmax.TAG == "agq"
    assert_run(config, values_operands(layer, probs, values), run_attention_values(layer, probs, values))


def test_engine_runs_again_after_done_with_new_rows():
    rng = np.random.default_rng(5)
    layer, codes = linear_case(rng, "cag", 8, 4, 4, HOST_OUT)
    config = engine_config(layer, pes=(2, 2), max_rows=8)
    dut_ops = linear_operands(layer, codes)
    assert_run(config, dut_ops, run_linear(layer, codes))
    more = rng.integers(0, 16, (8, 8))
    assert_run(config, linear_operands(layer, more), run_linear(layer, more))


def test_engine_multiplies_only_in_the_pe_combines_and_the_requantizer_with_dsp_sized_pieces():
    from amaranth.back import rtlil

    rng = np.random.default_rng(0)
    layer, _ = linear_case(rng, "cag", 12, 6, 4, CODES_OUT)
    config = engine_config(layer, pes=(2, 3), max_rows=8)
    text = rtlil.convert(GemmEngine(config), name="top")
    combines = {f"top.array.pe{r}_{k}.accumulator.multiplier" for r in range(2) for k in range(3)}
    cells = assert_dsp_sized(text, combines | {"top.requant.multiply"})
    w = config.widths
    per_pe = len(piece_offsets(signed(w.partial_bits))) * len(piece_offsets(unsigned(w.mult_bits)))
    requant = len(piece_offsets(signed(config.acc_bits))) * len(piece_offsets(unsigned(31)))
    assert len(cells) == config.pes * per_pe + requant
    # Every memory read port is clocked: asynchronous reads cannot be placed in ECP5 block RAM.
    reads = [cell.split("  end")[0] for cell in text.split("cell $memrd_v2")[1:]]
    assert len(reads) == len(config.memories())
    assert all("parameter \\CLK_ENABLE 1" in cell for cell in reads)


def test_engine_config_refuses_operands_that_do_not_fit():
    rng = np.random.default_rng(0)
    layer, codes = linear_case(rng, "cag", 8, 4, 4, CODES_OUT)
    config = engine_config(layer, pes=(2, 2), max_rows=4)
    with pytest.raises(ValueError, match="do not fit"):
        load_words(config, linear_operands(layer, rng.integers(0, 16, (5, 8))))
    with pytest.raises(ValueError, match="PE array"):
        engine_config(layer, pes=(0, 2))


def test_generate_command_writes_verilog_and_a_design_description(tmp_path, capsys):
    import json

    from sw.bundle import Bundle, BundleHeader, write_bundle
    from sw.cli import main

    rng = np.random.default_rng(4)
    layer, _ = linear_case(rng, "cag", 16, 8, 4, HOST_OUT)
    layer = with_field(layer, "name", "blocks.0.attn.qkv")
    attn = attention_layer(rng, 2, 7, keys=9, dim=8, name="blocks.0.attn")
    header = BundleHeader(model="synthetic", recipe="test", weight_bits=4, act_bits=4, host_bits=16, tool="test",
                          calibration_images=0, quant_config={})
    write_bundle(Bundle(header, {layer.name: layer, attn.name: attn}), tmp_path / "b")
    assert main(["generate", str(tmp_path / "b"), "--layer", layer.name, "--pes", "2x4", "--rows", "8",
                 "--out", str(tmp_path / "g")]) == 0
    design = json.loads((tmp_path / "g" / "design.json").read_text())
    text = (tmp_path / "g" / design["verilog"]).read_text()
    assert f"module {design['top']}(" in text
    assert (design["pe_rows"], design["pe_cols"], design["reduction"], design["outputs"]) == (2, 4, 16, 8)
    assert {p["name"] for p in design["ports"]} >= {"addr", "wdata", "we", "rdata", "start", "done", "cycles"}
    assert {m["name"] for m in design["memories"]} == {"act", "wgt", "grp", "rq", "out", "col0", "col1", "col2", "col3"}
    assert "mac engine 2x4 PEs" in capsys.readouterr().out
    assert main(["generate", str(tmp_path / "b"), "--layer", attn.name, "--op", "values", "--rows", "9",
                 "--out", str(tmp_path / "v")]) == 0
    assert json.loads((tmp_path / "v" / "design.json").read_text())["kind"] == "agq"
    assert main(["generate", str(tmp_path / "b"), "--layer", attn.name, "--out", str(tmp_path / "x")]) == 2
    assert "--op scores" in capsys.readouterr().err


@pytest.mark.parametrize("achieved,verdict", [(101.26, "meets"), (97.44, "misses")])
def test_ecp5_smoke_report_states_the_measured_run(achieved, verdict):
    from bitstreams.ecp5_smoke import report_markdown, summarize

    def step(kind, delay, src, dst):
        return {"type": kind, "delay": delay, "from": {"cell": src[0], "port": src[1]},
                "to": {"cell": dst[0], "port": dst[1]}}

    pnr = {"fmax": {"clk": {"achieved": achieved, "constraint": 100}},
           "utilization": {"TRELLIS_COMB": {"used": 130, "available": 83640}, "TRELLIS_IO": {"used": 9}},
           "critical_paths": [
               {"from": "<async>", "to": "posedge clk", "path": [step("routing", 20.0, ("pin", "O"), ("x", "CE"))]},
               {"from": "posedge clk", "to": "posedge clk", "path": [
                   step("clk-to-q", 0.5, ("a", "Q"), ("a", "Q")), step("routing", 4.0, ("a", "Q"), ("b", "A")),
                   step("logic", 5.25, ("b", "A"), ("b", "F")), step("setup", 0.1, ("c", "DI"), ("c", "DI"))]}]}
    cells = {"LUT4": 100, "CCU2C": 10, "TRELLIS_FF": 50, "MULT18X18D": 6, "DP16KD": 3, "TRELLIS_DPR16X4": 2}
    r = summarize(cells, pnr, [95.04, achieved])
    assert (r["lut4"], r["ff"], r["dsp"], r["ebr"], r["placed_comb"], r["io"]) == (120, 50, 6, 3, 130, 9)
    assert (r["fmax_mhz"], r["fmax_placed_mhz"]) == (round(achieved, 1), 95.0)
    assert r["critical_path"] == {"from": "a.Q", "to": "c.DI", "total_ns": 9.85, "clk-to-q": 0.5, "logic": 5.25,
                                  "routing": 4.0, "setup": 0.1}
    design = {"top": "mac_engine", "source": {"layer": "l", "operation": "linear"}, "pe_rows": 2, "pe_cols": 2,
              "reduction": 8, "outputs": 4, "max_rows": 4, "timing": {"pe_latency": 11, "requant_latency": 7},
              "ebr_estimate": 4}
    run = {"command": "python -m bitstreams.ecp5_smoke B", "yosys": "Y", "nextpnr": "N", "pnr_options": ["--85k"],
           "synth_s": 1.0, "pnr_s": 2.0}
    text = report_markdown(design, r, run)
    assert f"**Fmax after routing: {round(achieved, 1)} MHz** against the 100 MHz target ({verdict} it)" in text
    assert "| MULT18X18D (DSP) | 6 | 156 | 3.8 |" in text and "from `a.Q` to `c.DI`" in text
