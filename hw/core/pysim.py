"""Run a program on the RTL in Amaranth's simulator: the same contract as ``hw.fsim.run``, plus the
core's cycle counter.

    result = run_rtl(config, streams, memory)   # result.memory, result.cycles, result.executed

The memory image becomes the simulation memory's initial contents, the programs are written through
the register port (as a host would), the run is started and waited for, and the memory is read back
directly (no bus transactions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from . import regs
from .config import CoreConfig
from .simtop import SimTop
from .streams import UNITS, Streams, word_view


@dataclass(frozen=True)
class RtlResult:
    memory: np.ndarray
    cycles: int                 # the CYCLES register: run cycles, start to done
    executed: dict[str, int]    # the COUNT registers


class RtlTimeout(RuntimeError):
    pass


def memory_words(memory: np.ndarray, config: CoreConfig) -> list[int]:
    return [int.from_bytes(w.tobytes(), "little") for w in word_view(np.asarray(memory, np.uint8), config)]


def register_access(ctx, top):
    """``write(addr, data)`` and ``read(addr)`` on a core's register port, one clock each, for a testbench
    ``ctx`` of ``amaranth.sim``."""
    async def write(addr, data):
        ctx.set(top.reg_addr, addr)
        ctx.set(top.reg_wdata, data)
        ctx.set(top.reg_we, 1)
        await ctx.tick()
        ctx.set(top.reg_we, 0)

    async def read(addr):
        ctx.set(top.reg_addr, addr)
        await ctx.tick()
        return ctx.get(top.reg_rdata)

    return write, read


def run_rtl(config: CoreConfig, streams: Streams, memory: np.ndarray, max_cycles: int = 200_000,
            vcd: str | None = None) -> RtlResult:
    return run_rtl_sequence(config, [streams], memory, max_cycles, vcd)[-1]


def run_rtl_sequence(config: CoreConfig, programs: list[Streams], memory: np.ndarray, max_cycles: int = 200_000,
                     vcd: str | None = None) -> list[RtlResult]:
    """Runs the programs one after the other on one core and one memory, as a host does (each is
    written and started after the previous one is done); one result per run, with the memory after it."""
    for streams in programs:
        streams.check(config)
    words = memory_words(memory, config)
    top = SimTop(config, max(len(words), 2), init=words)
    results: list[RtlResult] = []

    async def bench(ctx):
        write, read = register_access(ctx, top)

        for streams in programs:
            for unit in UNITS:
                for addr, data in regs.program_writes(unit, getattr(streams, unit)):
                    await write(addr, data)
            await write(regs.CTRL, 1)   # done is low from the tick that takes the write
            for _ in range(max_cycles):
                if ctx.get(top.done):
                    break
                await ctx.tick()
            else:
                raise RtlTimeout(f"the core did not finish within {max_cycles} cycles")
            cycles = await read(regs.CYCLES_LO) | (await read(regs.CYCLES_HI)) << 32
            executed = {u: await read(regs.COUNT[u]) for u in UNITS}
            data = [ctx.get(top.simmem.storage.data[i]) for i in range(len(words))]
            image = np.concatenate([np.frombuffer(int(v).to_bytes(config.bus_bytes, "little"), np.uint8)
                                    for v in data]) if data else np.zeros(0, np.uint8)
            results.append(RtlResult(image, cycles, executed))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return results
