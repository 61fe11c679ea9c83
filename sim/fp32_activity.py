"""Switching activity of one FP32 multiply-add lane (``hw.fp32.Fp32MacLane``) on real operands:
Verilator toggle coverage of the lane alone, driven by cocotb at one term per cycle.

    python -m sim.fp32_activity runs/bundle_minmax_w8a8 --out docs/estimate_inputs/activity_fp32_lane.json

The operands are real LiteMedSAM values in float32: a layer's weights and its captured input rows
(``<bundle>.inputs.npz``), dequantized from the W8A8 bundle's codes (code - zero point) x scale. The
lane computes ``INTERLEAVE`` outputs at a time round robin (rows r..r+5 against one weight column),
as in an output tile, so it takes one product per cycle; ``terms`` counts those cycles. Toggle sums are
split into register bits (clocked assignments of the generated Verilog) and combinational bits, as for
the core (``sim.core_activity``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

TOP = "fp32_lane"
LAYERS = ("image_encoder.layers.2.blocks.0.attn.proj", "image_encoder.layers.2.blocks.0.mlp.fc2")
GROUPS = 4          # output groups of INTERLEAVE rows per layer
COLUMNS = 2


def real_terms(bundle, captured, layers=LAYERS, groups=GROUPS, columns=COLUMNS) -> np.ndarray:
    """[n, 5] uint32 rows (a, b, valid, first, last) of float32 terms in issue order."""
    from hw.fp32 import INTERLEAVE

    rows = []
    for name in layers:
        layer = bundle.layers[name]
        codes = captured.gemm_input(name).astype(np.float64)
        x = ((codes - layer.input.zero_point) * layer.input.scale).astype(np.float32)
        w = layer.weights
        wf = ((w.codes.astype(np.float64) - w.zero_point[:, None]) * w.scale[:, None]).astype(np.float32)
        c = x.shape[1]
        for g in range(groups):
            r = x[g * INTERLEAVE:(g + 1) * INTERLEAVE]
            if len(r) < INTERLEAVE:
                break
            for col in range(columns):
                for k in range(c):
                    for s in range(INTERLEAVE):
                        rows.append((r[s, k].view(np.uint32), wf[col, k].view(np.uint32), 1, k == 0, k == c - 1))
    return np.array(rows, np.uint64).astype(np.uint32)


try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge

    @cocotb.test()
    async def lane_runs_terms(dut):
        terms = np.load(os.environ["SAMHW_TERMS"])
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        for name in ("valid", "first", "last", "a", "b", "init"):
            getattr(dut, name).value = 0
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        for a, b, valid, first, last in terms.tolist():
            dut.a.value, dut.b.value = a, b
            dut.valid.value, dut.first.value, dut.last.value = valid, first, last
            await FallingEdge(dut.clk)
        dut.valid.value = 0
        for _ in range(20):
            await FallingEdge(dut.clk)
except ImportError:   # cocotb is only needed inside the simulator
    pass


def measure(bundle_dir: str, work: str = "sim_build") -> dict:
    from hw.fp32 import Fp32MacLane
    from hw.generate import unit_verilog
    from sw.bundle import captured_inputs_path, load_bundle, load_captured_inputs

    from .core_activity import parse_coverage, register_bits, toggle_sums
    from .verilator import run_unit

    bundle = load_bundle(bundle_dir)
    captured = load_captured_inputs(captured_inputs_path(bundle_dir))
    terms = real_terms(bundle, captured)
    build = Path(work).resolve() / "fp32_lane_coverage"
    build.mkdir(parents=True, exist_ok=True)
    text = unit_verilog(Fp32MacLane(), TOP)
    np.save(build / "terms.npy", terms)
    coverage = run_unit(text, TOP, build, "sim.fp32_activity", {"SAMHW_TERMS": str(build / "terms.npy")},
                        coverage=True)
    points = parse_coverage(coverage)
    # one block: the whole lane (its hierarchy is TOP and the multiplier / adder below it)
    return {"layers": list(LAYERS), "bundle": str(bundle_dir), "terms": int(len(terms)),
            "cycles": int(len(terms)) + 21, "lane": toggle_sums(points, register_bits(text)), "points": len(points)}


def main(argv=None) -> int:
    from sw.atomic_file import write_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--work", default="sim_build")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = measure(args.bundle, args.work)
    result.update(command="python -m sim.fp32_activity " + " ".join(argv if argv is not None else sys.argv[1:]),
                  seconds=round(time.perf_counter() - start))
    write_atomic(Path(args.out), json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
