"""The speed and energy estimate (sw/estimate): costs equal the cycle model and the program's transfers,
the FP32 mapping rescales exactly the transfers it claims to, time / roof / energy follow their
formulas, toggle coverage is parsed into register and combinational bits, cosim reports are read, and
every outside constant carries a source. Fast: small synthetic layers and configurations only."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from hw.compiler import compile_layer
from hw.compiler.invocation import InvocationSpec
from hw.compiler.model import invocation_kind
from hw.core.config import PRESETS, CoreConfig
from hw.core.isa import Buffer, Opcode
from hw.core.timing import run_timing
from sim.random_layers import attention_layer, conv_layer, linear_layer
from sw.estimate.activity import CoreActivity, LaneActivity, Rates, class_of
from sw.estimate.analyze import analyze, cached_analysis
from sw.estimate.costs import CallCost, call_cost, macs_of
from sw.estimate.crosscheck import parse_cosim_report
from sw.estimate.designs import Design, core_blocks, fp32_blocks, scaled_array
from sw.estimate.energy import dynamic_pj, static_pj
from sw.estimate.fp32 import FITTING_SHRINK, Fp32Mapping, fp32_array, fp32_model_config, lanes_by_resources
from sw.estimate.perf import call_time
from sw.estimate.resources import core_name, load_resources, snapshot
from sw.estimate.sources import PUBLISHED, coefficients
from sw.estimate.workload import Call, Workload

SMALL = CoreConfig(rows=4, cols=4, act_bits=8, weight_bits=8, act_words=256, wgt_words=128, out_words=64,
                   param_words=64, prog_words=128)


def _call(layer, op, shapes, count=1, read_by="host"):
    spec = InvocationSpec.of(layer, op, shapes)
    return Call(spec, layer, count, invocation_kind(layer, op), read_by)


def _linear(seed=0, c=40, o=24, fmt="uniform"):
    return linear_layer(np.random.default_rng(seed), fmt, c, o, act_bits=8, weight_bits=8)


def test_call_cost_is_the_cycle_model_and_the_programs_transfers():
    layer = _linear()
    call = _call(layer, None, {"input": (2, 30, 40)})
    cost = call_cost(SMALL, call)
    program = compile_layer(SMALL, layer, None, {"input": (2, 30, 40)})
    inv = program.invocations[0]
    memory = program.memory()
    assert cost.cycles == sum(run_timing(SMALL, s, memory).cycles for s in inv.parts)
    loads = sum(i.rows * i.row_words for s in inv.parts for i in s.decoded("load") if i.opcode == Opcode.LOAD)
    stores = sum(i.rows * i.row_words for s in inv.parts for i in s.decoded("store") if i.opcode == Opcode.STORE)
    assert cost.bytes == (loads + stores) * SMALL.bus_bytes
    assert cost.macs == macs_of(call.spec, layer) == 60 * 40 * 24 == inv.macs
    assert cost.terms >= cost.macs / SMALL.pes          # padding only adds terms
    assert cost.lane_cycles > 0 and cost.out_words > 0
    # 60 rows of 24 outputs; each row of 4 columns gets a 256-bit word of its own, so the dense bytes are
    # a fraction of the stored ones
    out = inv.outputs["output"]
    assert cost.out_elements == 2 * 30 * 24 and cost.out_bits == out.bits
    assert cost.dense_store_bytes == 2 * 30 * 24 * out.bits / 8 < cost.write_bytes


def test_macs_of_conv_and_attention():
    rng = np.random.default_rng(1)
    conv = conv_layer(rng, 8, 12, 3, stride=2, padding=1, act_bits=8, weight_bits=8)
    spec = InvocationSpec.of(conv, None, {"input": (1, 8, 9, 9)})
    assert macs_of(spec, conv) == 12 * 5 * 5 * 8 * 9
    att = attention_layer(rng, 2, 7, keys=20, dim=8)
    scores = InvocationSpec.of(att, "scores", {"q": (3, 1, 11, 8), "k": (3, 1, 20, 8)})
    values = InvocationSpec.of(att, "values", {"probs": (3, 1, 11, 20), "v": (3, 1, 20, 8)})
    assert macs_of(scores, att) == 3 * 11 * 20 * 8 == macs_of(values, att)


def test_fp32_mapping_scales_only_the_transfers():
    config = fp32_model_config(SMALL, 4, 4)
    mapping = Fp32Mapping(config, {}, 4, 4)
    layer = _linear(2)
    program = compile_layer(config, layer, None, {"input": (50, 40)})
    streams = program.invocations[0].parts[0]
    out_bits = min(r.bits for r in program.invocations[0].outputs.values())
    scaled = mapping.physical_streams(streams, out_bits)
    assert scaled.compute == streams.compute
    for unit in ("load", "store"):
        for a, b in zip(streams.decoded(unit), scaled.decoded(unit)):
            if a.opcode not in (Opcode.LOAD, Opcode.STORE):
                assert a == b
                continue
            # a row of 4 float32 fills 128 of a word's 256 bits, as the 8-bit program's row of 4 codes fills 32
            factor = (4 if a.buffer in (Buffer.ACT, Buffer.WGT) else 1) if unit == "load" else 1
            assert b.rows * b.row_words == factor * a.rows * a.row_words
            assert (b.buffer, b.ext_addr, b.buf_addr) == (a.buffer, a.ext_addr, a.buf_addr)
    wide = Fp32Mapping(fp32_model_config(SMALL, 4, 16), {}, 4, 16)   # 16 float32: 2 words; 16 codes: 1
    assert [wide.store_factor(e) for e in (8, 16, 32)] == [2, 2, 1]
    assert [mapping.store_factor(e) for e in (8, 16, 32)] == [1, 1, 1]
    # a packed program's word holds 2 rows of 16 codes; each of them is 2 words of float32
    assert wide.store_factor(8, rows_per_word=2) == 4 and mapping.store_factor(8, rows_per_word=8) == 8
    native = call_cost(config, _call(layer, None, {"input": (50, 40)}))
    fp = call_cost(config, _call(layer, None, {"input": (50, 40)}), mapping)
    assert fp.macs == native.macs and fp.terms == native.terms
    assert fp.read_bytes > native.read_bytes and fp.cycles >= native.cycles
    assert fp.out_elements == native.out_elements == 50 * 24 and fp.out_bits == 32


def test_fp32_array_and_lane_bound():
    assert fp32_array(44) == (8, 8) and fp32_array(32) == (4, 8) and fp32_array(51) == (8, 8)
    assert fp32_array(1) == (1, 1) and fp32_array(65) == (8, 16)
    bound = lanes_by_resources(70000, 156, 1560, 3)
    assert bound == {"by_lut": 44, "by_dsp": 52, "lanes": 44}
    config = fp32_model_config(PRESETS["w8-16x16"], 8, 8)
    assert (config.rows, config.cols, config.act_bits, config.formats) == (8, 8, 8, ("uniform",))


def test_call_time_takes_the_longer_roof():
    cost = CallCost(macs=1000, cycles=1000, parts=1, gemms=1, tiles=1, terms=900, lane_cycles=0, out_rows=0,
                    out_words=0, load_beats={"act": 10, "wgt": 10, "param": 0}, store_beats=5, bus_bytes=32)
    t = call_time(cost, 100.0, 200e6)
    assert t["core_s"] == pytest.approx(1e-5) and t["memory_s"] == pytest.approx(800 / 200e6)
    assert t["bound"] == "compute" and t["seconds"] == t["core_s"]
    t = call_time(cost, 100.0, 1e6)
    assert t["bound"] == "memory" and t["seconds"] == pytest.approx(800 / 1e6)
    busy = dataclasses.replace(cost, load_beats={"act": 950, "wgt": 0, "param": 0})
    assert call_time(busy, 100.0, None)["bound"] == "bus"


def _design(fp32=False):
    blocks = {"array": {"lut": 100, "ff": 50}, "lanes": {"lut": 20, "ff": 10}, "core": {"lut": 30, "ff": 40}}
    rates = Rates((0.1, 0.2), (0.3, 0.4), (0.05, 0.06))
    activity = type("A", (), {"rates": lambda self, kind: (rates, kind), "path": "x"})()
    lane = LaneActivity("lane", {}, (0.2, 0.3))
    return Design("d", "d", SMALL, 100.0, "test", blocks, 6, 1, activity=lane if fp32 else activity,
                  core_activity=activity, fp32=fp32, lanes=16)


def test_energy_is_linear_in_activity_and_coefficients():
    cost = CallCost(macs=1000, cycles=200, parts=1, gemms=1, tiles=4, terms=100, lane_cycles=30, out_rows=8,
                    out_words=8, load_beats={"act": 10, "wgt": 4, "param": 1}, store_beats=3, bus_bytes=32)
    c = {k: v.value for k, v in coefficients().items()}
    for fp32 in (False, True):
        e, _ = dynamic_pj(_design(fp32), cost, "linear uniform input", c)
        doubled = {k: 2 * v for k, v in c.items()}
        e2, _ = dynamic_pj(_design(fp32), cost, "linear uniform input", doubled)
        for part in e:
            assert e2[part] == pytest.approx(2 * e[part])
    e, _ = dynamic_pj(_design(), cost, "k", c)
    assert e["array"] == pytest.approx((100 * 0.2 * c["lut_toggle"] + 50 * 0.1 * c["ff_toggle"]) * 100)
    assert e["sdram"] == pytest.approx((15 + 3) * 32 * 8 * c["sdram_bit"])
    assert e["clock"] == pytest.approx(100 * 200 * c["ff_clock"])
    # the clock runs on while the core waits on a slower memory: all the cycles the board time takes
    e, _ = dynamic_pj(_design(), cost, "k", c, clock_cycles=700.0)
    assert e["clock"] == pytest.approx(100 * 700 * c["ff_clock"])
    assert static_pj(2.0, {"fpga_static": 100.0, "sdram_static": 50.0}) == pytest.approx(0.3e12)


def test_every_outside_constant_has_a_source():
    for coefficient in coefficients().values():
        assert coefficient.status in ("sourced", "derived", "assumed")
        assert coefficient.source and coefficient.derivation and coefficient.value >= 0
    for paper in PUBLISHED:
        assert paper["baseline"] and paper["source"]


def test_resource_blocks_and_fallback_to_the_snapshot(tmp_path):
    blocks = core_blocks({"lut4": 1000, "ff": 800}, {"lut4": 600, "ff": 500}, {"lut4": 50, "ff": 40}, 4)
    assert blocks == {"array": {"lut": 600, "ff": 500}, "lanes": {"lut": 100, "ff": 80}, "core": {"lut": 300, "ff": 220}}
    w8 = scaled_array(blocks, {"lut4": 10, "ff": 10}, {"lut4": 20, "ff": 15})
    assert w8["array"] == {"lut": 1200, "ff": 750} and w8["core"] == blocks["core"]
    fp = fp32_blocks(blocks, {"lut4": 1600, "ff": 960}, 16, 8)
    assert fp["array"] == {"lut": 800, "ff": 480} and fp["lanes"] == {"lut": 0, "ff": 0}
    snapshot = tmp_path / "synthesis.json"
    snapshot.write_text(json.dumps({"entries": {"fp32_4x4": {"summary": {"lut4": 1, "ff": 2, "fmax_mhz": 3.0},
                                                             "source": "build/fp32/x.json"}}}))
    res = load_resources(snapshot, root=tmp_path)
    assert res.get("fp32_4x4")["fmax_mhz"] == 3.0 and "copy of build/fp32/x.json" in res.sources["fp32_4x4"]
    assert "w4_core" in res.missing and "subject_core" in res.missing


def test_each_core_is_priced_with_its_own_synthesis(tmp_path):
    """A core other than the reference is priced from build/core_synth_NAME (core_synth's output), never
    with the reference core's numbers; a summary of an edited config (another digest) does not count, and
    measuring one core keeps the other cores' entries in the snapshot."""
    def write(rel, **summary):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps(summary))
    write("build/core_synth_w4/core_synthesis.json", config="w4-16x16", block="core", lut4=80000, ff=70000)
    write("build/core_synth_w4-8x8/core_synthesis.json", config="w4-8x8", core_digest="d1", block="core",
          lut4=30000, ff=25000)
    write("build/core_synth_w4-8x8/pe_synthesis.json", config="w4-8x8", core_digest="old", block="pe", lut4=9, ff=9)
    res = load_resources(None, root=tmp_path, core="w4-8x8", digest="d1")
    assert res.get("subject_core")["lut4"] == 30000 and res.get("w4_core")["lut4"] == 80000
    assert "subject_pe" in res.missing and "subject_array" in res.missing
    assert load_resources(None, root=tmp_path).get("subject_core")["lut4"] == 80000
    snapshot_path = tmp_path / "synthesis.json"
    snapshot_path.write_text(json.dumps(snapshot(load_resources(None, root=tmp_path), "w4-16x16")))
    snapshot_path.write_text(json.dumps(snapshot(res, "w4-8x8", snapshot_path)))
    saved = json.loads(snapshot_path.read_text())["entries"]
    assert saved["w4_core"]["summary"]["lut4"] == 80000 and saved["w4_core@w4-8x8"]["summary"]["lut4"] == 30000
    (tmp_path / "build").rename(tmp_path / "gone")
    again = load_resources(snapshot_path, root=tmp_path, core="w4-8x8", digest="d1")
    assert again.get("subject_core")["lut4"] == 30000 and "copy of build/core_synth_w4-8x8" in again.sources["subject_core"]
    assert load_resources(snapshot_path, root=tmp_path, core="w4-8x8", digest="d2").get("subject_core") is None
    assert core_name("bitstreams/cores/w4-8x8.json") == "w4-8x8" and core_name("w4-16x16") == "w4-16x16"
    # the INT8 core's own synthesis counts only when it names that core (another core's summary does not)
    write("build/core_synth_w8-16x16/core_synthesis.json", config="w4-16x16", block="core", lut4=1, ff=1)
    assert load_resources(None, root=tmp_path).get("w8_core") is None
    write("build/core_synth_w8-16x16/core_synthesis.json", config="w8-16x16", block="core", lut4=150000, ff=1)
    assert load_resources(None, root=tmp_path).get("w8_core")["lut4"] == 150000
    from sw.estimate.designs import to_totals
    split = to_totals({"array": {"lut": 300, "ff": 10}, "core": {"lut": 100, "ff": 30}}, 200, 80)
    assert split == {"array": {"lut": 150, "ff": 20}, "core": {"lut": 50, "ff": 60}}


def test_activity_rates_and_kind_fallback(tmp_path):
    case = lambda kind, t: {"kind": kind, "cycles": 100, "terms": 50, "lane_cycles": 10, "out_words": 10, "blocks": {
        b: {"register": {"toggles": t, "bits": 10}, "comb": {"toggles": 2 * t, "bits": 10}}
        for b in ("array", "lanes", "core")}}
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"config": {"rows": 4, "cols": 4}, "cases": [case("linear CAG input", 500),
                                                                           case("QK^T", 1000)]}))
    act = CoreActivity.load(path)
    rates, source = act.rates("linear CAG input")
    assert rates.array == (1.0, 2.0) and rates.lanes == (2.5, 5.0) and rates.core == (0.5, 1.0)
    assert act.rates("decoder linear HLUQ input")[1] == "linear CAG input"
    assert act.rates("conv 1x1")[1] == "all measured kinds"
    assert class_of("decoder A.V AGQ tau=2") == "A.V"


def test_toggle_coverage_is_split_into_register_and_comb_bits(tmp_path):
    from sim.core_activity import activity_of, parse_coverage, register_bits, toggle_sums

    verilog = ("module \\top.core.compute.array.pe_0_0 (clk, a);\n  wire [1:0] \\$1 ;\n  reg [1:0] \\$signal ;\n"
               "  assign \\$1  = a;\n  always @(posedge clk)\n    \\$signal  <= \\$1 ;\nendmodule\n")
    regs = register_bits(verilog)
    assert regs["top.core.compute.array.pe_0_0"] == {"$signal"}
    h = "top.core.compute.array.pe_0_0"
    lines = ["# SystemC::Coverage-3"]
    for name, t in (("__024signal[0]", 3), ("__024signal[1]", 1), ("__0241[0]", 5)):
        for edge in ("0->1", "1->0"):
            lines.append(f"C '\x01page\x02v_toggle/x\x01o\x02{name}:{edge}\x01h\x02{h}' {t}")
    lines.append(f"C '\x01page\x02v_toggle/x\x01o\x02mem:0->1\x01h\x02top.simmem' 99")
    (tmp_path / "coverage.dat").write_text("\n".join(lines) + "\n")
    points = parse_coverage(tmp_path / "coverage.dat")
    sums = activity_of(points, regs)
    assert sums["array"]["register"] == {"toggles": 8, "bits": 2}
    assert sums["array"]["comb"] == {"toggles": 10, "bits": 1}
    assert sums["core"]["register"]["bits"] == 0   # the simulation memory is not part of the core
    # a whole unit (the FP32 lane, the softmax unit): every point, no blocks
    assert toggle_sums(points, regs) == {"register": {"toggles": 8, "bits": 2}, "comb": {"toggles": 109, "bits": 2}}


def test_cosim_report_is_parsed(tmp_path):
    digest = PRESETS["w8-16x16"].digest
    text = (f"# Core co-simulation\n\nGenerated by `samhw simulate runs/b --report x.md`; do not edit.\n\n"
            f"Bundle: `litemedsam` `minmax` W8A8; core `{digest}` (16x16 PEs)\n\n"
            "| kind | layer | outputs compared | mismatches | OUT words vs fsim | differ | RTL cycles | model cycles | "
            "utilization | wall s |\n|---|---|---|---|---|---|---|---|---|---|\n"
            "| QK^T | `enc.attn` scores | 10 | 0 | 5 | 0 | 1234 | 1234 | 0.5 | 1 |\n"
            "| conv 1x1 | `enc.conv` | 10 | 0 | 5 | 0 | 99 | 99 | 0.5 | 1 |\n")
    path = tmp_path / "core_cosim_x.md"
    path.write_text(text)
    report = parse_cosim_report(path)
    assert report["core"] == "w8-16x16" and report["config"] == PRESETS["w8-16x16"] and report["bundle"] == "runs/b"
    assert report["rows"] == [{"layer": "enc.attn", "op": "scores", "kind": "QK^T", "rtl_cycles": 1234},
                              {"layer": "enc.conv", "op": None, "kind": "conv 1x1", "rtl_cycles": 99}]
    # a JSON core config counts while the file still has the digest the report ran
    from hw.core.config import load_core_config
    name = "bitstreams/cores/w4-32x8-x-only.json"
    config = load_core_config(name)
    path.write_text(text.replace("runs/b --report", f"runs/b --core {name} --report").replace(digest, config.digest))
    report = parse_cosim_report(path)
    assert report["core"] == name and report["config"] == config
    path.write_text(text.replace("runs/b --report", f"runs/b --core {name} --report"))   # another core's digest
    assert parse_cosim_report(path)["config"] is None


def test_analysis_cache_round_trip_and_compile_refusal_growth(tmp_path):
    layer = _linear(3, c=40, o=8)
    wl = Workload("w", "m", [_call(layer, None, {"input": (12, 40)}, count=3)], {"id": "w"})
    first = cached_analysis("t", wl.identity, SMALL, lambda: wl, None, tmp_path)
    again = cached_analysis("t", wl.identity, SMALL, lambda: pytest.fail("recomputed"), None, tmp_path)
    assert again.from_cache and again.results[0].cost == first.results[0].cost and again.results[0].count == 3
    # another core's analysis under the same name leaves this one cached; a changed workload replaces it
    other = dataclasses.replace(SMALL, out_words=128)
    cached_analysis("t", wl.identity, other, lambda: wl, None, tmp_path)
    assert cached_analysis("t", wl.identity, SMALL, lambda: pytest.fail("recomputed"), None, tmp_path).from_cache
    cached_analysis("t", {"id": "w2"}, SMALL, lambda: wl, None, tmp_path)
    assert len(list(tmp_path.glob("t_*.json"))) == 2
    # FP32 arrays share their config and differ in the mapping: one's analysis leaves the other's cached
    from sw.estimate.fp32 import Fp32Mapping
    bound = {"by_lut": 8, "by_dsp": 8, "lanes": 8}
    wide, narrow = Fp32Mapping(SMALL, bound, 2, 4), Fp32Mapping(SMALL, bound, 2, 2)
    cached_analysis("f", wl.identity, SMALL, lambda: wl, wide, tmp_path)
    cached_analysis("f", wl.identity, SMALL, lambda: wl, narrow, tmp_path)
    assert cached_analysis("f", wl.identity, SMALL, lambda: pytest.fail("recomputed"), wide, tmp_path).from_cache
    # a name that starts with another ("f_small" with "f") is not that one's older analysis
    cached_analysis("f_small", wl.identity, SMALL, lambda: wl, wide, tmp_path)
    cached_analysis("f", {"id": "w3"}, SMALL, lambda: wl, wide, tmp_path)
    assert cached_analysis("f_small", wl.identity, SMALL, lambda: pytest.fail("recomputed"), wide, tmp_path).from_cache
    tight = dataclasses.replace(SMALL, act_words=128)
    big = _call(_linear(4, c=300, o=8), None, {"input": (16, 300)})  # one tile needs 300 ACT words
    result = analyze(Workload("w", "m", [big], {}), tight).results[0]
    assert result.refusal and result.grown["act_words"] > tight.act_words


def test_cli_has_the_estimate_subcommand(capsys):
    from sw.cli import _parser

    args = _parser().parse_args(["estimate", "runs/b", "--core", "w4-16x16", "--out", "o", "--measure"])
    assert args.command == "estimate" and args.measure == [] and args.board == "ulx3s-85f"


def test_summary_and_report_from_synthetic_runs(tmp_path):
    """The run -> ratios -> report path on two tiny synthetic layers: every design gets its row, the
    ratios are baseline / subject, and the report, JSON and three plots are written."""
    from sw.estimate.analyze import analyze
    from sw.estimate.boards import BOARDS
    from sw.estimate.estimate import EstimateOptions, _run
    from sw.estimate.report import write_report
    from sw.estimate.resources import Resources
    from sw.estimate.summary import summarize

    rng = np.random.default_rng(5)
    lin = linear_layer(rng, "uniform", 40, 24, act_bits=8, weight_bits=8, name="image_encoder.x")
    dec = linear_layer(rng, "uniform", 40, 16, act_bits=8, weight_bits=8, name="mask_decoder.y")
    wl = Workload("w", "m", [_call(lin, None, {"input": (30, 40)}, 2, "gelu"), _call(dec, None, {"input": (7, 40)})], {})
    path = tmp_path / "act.json"
    blocks = {b: {"register": {"toggles": 100, "bits": 10}, "comb": {"toggles": 300, "bits": 10}}
              for b in ("array", "lanes", "core")}
    path.write_text(json.dumps({"config": {"rows": 4, "cols": 4}, "cases": [
        {"kind": "linear uniform input", "cycles": 100, "model_cycles": 100, "terms": 50, "lane_cycles": 10,
         "out_words": 10, "blocks": blocks}]}))
    act = CoreActivity.load(path)
    res = {"array": {"lut": 1000, "ff": 800}, "lanes": {"lut": 100, "ff": 80}, "core": {"lut": 300, "ff": 200}}
    def fp32(key, label, shrink):
        config = fp32_model_config(SMALL, 2, 4, shrink)
        return Design(key, label, config, 90.0, "test", res, 24, None,
                      ["8 FP32 lanes", "per lane", f"buffers of {config.act_words} ACT words"],
                      LaneActivity("l", {}, (0.2, 0.3)), act, Fp32Mapping(config, {"lanes": 8}, 2, 4), True, 8)

    designs = {"subject": Design("subject", "small core", SMALL, 100.0, "test", res, 6, 4, activity=act),
               "int8": Design("int8", "int8 core", SMALL, 100.0, "test", res, 6, 4, activity=act),
               "fp32": fp32("fp32", "fp32 2x4", FITTING_SHRINK), "fp32_roomy": fp32("fp32_roomy", "fp32 roomy", 1)}
    designs["fp32_small"] = designs["fp32"]
    board = BOARDS["ulx3s-85f"]
    coeff = coefficients()
    c = {k: v.value for k, v in coeff.items()}
    runs = {k: _run(d, analyze(wl, d.config, d.mapping), board, c) for k, d in designs.items()}
    ff = sum(b["ff"] for b in res.values())
    for key, run in runs.items():      # the clock runs for the invocation's whole time on the board
        for row in run.rows:
            hz = run.design.clock_mhz * 1e6
            assert row["energy_pj"]["clock"] == pytest.approx(ff * row["seconds"] * hz * c["ff_clock"])
            assert row["seconds"] * hz >= row["cycles"]
    opts = EstimateOptions(bundle="b", command="samhw estimate b")
    inp = {"files": {"resources": tmp_path / "s.json"}}
    result = summarize(opts, board, designs, {"litemedsam": runs}, {"host_subject": None}, coeff,
                       Resources({}, {}, []), inp, [], [])
    result["wall_s"] = 0.0
    r = result["models"]["litemedsam"]["ratios"]["fp32"]["image_box"]
    s = result["models"]["litemedsam"]["designs"]
    assert r["speedup"] == pytest.approx(s["fp32"]["image_box"]["seconds"] / s["subject"]["image_box"]["seconds"])
    assert r["energy_ratio"] == pytest.approx(s["fp32"]["image_box"]["energy_j"] / s["subject"]["image_box"]["energy_j"])
    assert result["models"]["litemedsam"]["ratios"]["int8"]["image_box"]["speedup"] == pytest.approx(1.0)
    # the moonshot takes, per metric, the lower ratio of the iso-resource bracket's two ends
    moon, ratios = result["models"]["litemedsam"]["moonshot"], result["models"]["litemedsam"]["ratios"]
    for metric in ("speedup", "energy_ratio"):
        assert moon[metric] == min(ratios[k]["image_box"][metric] for k in ("fp32", "fp32_small"))
        assert moon["all_steps_on_chip"][metric] == min(ratios[k]["limits"]["bytes_bounds"]["by_step"][-1][metric]
                                                        for k in ("fp32", "fp32_small"))
    assert moon["reached"] == (moon["speedup"] >= 10 and moon["energy_ratio"] >= 10)
    # the MAC ceiling: every PE busy every cycle on the layers' MACs, no memory wait; the time above it
    # splits into PE idle and memory wait, class by class
    above, ceiling = moon["above_ceiling"], moon["ceiling"]
    sub_rows = runs["subject"].rows
    ideal = sum(r["macs"] * r["count"] for r in sub_rows) / (SMALL.pes * 100.0e6)
    assert above["ideal_s"] == pytest.approx(ideal) and above["seconds"] == pytest.approx(s["subject"]["image_box"]["seconds"])
    assert {(k["part"], k["class"]) for k in above["classes"]} == {("encoder", "linear"), ("decoder", "linear")}
    for k in above["classes"]:
        assert k["ideal_s"] + k["pe_idle_s"] + k["memory_wait_s"] == pytest.approx(k["seconds"])
        assert k["pe_idle_s"] > 0 and k["memory_wait_s"] >= 0
    low = min(s[k]["image_box"]["seconds"] for k in ("fp32", "fp32_small"))
    assert ceiling["speedup"] == pytest.approx(low / ideal) and ceiling["speedup"] > moon["speedup"]
    assert ceiling["pes_needed"] == pytest.approx(10 * ideal / low * SMALL.pes)
    assert ceiling["clock_mhz_needed"] == pytest.approx(10 * ideal / low * 100.0)
    # the bytes ratio's bounds per host step moved on chip: the GELU's outputs become dense 8-bit codes first
    from sw.estimate.summary import image_box
    bounds = result["models"]["litemedsam"]["ratios"]["fp32"]["limits"]["bytes_bounds"]
    steps = bounds["by_step"]
    assert [st["readers"] for st in steps] == [["gelu"], [], ["host"], []]
    sub, lin_cost = image_box(runs["subject"]), runs["subject"].analysis.results[0].cost
    gelu_store = 2 * lin_cost.write_bytes
    assert steps[0]["store_share"] == pytest.approx(gelu_store / sub["bytes_store"])
    assert steps[0]["bytes_ratio"] == pytest.approx(image_box(runs["fp32"])["bytes"] / (
        sub["bytes"] - gelu_store + 2 * lin_cost.out_elements * SMALL.act_bits / 8))
    assert steps[1]["bytes_ratio"] == steps[0]["bytes_ratio"] and steps[-1]["bytes_ratio"] == pytest.approx(bounds["code_outputs"])
    # ... and the speed-up and energy ratio it would give: the GELU call timed again from its cost with the
    # dense codes' bytes (perf.call_time), its SDRAM / I/O energy by the bytes, its static by the time
    from types import SimpleNamespace
    from sw.estimate.projection import _project
    now = _project(runs["subject"], set(), SMALL.act_bits)
    assert now["seconds"] == pytest.approx(sub["seconds"]) and sum(now["energy"].values()) == pytest.approx(sub["energy_pj"])
    seconds, energy = 0.0, 0.0
    for res, row in zip(runs["subject"].analysis.results, runs["subject"].rows):
        cost, e = res.cost, dict(row["energy_pj"])
        if res.read_by == "gelu":
            moved = cost.bytes - cost.write_bytes + cost.out_elements * SMALL.act_bits / 8
            t = call_time(SimpleNamespace(cycles=cost.cycles, bytes=moved, load_beats=cost.load_beats,
                                          store_beats=cost.store_beats, terms=cost.terms), 100.0,
                          board.memory_bytes_per_s)
            e.update(sdram=moved * 8 * c["sdram_bit"], io=moved * 8 * c["io_bit"], static=static_pj(t["seconds"], c),
                     clock=dynamic_pj(runs["subject"].design, cost, res.kind, c, t["seconds"] * 100.0e6)[0]["clock"])
        else:
            t = row
        seconds += t["seconds"] * res.count
        energy += sum(e.values()) * res.count
    base = image_box(runs["fp32"])
    assert steps[0]["speedup"] == pytest.approx(base["seconds"] / seconds)
    assert steps[0]["energy_ratio"] == pytest.approx(base["energy_pj"] / energy)
    assert steps[0]["speedup"] > r["speedup"] and steps[0]["energy_ratio"] > r["energy_ratio"]
    # an assumed clock is retimed at the Fmax of the largest committed board build (slower: never a higher ratio)
    from sw.estimate.boards import board_builds, largest_build
    from sw.estimate.estimate import _measured_clock_bracket
    assumed = dataclasses.replace(designs["subject"], clock_mhz=500.0, clock_source="assumed: test")
    _measured_clock_bracket("ulx3s-85f", assumed, {"litemedsam": runs}, board, c, result)
    bracket, largest = result["models"]["litemedsam"]["measured_clock"], largest_build(board_builds("ulx3s-85f"))
    assert bracket["fmax_mhz"] == largest["fmax_mhz"] < 100.0 and bracket["speedup"] <= r["speedup"]
    slower = _run(dataclasses.replace(designs["subject"], clock_mhz=largest["fmax_mhz"]), runs["subject"].analysis,
                  board, c)
    both = lambda run: sum(run.totals[p]["seconds"] for p in ("encoder", "decoder"))
    assert bracket["speedup"] == pytest.approx(both(runs["fp32"]) / both(slower))
    # the clock sweep retimes the subject alone: at the subject's own clock it gives the moonshot's ratios
    from sw.estimate.estimate import _sweep_clock
    _sweep_clock("ulx3s-85f", designs["subject"], {"litemedsam": runs}, board, c, result)
    sweep = result["models"]["litemedsam"]["moonshot"]["clock_sweep"]
    at_own = next(p for p in sweep["points"] if p["mhz"] == designs["subject"].clock_mhz)
    assert at_own["speedup"] == pytest.approx(moon["speedup"]) and at_own["energy_ratio"] == pytest.approx(moon["energy_ratio"])
    assert "Against the core's clock (20 to 300 MHz" in result["models"]["litemedsam"]["moonshot"]["text"]
    assert "held_clock" not in result["models"]["litemedsam"]["moonshot"]      # 100 MHz: above the FP32's 90
    # a core slower than the FP32 designs: its ratios again with their clocks held to its own
    slow = dataclasses.replace(designs["subject"], clock_mhz=50.0)
    slow_runs = {**runs, "subject": _run(slow, runs["subject"].analysis, board, c)}
    _sweep_clock("ulx3s-85f", slow, {"litemedsam": slow_runs}, board, c, result)
    held = result["models"]["litemedsam"]["moonshot"]["held_clock"]
    at50 = {k: image_box(_run(dataclasses.replace(designs[k], clock_mhz=50.0), runs[k].analysis, board, c))
            for k in ("fp32", "fp32_small")}
    sub50 = image_box(slow_runs["subject"])
    assert held["speedup"] == pytest.approx(min(b["seconds"] for b in at50.values()) / sub50["seconds"])
    assert held["energy_ratio"] == pytest.approx(min(b["energy_pj"] for b in at50.values()) / sub50["energy_pj"])
    assert "held to the core's 50 MHz" in result["models"]["litemedsam"]["moonshot"]["text"]
    _sweep_clock("ulx3s-85f", designs["subject"], {"litemedsam": runs}, board, c, result)
    paths = write_report(result, tmp_path / "out")
    assert all(p.is_file() for p in paths) and len(paths) == 7
    text = paths[0].read_text()
    assert "fp32 2x4" in text and "Generated by `samhw estimate b`" in text
    small = result["models"]["litemedsam"]["ratios"]["fp32_small"]["limits"]["bytes_bounds"]["by_step"][0]
    assert (f"| the elementwise GELU / ReLU | gelu | {steps[0]['store_share']:.0%} | {steps[0]['bytes_ratio']:.2f}x | "
            f"{steps[0]['speedup']:.2f}x | {steps[0]['energy_ratio']:.2f}x | "
            f"{min(steps[0]['speedup'], small['speedup']):.2f}x / "
            f"{min(steps[0]['energy_ratio'], small['energy_ratio']):.2f}x |") in text
    assert f"at {largest['fmax_mhz']:g} MHz, the post-route Fmax of the largest core built" in text
    worst = above["classes"][0]
    row = f"| {worst['part']} | {worst['class']} | {worst['seconds'] * 1e3:.1f} ms | {worst['ideal_s'] * 1e3:.1f} ms |"
    assert row in text and f"At its MAC ceiling ({SMALL.pes} PEs at 100 MHz" in moon["text"]
    assert "Its buffers of 64 ACT words" in text and "fp32 roomy keeps the INT8 core's depths" in text
    assert "No softmax unit costed" in text       # no unit's synthesis and activity among the inputs
    # a quarter of the buffers can only reload more
    assert s["fp32_roomy"]["image_box"]["bytes"] <= s["fp32"]["image_box"]["bytes"]


def test_core_clock_is_the_cores_own_board_build_else_a_stated_assumption(tmp_path):
    from sw.estimate.boards import core_clock, flow_target_mhz

    def build(name, digest, rows, cols, fmax, complete=True):
        folder = tmp_path / "bitstreams" / f"ulx3s-85f-{name}"
        folder.mkdir(parents=True)
        (folder / "build.json").write_text(json.dumps({
            "complete": complete, "clock": {"fmax_mhz": fmax},
            "design": {"core_digest": digest, "core": {"rows": rows, "cols": cols}}}))

    build("small", "aaaa", 4, 4, 59.2)
    build("big", "bbbb", 64, 4, 57.5)
    build("broken", "cccc", 128, 8, 10.0, complete=False)
    mhz, source = core_clock("ulx3s-85f", None, "bbbb", tmp_path)
    assert mhz == 57.5 and "bitstreams/ulx3s-85f-big/build.json" in source
    mhz, source = core_clock("ulx3s-85f", None, "dddd", tmp_path)
    assert mhz == flow_target_mhz() and source.startswith("assumed")
    assert "64x4 PEs, reaches 57.5 MHz" in source and "broken" not in source
    assert core_clock("ulx3s-85f", 42.0, "bbbb", tmp_path) == (42.0, "given with --clock-mhz")


def test_softmax_unit_costs_its_cycles_and_energy_in_the_projection(tmp_path):
    """The built softmax unit in the projection: a QK^T's rows and keys from its key, the unit's cycles
    from its cycle model added after the core's time (serial) or beside it (overlap), its logic, DSP and
    block RAM energy on the scores and its clock energy on every invocation; fits against the device."""
    from types import SimpleNamespace

    from hw.softmax.unit import UnitWidths, row_cycles
    from sw.estimate.projection import _project, against, softmax_unit_projection
    from sw.estimate.softmax_unit import SoftmaxUnitCost, score_rows

    assert score_rows("a.attn:scores q=2x4x49x8 k=2x4x49x8", 2 * 4 * 49 * 49) == (392, 49)
    with pytest.raises(ValueError, match="not a QK"):
        score_rows("a.fc1 input=4x8", 32)
    with pytest.raises(ValueError, match="output elements"):
        score_rows("a.attn:scores q=2x4x49x8 k=2x4x49x8", 7)
    (tmp_path / "syn.json").write_text(json.dumps({"units": [
        {"lanes": 4, "max_keys": 64, "lut4": 5000, "ff": 3000, "dsp": 16, "ebr": 20, "fmax_mhz": 95.0}]}))
    (tmp_path / "act.json").write_text(json.dumps({"unit": {
        "register": {"toggles": 600, "bits": 10}, "comb": {"toggles": 900, "bits": 30}, "cycles": 200}}))
    unit, = SoftmaxUnitCost.variants(tmp_path / "syn.json", tmp_path / "act.json")
    assert unit.rates == (0.3, 0.15) and unit.widths == UnitWidths(lanes=4, max_keys=64)
    c = {k: v.value for k, v in coefficients().items()}
    key = "a.attn:scores q=1x2x49x8 k=1x2x49x8"
    u = unit.call(key, 2 * 49 * 49, c)
    assert u["cycles"] == row_cycles(49, 98, unit.widths)
    assert u["logic"] == pytest.approx((5000 * 0.15 * c["lut_toggle"] + 3000 * 0.3 * c["ff_toggle"]) * u["cycles"])
    assert u["dsp"] == pytest.approx(4 * 98 * 49 * c["dsp_op"])
    with pytest.raises(ValueError, match="exceed the unit's 64"):
        unit.call("a.attn:scores q=1x1x7x8 k=1x1x100x8", 700, c)

    def result(key, read_by, out_elements, count=1):
        cost = SimpleNamespace(out_elements=out_elements, bytes=4000, write_bytes=3000, macs=2 * 49 * 49 * 8)
        return SimpleNamespace(key=key, read_by=read_by, cost=cost, count=count, part="encoder")

    def row(core_s, memory_s):
        return {"core_s": core_s, "memory_s": memory_s, "seconds": max(core_s, memory_s),
                "energy_pj": {"clock": 10.0, "static": 5.0, "sdram": 40.0, "array": 7.0}}

    run = SimpleNamespace(design=SimpleNamespace(clock_mhz=100.0, lut=80000, lutram=10, ebr=150,
                                                 config=SimpleNamespace(act_bits=4, weight_bits=4, rows=16, cols=16)),
                          analysis=SimpleNamespace(results=[result(key, "softmax", 2 * 49 * 49),
                                                            result("a.fc1 input=49x8", "gelu", 49 * 16, 3)]),
                          rows=[row(1e-5, 3e-5), row(2e-5, 1e-5)])
    unit_s = u["cycles"] / 100e6
    serial = _project(run, {"softmax", "gelu"}, 4, unit, c)
    overlap = _project(run, {"softmax", "gelu"}, 4, unit, c, mode="overlap")
    memory = _project(run, {"softmax", "gelu"}, 4, unit, c, mode="memory")
    plain = _project(run, {"softmax", "gelu"}, 4)
    memory0 = 3e-5 * (1000 + 2 * 49 * 49 / 2) / 4000
    assert plain["seconds"] == pytest.approx(max(1e-5, memory0) + 3 * 2e-5)
    assert serial["seconds"] == pytest.approx(max(1e-5, memory0) + unit_s + 3 * 2e-5)
    assert overlap["seconds"] == pytest.approx(max(1e-5, memory0, unit_s) + 3 * 2e-5)
    # through memory: the 3,000 score bytes written as now and read back by the unit, the codes written too
    memory1 = 3e-5 * (1000 + 2 * 49 * 49 / 2 + 2 * 3000) / 4000
    assert memory["seconds"] == pytest.approx(max(1e-5, memory1, unit_s) + 3 * 2e-5)
    assert memory["bytes"] == pytest.approx(overlap["bytes"] + 2 * 3000)
    assert memory["energy"]["sdram"] == pytest.approx(40.0 * (1000 + 2401 + 6000) / 4000
                                                      + 3 * 40.0 * (1000 + 49 * 16 / 2) / 4000)
    # the tile store: scores of d = 8 products of 4-bit codes (at most 8 x 15 x 15 = 1,800) take 12 signed
    # bits; 16 lanes' memories of 16 rows x 4 keys each take one block: 16 DP16KD
    from sw.estimate.softmax_unit import invocation_store, score_bits, tile_row_keys, tile_store_ebr
    store = invocation_store(key, 2 * 49 * 49, run.design.config, False)
    assert store == {"ebr": 16, "bits_moved": 2 * 49 * 49 * 2 * 12, "score_bits": 12}
    # hybrid: on chip where the store fits the spare block RAMs, else through memory
    for spare, like in ((16, overlap), (15, memory)):
        hybrid = _project(run, {"softmax", "gelu"}, 4, unit, c, mode="hybrid", spare_ebr=spare)
        assert hybrid["seconds"] == pytest.approx(like["seconds"]) and hybrid["bytes"] == pytest.approx(like["bytes"])
        assert hybrid["scores_on_chip"] == (2 * 49 * 49 if like is overlap else 0) and hybrid["scores"] == 2 * 49 * 49
        assert hybrid["energy"]["softmax_unit"] == pytest.approx(like["energy"]["softmax_unit"])
    # SAM ViT-B's global rows: 4,096 keys, d = 64 (at most 14,400: 15 bits), 16 lanes x 4 blocks of 16 x 256
    # scores, and 16 rows x 2 x 64 relative-position terms of 18 bits in 2 blocks; 42-bit logits would take 192
    assert score_bits(64, 4, 4) == 15 and score_bits(64, 8, 8) == 23
    assert tile_store_ebr(16, 16, 4096, 15) == 64 and tile_store_ebr(16, 16, 4096, 15, relative_side=64) == 66
    assert tile_row_keys(16, 16, 15, 64) == 4096 and tile_row_keys(16, 16, 15, 63) == 3072
    assert tile_row_keys(32, 8, 15, 34) == 1024 and tile_row_keys(16, 16, 12, 15) == 0
    assert tile_row_keys(16, 16, 12, -5) == 0
    assert serial["unit_s"] == pytest.approx(unit_s)
    clock = 3000 * serial["seconds"] * 100e6 * c["ff_clock"]
    assert serial["energy"]["softmax_unit"] == pytest.approx(u["logic"] + u["dsp"] + u["bram"] + clock
                                                            + store["bits_moved"] * c["ebr_bit"])
    assert memory["energy"]["softmax_unit"] == pytest.approx(
        u["logic"] + u["dsp"] + u["bram"] + 3000 * memory["seconds"] * 100e6 * c["ff_clock"])
    # SAM ViT's relative-position term: 2 x 7 dot products of 8 per row (query), 16-bit tables in 4 passes of
    # 4-bit weights, as more of the QK^T's core time and core energy
    from sw.estimate.softmax_unit import relative_position_macs
    assert relative_position_macs(key, 2 * 49 * 49) == 98 * 2 * 7 * 8
    more = 1 + 4 * 98 * 2 * 7 * 8 / (2 * 49 * 49 * 8)
    rel = _project(run, {"softmax", "gelu"}, 4, unit, c, relative_parts=frozenset({"encoder"}))
    assert rel["seconds"] == pytest.approx(max(1e-5 * more, memory0) + unit_s + 3 * 2e-5)
    assert rel["energy"]["array"] == pytest.approx(7.0 * more + 3 * 7.0)
    assert rel["relative_s"] == pytest.approx(1e-5 * (more - 1))
    baseline = {"seconds": 1.0, "energy_pj": 1e9}
    out, = softmax_unit_projection(run, 4, [unit], c, device={"lut4": 83640, "ebr": 208})
    # LUT RAM counts in the LUT4 sites it takes
    assert out["fits"] is False and out["over"] == {"lut": 80000 + 6 * 10 + 5000 - 83640, "ebr": 150 + 20 - 208}
    assert out["spare_ebr"] == 38 and out["score_bits"] == 12
    assert out["on_chip_keys"] == tile_row_keys(16, 16, 12, 38) == 2048 and out["hybrid"]["on_chip_share"] == 1.0
    assert softmax_unit_projection(run, 4, [unit], c, device={"lut4": 85060, "ebr": 208})[0]["fits"]
    assert not softmax_unit_projection(run, 4, [unit], c, device={"lut4": 85059, "ebr": 208})[0]["fits"]
    # a synthesized tile store for this lane count: its LUT4 (LUT RAM in sites) in the fit, its logic in the energy
    stored, = softmax_unit_projection(run, 4, [unit], c, device={"lut4": 83640, "ebr": 208},
                                      stores={unit.widths.lanes: {"lut4": 300, "ff": 200, "lutram": 1, "source": "s"}})
    assert out["store_lut"] is None and stored["store_lut"] == 306 and stored["store_source"] == "s"
    assert stored["over"] == {"lut": out["over"]["lut"] + 306, "ebr": out["over"]["ebr"]}
    assert stored["serial"]["totals"]["energy_pj"] > out["serial"]["totals"]["energy_pj"]
    assert stored["serial"]["totals"]["seconds"] == out["serial"]["totals"]["seconds"]
    assert stored["memory"]["totals"] == out["memory"]["totals"]       # no store when the scores go to memory
    other, = softmax_unit_projection(run, 4, [unit], c, device={"lut4": 83640, "ebr": 208},
                                     stores={unit.widths.lanes * 2: {"lut4": 300, "ff": 200, "source": "s"}})
    assert other["over"] == out["over"]
    serial_ratios, overlap_ratios = (against(out[mode], baseline) for mode in ("serial", "overlap"))
    assert serial_ratios["speedup"] == pytest.approx(1.0 / serial["seconds"])
    assert serial_ratios["energy_ratio"] == pytest.approx(1e9 / out["serial"]["totals"]["energy_pj"])
    assert "totals" not in serial_ratios and serial_ratios["unit_share"] == out["serial"]["unit_share"]
    assert overlap_ratios["speedup"] >= serial_ratios["speedup"]
    assert against(out["memory"], baseline)["speedup"] == pytest.approx(1.0 / memory["seconds"])


def test_the_moonshot_text_names_the_best_costed_unit_its_fit_and_clock():
    from sw.estimate.summary import _unit_text

    def row(lanes, speed, energy, over, fmax):
        return {"lanes": lanes, "overlap": {"speedup": speed, "energy_ratio": energy},
                "memory": {"speedup": speed / 2, "energy_ratio": energy / 2},
                "hybrid": {"speedup": speed / 3, "energy_ratio": energy / 3, "on_chip_share": 0.25},
                "on_chip_keys": 352, "spare_ebr": 34, "score_bits": 15, "fits": max(over) <= 0,
                "over": {"lut": over[0], "ebr": over[1]}, "fmax_mhz": fmax, "clock_mhz": 100.0}

    text = _unit_text([row(1, 9.0, 8.0, (-5, -1), 104.0), row(4, 12.0, 10.2, (700, 3), 98.0),
                       row(8, 12.5, 9.9, (9000, 20), 99.0)])
    assert "4 lanes, working beside the core" in text and "12.00x speed and 10.20x energy" in text
    assert "6.00x / 5.10x with them written to memory and read back" in text
    assert "(up to 352 keys: 25% of the scores), 4.00x / 3.40x" in text
    assert "need 700 LUT4 and 3 DP16KD more" in text and "Fmax (98 MHz) is below the 100 MHz clock" in text
    assert "core and unit fit the device" in _unit_text([row(1, 9.0, 8.0, (-5, -1), 104.0)])
    assert "core, unit and its tile store fit the device" in _unit_text([{**row(1, 9.0, 8.0, (-5, -1), 104.0),
                                                                        "store_lut": 569}])
    # the best that fits beside the core at its clock, by its hybrid: the 1-lane unit here
    assert ("best that fits beside this core at its clock: 1 lanes, hybrid, 3.00x speed and 2.67x energy "
            "(25% of the scores on chip, rows up to 352 keys in 34 DP16KD)") in text
    assert "No lane count of the unit fits" in _unit_text([row(4, 12.0, 10.2, (700, 3), 98.0)])
    assert "No lane count" in _unit_text([row(4, 12.0, 10.2, (-7, -3), 98.0)])   # fits, but below the clock
    assert _unit_text([]) == ""
    from sw.estimate.report import _store_text
    assert "priced in block RAM only" in _store_text([{"store_source": None}])
    built = _store_text([{"store_source": "build/s.json"}])
    assert "synthesized beside this core for its largest rows (build/s.json)" in built


def test_the_report_says_whether_the_core_fits_its_fpga():
    from sw.estimate.report import _fit_text
    device = {"part": "LFE5U-85F", "lut4": 83640, "ebr": 208}
    core = {"label": "x core", "lut4": 80065, "lutram": 657, "ebr": 196}
    assert "does not fit: 367 LUT4 sites over" in _fit_text(core, device)[0]
    fits = _fit_text(dict(core, lut4=79654, lutram=658, ebr=194), device)[0]
    assert "it fits, with 38 LUT4 sites and 14 DP16KD to spare" in fits
    assert "1 DP16KD over" in _fit_text(dict(core, lut4=1000, ebr=209), device)[0]


def test_the_mac_ceiling_says_what_the_moonshot_needs():
    """At the ceiling short of 10x the text asks for PEs or clock; past it, for the time above the ceiling
    that 10x leaves."""
    from sw.estimate.ceiling import ceiling_against
    from sw.estimate.summary import _ceiling_text

    cls = {"part": "encoder", "class": "QK^T", "seconds": 3.0, "ideal_s": 1.0, "pe_idle_s": 1.5, "memory_wait_s": 0.5}
    above = {"pes": 256, "clock_mhz": 100.0, "seconds": 3.0, "ideal_s": 1.0, "pe_idle_s": 1.5, "memory_wait_s": 0.5,
             "classes": [cls]}
    short = ceiling_against(above, {"fp32 a": 8.0, "fp32 b": 9.0}, 10.0)
    assert short["speedup"] == 8.0 and short["against"] == "fp32 a"
    assert short["pes_needed"] == pytest.approx(320) and short["clock_mhz_needed"] == pytest.approx(125)
    text = _ceiling_text(above, short)
    assert "short of the moonshot even there: it needs 320 PEs at this clock, or 125 MHz with these PEs" in text
    assert "encoder QK^T 2000 ms (PEs idle 1500 ms, memory 500 ms)" in text
    room = ceiling_against(above, {"fp32 a": 12.0, "fp32 b": 15.0}, 10.0)
    assert room["speedup"] == 12.0 and room["pes_needed"] == pytest.approx(256 * 10 / 12)
    # 10x of 12 s allows 1.2 s: 200 ms above the ceiling's 1 s
    assert "the moonshot needs the time above the ceiling cut to 200 ms or less" in _ceiling_text(above, room)


def test_the_clock_sweep_finds_where_both_ratios_reach_the_target():
    """A subject bound by compute below 100 MHz and by memory above it, with a clock energy per elapsed
    cycle: the speed-up rises to a roof, the energy ratio peaks and falls, and the band where both reach
    the target is where they cross it."""
    from sw.estimate.clock_sweep import clock_sweep, held_text, sweep_text

    def retime(mhz):
        seconds = max(1000.0 / mhz, 10.0)                # 1000 M cycles of work; the memory needs 10 s
        return {"seconds": seconds, "energy_pj": 5.0 * seconds * mhz + 3000.0 / seconds}
    ends = {"fp32 a": {"seconds": 120.0, "energy_pj": 120000.0}, "fp32 b": {"seconds": 150.0, "energy_pj": 90000.0}}
    sweep = clock_sweep(retime, ends, 10.0, clocks=tuple(range(20, 201, 10)))
    # speed: 120 s / (1000 / f) >= 10 from f = 84 MHz on the grid; energy: 90000 / (5000 + 3 f) >= 10
    # up to 100 MHz, then 90000 / (50 f + 300) >= 10 up to 174 MHz
    assert sweep["bands"] == [(90, 170)]
    assert sweep["best_speedup"]["speedup"] == pytest.approx(12.0) and sweep["best_speedup"]["mhz"] == 100
    assert sweep["best_energy"]["mhz"] == 20
    text = sweep_text(sweep, 100.0, {"fmax_mhz": 54.38})
    assert "the moonshot holds from 90 to 170 MHz" in text and "reaches 54.38 MHz post-route" in text
    assert "the energy ratio peaks at 20 MHz" in text
    assert sweep_text(sweep, 54.38, {"fmax_mhz": 54.38}, routed=True).endswith(
        "take 54.38 MHz, this core's post-route Fmax on the board.")
    # a ratio that levels off at its peak is not said to fall
    flat = clock_sweep(lambda mhz: {"seconds": 1.0, "energy_pj": 1.0}, ends, 10.0, clocks=(20, 30, 40))
    assert "peaks" not in sweep_text(flat, 100.0, None)
    # the bracket's clocks held to the core's: here both ends slow with it, the ratios against them follow
    slowed = lambda mhz: {k: {"seconds": v["seconds"] * 100.0 / min(mhz, 100.0), "energy_pj": v["energy_pj"]}  # noqa: E731
                          for k, v in ends.items()}
    both = clock_sweep(retime, ends, 10.0, clocks=(50, 100, 150), held=slowed)
    assert [p["speedup_held"] for p in both["points"]] == pytest.approx([12.0, 12.0, 12.0])
    assert both["bands"] == [(100, 150)]
    path = {"from": "core.store.a", "to": "core.store.b", "routing": 16.9, "total_ns": 18.4}
    assert "lies there: from `core.store.a` to `core.store.b`, 16.9 of its 18.4 ns in routing): 3.00x speed and 4.00x " \
        "energy" in held_text((3.0, 4.0), 54.38, path)
    in_array = {**path, "to": "system.core.compute.array.pe_3_1.acc"}
    assert "touches its PE array or lanes" in held_text((3.0, 4.0), 54.38, in_array)
    none = clock_sweep(retime, ends, 13.0, clocks=tuple(range(20, 201, 10)))
    assert none["bands"] == []
    text = sweep_text(none, 100.0, None)
    assert "no clock reaches the moonshot: the speed-up is at most 12.00x (at 100 MHz, where the memory's roof holds it)" in text
