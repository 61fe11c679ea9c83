"""cocotb testbench of the board design (``hw.board.system.BoardSystem``): a 100 MHz clock, a reset,
cocotbext-uart's ``UartSource`` on ``uart_rx`` and ``UartSink`` on ``uart_tx``, and a host scenario
($SAMHW_BOARD_SCENARIO, "module:function", with the JSON arguments in $SAMHW_BOARD_ARGS) that talks to
the board through ``CocotbTransport``. The scenario runs in a ``bridge`` thread: while it computes,
simulated time stands still; its transport calls ``resume`` coroutines that advance it. Its result
goes to $SAMHW_RESULT (JSON), with the simulated time and the board's LEDs at the end.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import First, RisingEdge, Timer
from cocotb.utils import get_sim_time


class CocotbTransport:
    """``hw.board.host.Transport`` on the simulated UART pins; its seconds are simulated seconds."""

    latency_s = 0.0

    def __init__(self, source, sink, baud: float):
        self.source, self.sink, self.baud = source, sink, baud
        self.write = resume(self._write)
        self.read = resume(self._read)
        self.sleep = resume(self._sleep)
        self.now = resume(self._now)

    async def _write(self, data: bytes) -> None:
        await self.source.write(bytes(data))

    async def _read(self, n: int, timeout_s: float) -> bytes:
        deadline = get_sim_time("ns") + max(int(timeout_s * 1e9), 1)
        while self.sink.count() < n:
            left = deadline - get_sim_time("ns")
            if left <= 0:
                break
            self.sink.sync.clear()
            await First(self.sink.sync.wait(), Timer(int(left), "ns"))
        return bytes(self.sink.read_nowait(min(n, self.sink.count())))

    async def _sleep(self, seconds: float) -> None:
        await Timer(max(int(seconds * 1e9), 1), "ns")

    async def _now(self) -> float:
        return get_sim_time("ns") * 1e-9


@cocotb.test()
async def board_runs_scenario(dut):
    from cocotbext.uart import UartSink, UartSource

    args = json.loads(Path(os.environ["SAMHW_BOARD_ARGS"]).read_text())
    module, _, function = os.environ["SAMHW_BOARD_SCENARIO"].partition(":")
    scenario = getattr(importlib.import_module(module), function)
    baud = args["baud"]
    Clock(dut.clk, args["clock_ns"], unit="ns").start(start_high=False)
    dut.rst.value = 1
    dut.uart_rx.value = 1
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    source = UartSource(dut.uart_rx, baud=baud, bits=8, stop_bits=1)
    sink = UartSink(dut.uart_tx, baud=baud, bits=8, stop_bits=1)
    for name in (f"cocotb.{dut.uart_rx._path}", f"cocotb.{dut.uart_tx._path}"):
        logging.getLogger(name).setLevel(logging.WARNING)   # they log every byte at INFO
    await RisingEdge(dut.clk)
    wall = time.perf_counter()
    result = await bridge(scenario)(CocotbTransport(source, sink, baud), args)
    result["sim_s"] = get_sim_time("ns") * 1e-9
    result["wall_s"] = time.perf_counter() - wall
    result["leds"] = dut.leds.value.to_unsigned()
    Path(os.environ["SAMHW_RESULT"]).write_text(json.dumps(result))
