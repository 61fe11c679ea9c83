"""Time of one invocation on a design and board, and which roof bounds it (numpy only).

The cycle model counts the core with its own memory (one ``bus_bits`` word per cycle at the core's
clock, after mem_read_latency): ``core_s`` = cycles / clock. A board whose external memory is slower
(the ULX3S's 16-bit SDRAM) caps the bytes per second: ``memory_s`` = bytes moved / bandwidth. The
invocation takes the longer of the two (a roofline per layer; the overlap the cycle model already has
between transfers and compute is kept, a slower memory is assumed to stretch only the transfers).
Bound: ``memory`` when the board's memory time is the longer; else ``bus`` when the core's own bus
needs more cycles (LOAD beats, or STORE beats: separate channels) than the PE array issues terms;
else ``compute``.
"""

from __future__ import annotations


def call_time(cost, clock_mhz: float, memory_bytes_per_s: float | None) -> dict:
    core_s = cost.cycles / (clock_mhz * 1e6)
    memory_s = cost.bytes / memory_bytes_per_s if memory_bytes_per_s else 0.0
    bus_cycles = max(sum(cost.load_beats.values()), cost.store_beats)
    bound = "memory" if memory_s > core_s else "bus" if bus_cycles > cost.terms else "compute"
    return {"core_s": core_s, "memory_s": memory_s, "seconds": max(core_s, memory_s), "bound": bound}
