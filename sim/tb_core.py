"""cocotb testbench of the core with its simulation memory (``hw.core.simtop``) on Verilator.

The job file ($SAMHW_JOB, written by ``sim.core_runner``) lists runs; each run names an external
memory image (.npy, flat uint8; none: continue on the memory the previous run left, as the parts of one
invocation do), the three instruction streams, the word ranges to read back and the ranges its STORE
instructions write. A run with an image first zeroes what the previous image and stores left, then
writes the image's non-zero words straight into the simulation memory's storage array (a public
Verilator variable of hw/core/sim_storage.v: one VPI write per word, no bus transactions); writes the programs
through the register port, starts the core, waits for done, reads the cycle counter and the
instruction counts, and saves the requested words (.npy) and the counters ($SAMHW_RESULT, JSON; with
$SAMHW_PROGRESS set, each run's counters are also appended to that file as soon as it finishes).
Inputs are driven and outputs sampled on the falling edge, so values are stable at the rising edge.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, with_timeout

from hw.core import regs

CLOCK_NS = 10


class CoreDriver:
    """The register port and the memory backdoor of one simulated core."""

    def __init__(self, dut, bus_bytes: int):
        self.dut, self.bus_bytes = dut, bus_bytes
        self.storage = dut.simmem.storage.mem  # the array inside hw/core/sim_storage.v

    async def reset(self) -> None:
        dut = self.dut
        dut.rst.value = 1
        dut.reg_we.value = 0
        dut.reg_addr.value = 0
        dut.reg_wdata.value = 0
        for _ in range(2):
            await FallingEdge(dut.clk)
        dut.rst.value = 0

    async def write(self, addr: int, data: int) -> None:
        self.dut.reg_addr.value = addr
        self.dut.reg_wdata.value = data
        self.dut.reg_we.value = 1
        await FallingEdge(self.dut.clk)
        self.dut.reg_we.value = 0

    async def read(self, addr: int) -> int:
        self.dut.reg_addr.value = addr
        await FallingEdge(self.dut.clk)  # the register is sampled at the rising edge in between
        return self.dut.reg_rdata.value.to_unsigned()

    def load_memory(self, image: np.ndarray) -> int:
        """Writes every non-zero word of ``image``; returns how many (the storage starts zeroed)."""
        words = image.reshape(-1, self.bus_bytes)
        nonzero = np.flatnonzero(words.any(axis=1))
        for w in nonzero.tolist():
            self.storage[w].value = int.from_bytes(words[w].tobytes(), "little")
        return len(nonzero)

    def clear_memory(self, image: np.ndarray) -> None:
        words = image.reshape(-1, self.bus_bytes)
        for w in np.flatnonzero(words.any(axis=1)).tolist():
            self.storage[w].value = 0

    def clear_ranges(self, ranges) -> None:
        for start, count in ranges:
            for w in range(start, start + count):
                self.storage[w].value = 0

    async def run(self, streams: dict, timeout_cycles: int) -> dict:
        """The three programs (hex words) through the register port, start, wait for done; the run's
        cycles, per-unit instruction counts and status."""
        for unit in ("load", "compute", "store"):
            for addr, data in regs.program_writes(unit, [int(w, 16) for w in streams[unit]]):
                await self.write(addr, data)
        await self.write(regs.CTRL, 1)
        await with_timeout(RisingEdge(self.dut.done), timeout_cycles * CLOCK_NS, "ns")
        await FallingEdge(self.dut.clk)
        status = await self.read(regs.STATUS)
        cycles = await self.read(regs.CYCLES_LO) | (await self.read(regs.CYCLES_HI)) << 32
        counts = {unit: await self.read(regs.COUNT[unit]) for unit in ("load", "compute", "store")}
        return {"cycles": cycles, "counts": counts, "status": status}

    def read_words(self, start: int, count: int) -> np.ndarray:
        out = np.zeros((count, self.bus_bytes), np.uint8)
        for i in range(count):
            value = self.storage[start + i].value.to_unsigned()
            out[i] = np.frombuffer(value.to_bytes(self.bus_bytes, "little"), np.uint8)
        return out


@cocotb.test()
async def core_runs_jobs(dut):
    job = json.loads(Path(os.environ["SAMHW_JOB"]).read_text())
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    core = CoreDriver(dut, job["bus_bytes"])
    await core.reset()
    results, image, stored = [], None, []
    progress = os.environ.get("SAMHW_PROGRESS")  # optional: a JSON-lines file of the runs finished so far
    for run in job["runs"]:
        if run["memory"] is not None:
            if image is not None:  # a new image starts from a zeroed memory
                core.clear_memory(image)
                core.clear_ranges(stored)
                stored = []
            image = np.load(run["memory"])
            core.load_memory(image)
        counters = await core.run(run["streams"], run["timeout_cycles"])
        readback = [core.read_words(start, count) for start, count in run["read"]]
        np.save(run["result"], np.concatenate(readback) if readback else np.zeros((0, job["bus_bytes"]), np.uint8))
        results.append(counters)
        if progress:  # one line per finished run, so a batch stopped by a timeout still says what ran
            with open(progress, "a") as f:
                f.write(json.dumps(results[-1]) + "\n")
        stored += run["clear"]
    Path(os.environ["SAMHW_RESULT"]).write_text(json.dumps(results))
