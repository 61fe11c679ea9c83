"""The softmax unit (``hw.softmax.LogSoftmaxUnit``) in Verilator, driven by cocotb: rows of scores in, every
code out, the cycle each row's first beat went in and the cycle the last code came out (numpy only; the
caller compares the codes with ``sw.ref.log_softmax`` and the cycles with ``hw.softmax.unit.schedule``).

The testbench offers a beat every cycle (the scores come as fast as the unit takes them) and takes every
output beat, as a core feeding the unit from its output tiles would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from hw.softmax.stream import checked_scores, lane_beats, pack

TOP = "log_softmax_unit"

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge, RisingEdge, ReadOnly

    @cocotb.test()
    async def unit_runs_rows(dut):
        job = Path(os.environ["SAMHW_SOFTMAX_JOB"])
        spec = json.loads((job / "spec.json").read_text())
        beats = np.load(job / "beats.npz")
        lanes, score_bits, bias_bits = spec["lanes"], spec["score_bits"], spec["bias_bits"]
        scores, bias, keep, last = beats["scores"], beats["bias"], beats["keep"], beats["last"]
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        dut.in_valid.value = 0
        for name, value in spec["ports"].items():
            getattr(dut, name).value = value
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        codes, kept, firsts = [], [], []
        taken, cycle, total, last_out = 0, 0, len(keep), -1
        while taken < total or len(codes) < total:
            if taken < total:
                dut.in_valid.value = 1
                dut.in_scores.value = pack(scores[taken], score_bits)
                dut.in_bias.value = pack(bias[taken], bias_bits)
                dut.in_keep.value = int(keep[taken])
                dut.in_last.value = int(last[taken])
            else:
                dut.in_valid.value = 0
            await ReadOnly()
            moved = taken < total and int(dut.in_ready.value)
            if int(dut.out_valid.value):
                codes.append(int(dut.out_codes.value))
                kept.append(int(dut.out_keep.value))
                last_out = cycle
            await RisingEdge(dut.clk)
            await FallingEdge(dut.clk)
            if moved:
                if taken == 0 or last[taken - 1]:
                    firsts.append(cycle)
                taken += 1
            cycle += 1
            assert cycle < 20 * total + 1000, "the unit stopped"
        mask = (1 << 8) - 1
        out = np.array([[c >> (8 * i) & mask for i in range(lanes)] for c in codes], np.int64).reshape(-1, lanes)
        np.savez(job / "result.npz", codes=out, keep=np.array(kept, np.int64), firsts=np.array(firsts, np.int64),
                 last_out=np.int64(last_out), cycles=np.int64(cycle))
except ImportError:   # cocotb is only needed inside the simulator
    pass


def cosimulate(widths, ports: dict[str, int], scores: np.ndarray, bias: np.ndarray | None,
               work: str | Path = "sim_build", coverage: bool = False) -> tuple[np.ndarray, np.ndarray, int, dict | None]:
    """Codes [rows, keys] the unit built with ``widths`` writes for ``scores`` [rows, keys] (and ``bias``, in
    2^-F log2 units) under the layer's ``ports``; the cycle each row's first beat went in and the cycle the
    last code came out, from the first beat in; with ``coverage`` the run's toggle sums (register and
    combinational bits of the unit) and cycles."""
    from hw.generate import unit_verilog
    from hw.softmax.unit import LogSoftmaxUnit

    from .core_activity import parse_coverage, register_bits, toggle_sums
    from .verilator import run_unit

    scores = checked_scores(scores, widths.score_bits)
    rows, keys = scores.shape
    tag = f"{TOP}_{widths.lanes}x{widths.max_keys}_{widths.score_bits}_{widths.bias_bits}" + ("_toggles" * coverage)
    build = Path(work).resolve() / tag
    build.mkdir(parents=True, exist_ok=True)
    text = unit_verilog(LogSoftmaxUnit(widths), TOP)
    np.savez(build / "beats.npz", **lane_beats(scores, bias, widths.lanes))
    (build / "spec.json").write_text(json.dumps({"lanes": widths.lanes, "score_bits": widths.score_bits,
                                                 "bias_bits": widths.bias_bits, "ports": ports}))
    (build / "result.npz").unlink(missing_ok=True)
    points = run_unit(text, TOP, build, "sim.softmax_cosim", {"SAMHW_SOFTMAX_JOB": str(build)}, coverage)
    if not (build / "result.npz").exists():
        raise RuntimeError(f"the softmax unit's simulation wrote no result: see {build / 'sim.log'}")
    result = np.load(build / "result.npz")
    keep = result["keep"]
    bits = (keep[:, None] >> np.arange(widths.lanes)) & 1
    codes = result["codes"][bits.astype(bool)]
    if codes.size != rows * keys:
        raise RuntimeError(f"the softmax unit wrote {codes.size} codes for {rows} x {keys} keys")
    activity = None
    if coverage:
        activity = {**toggle_sums(parse_coverage(points), register_bits(text)), "cycles": int(result["cycles"])}
    firsts = result["firsts"]
    return codes.reshape(rows, keys), firsts - firsts[0], int(result["last_out"] - firsts[0]), activity

