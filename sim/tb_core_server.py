"""cocotb testbench that serves requests: one simulator process for a whole model run
(``sim.core_backend``), instead of one process per batch of runs (``sim.tb_core``).

The client listens on a local TCP port ($SAMHW_SERVE = host:port); this test connects and executes one
JSON request per line until ``quit`` or until the connection closes, answering each with one JSON line
(``{"ok": true, ...}`` or ``{"error": "..."}``):

    {"op": "load"}                          the simulation memory reads the load file (+samhw_load plusarg)
                                            with $readmemh: the words it lists change, in C++
                                            (hw/core/sim_storage.v's bulk port), none through VPI
    {"op": "dump", "first": a, "last": b}   words a..b written to the dump file (+samhw_dump) with $writememh
    {"op": "run", "streams": {...}, "timeout_cycles": n}
                                            the three programs through the register port, start, wait for
                                            done -> cycles, per-unit instruction counts, status
    {"op": "quit"}

Inputs are driven and outputs sampled on the falling edge, as in ``sim.tb_core``.
"""

from __future__ import annotations

import json
import os
import socket

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from .tb_core import CLOCK_NS, CoreDriver

BULK_LOAD, BULK_DUMP = 1, 2


class BulkPort:
    """hw/core/sim_storage.v's bulk load/dump, driven from the testbench."""

    def __init__(self, dut):
        self.dut = dut
        self.storage = dut.simmem.storage

    async def request(self, op: int, first: int = 0, last: int = 0) -> None:
        st = self.storage
        seq = (st.bulk_seq.value.to_unsigned() + 1) & 0xFFFFFFFF
        st.bulk_op.value = op
        st.bulk_first.value = first
        st.bulk_last.value = last
        st.bulk_seq.value = seq
        await RisingEdge(self.dut.clk)
        await FallingEdge(self.dut.clk)
        if st.bulk_done.value.to_unsigned() != seq:
            raise RuntimeError(f"bulk request {seq} (op {op}) was not taken by the simulation memory")


@cocotb.test()
async def core_serves_requests(dut):
    host, port = os.environ["SAMHW_SERVE"].rsplit(":", 1)
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    core = CoreDriver(dut, int(os.environ.get("SAMHW_BUS_BYTES", "32")))
    bulk = BulkPort(dut)
    await core.reset()
    with socket.create_connection((host, int(port))) as conn, conn.makefile("rwb") as stream:
        stream.write(json.dumps({"ok": True, "ready": True}).encode() + b"\n")
        stream.flush()
        while True:
            line = stream.readline()
            if not line:
                break
            request = json.loads(line)
            op = request.get("op")
            if op == "quit":
                stream.write(b'{"ok": true}\n')
                stream.flush()
                break
            try:
                if op == "load":
                    await bulk.request(BULK_LOAD)
                    reply = {"ok": True}
                elif op == "dump":
                    await bulk.request(BULK_DUMP, request["first"], request["last"])
                    reply = {"ok": True}
                elif op == "run":
                    reply = {"ok": True, **await core.run(request["streams"], request["timeout_cycles"])}
                else:
                    reply = {"error": f"unknown request '{op}'"}
            except Exception as exc:  # answer the client, then stop: the simulation state is unknown
                stream.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n")
                stream.flush()
                raise
            stream.write(json.dumps(reply).encode() + b"\n")
            stream.flush()
