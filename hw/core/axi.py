"""The AXI4 port of the core: one master with separate read and write channels, one ID.

Member names are the AXI signal names without the ``m_axi_`` prefix the core's top level adds, so a
testbench finds them as ``<prefix>_awaddr`` etc. (cocotbext-axi's ``AxiBus.from_prefix`` convention).
``Out`` members are driven by the master.
"""

from __future__ import annotations

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

BURST_INCR = 1
ID_BITS = 1


def axi4_signature(addr_bits: int, data_bits: int) -> wiring.Signature:
    return wiring.Signature({
        "awaddr": Out(addr_bits), "awlen": Out(8), "awsize": Out(3), "awburst": Out(2), "awid": Out(ID_BITS),
        "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_bits), "wstrb": Out(data_bits // 8), "wlast": Out(1), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bid": In(ID_BITS), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_bits), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2), "arid": Out(ID_BITS),
        "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_bits), "rresp": In(2), "rid": In(ID_BITS), "rlast": In(1), "rvalid": In(1), "rready": Out(1),
    })


def size_code(data_bits: int) -> int:
    """AxSIZE: log2 of the bytes per beat."""
    return (data_bits // 8).bit_length() - 1
