"""cocotb testbench of a generated GEMM engine (hw.engine) on Verilator.

The job file (path in $SAMHW_JOB, written by sim.runner) holds the bus writes that load the run, the
output addresses to read back and the expected word at each; the testbench drives the engine through
its bus, starts it, waits for ``done``, reads every output word, compares it with the expected word
and writes the counts and the cycle counter to $SAMHW_RESULT. Inputs are driven and outputs sampled
on the falling clock edge, so every value is stable around the rising edge that uses it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, with_timeout

CLOCK_NS = 10


@cocotb.test()
async def engine_matches_reference(dut):
    job = json.loads(Path(os.environ["SAMHW_JOB"]).read_text())
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.rst.value = 1
    dut.we.value = 0
    dut.start.value = 0
    dut.addr.value = 0
    dut.wdata.value = 0
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0

    for addr, data in job["writes"]:
        dut.addr.value = addr
        dut.wdata.value = data
        dut.we.value = 1
        await FallingEdge(dut.clk)
    dut.we.value = 0
    dut.start.value = 1
    await FallingEdge(dut.clk)
    dut.start.value = 0
    await with_timeout(RisingEdge(dut.done), job["timeout_cycles"] * CLOCK_NS, "ns")
    await FallingEdge(dut.clk)
    cycles = dut.cycles.value.to_unsigned()
    assert not dut.busy.value

    mismatches, first = 0, []
    reads, expected = job["reads"], job["expected"]
    for i, addr in enumerate(reads):
        dut.addr.value = addr
        await FallingEdge(dut.clk)  # the read port samples addr at the rising edge in between
        got = dut.rdata.value.to_unsigned()
        if got != expected[i]:
            mismatches += 1
            if len(first) < 10:
                first.append({"index": i, "address": addr, "got": got, "expected": expected[i]})
    Path(os.environ["SAMHW_RESULT"]).write_text(json.dumps(
        {"cycles": cycles, "compared": len(reads), "mismatches": mismatches, "first_mismatches": first}))
    assert mismatches == 0, f"{mismatches} of {len(reads)} output words differ, first: {first}"
