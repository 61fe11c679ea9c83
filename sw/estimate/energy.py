"""Energy of one invocation on one design: dynamic energy from activity x per-resource coefficients,
plus static power x time (numpy only). Coefficients and their sources: ``sources.py``.

    dynamic = toggles(LUT) x lut_toggle + toggles(FF) x ff_toggle + FF x clock cycles x ff_clock
            + MULT18X18D operations x dsp_op + block RAM bits accessed x ebr_bit
            + external bits x (sdram_bit + io_bit)
    static  = (fpga_static + sdram_static) x time

Toggles(resource) of a block = resource count (synthesis) x measured toggles per bit per event
(``activity.py``) x events of this invocation (``costs.CallCost``): issued terms for the PE array,
lane-busy cycles for the lanes, cycles for the rest. Clock cycles are the invocation's time on the
board times the clock: while the core waits on a slower external memory its clock runs on, so every
FF's clock input keeps switching (the cycle model's count is the time with the core's own memory).
Block RAM bits: per issued term one ACT row vector (two words: the even and the odd bank) and one WGT
word; one OUT word per output-pass cycle; one word per LOAD / STORE beat.

A core with the softmax path (``softmax``): its SOFTMAX instructions' work, priced as the unit's own
(``softmax_unit.SoftmaxUnitCost.work`` with the path's synthesized resources and the unit's measured rates)
plus the tile store's accesses (and, with a grid bias, the lanes' table reads); the path is its own block,
outside "the rest of the core".
"""

from __future__ import annotations

from hw.core.config import BIAS_BITS, RELATIVE_PAIR_BITS

PJ = 1e-12
ENERGY_PARTS = ("array", "lanes", "control", "softmax", "clock", "dsp", "bram", "sdram", "io", "static")


def dynamic_pj(design, cost, kind: str, c: dict, clock_cycles: float | None = None) -> tuple[dict, str]:
    """Energy components in pJ and the measured kinds the activity came from; ``clock_cycles``: the
    cycles the clock runs (default: the cycle model's count)."""
    r = design.resources
    bus = design.bus_bits
    out = {}
    toggle = lambda block, rates, events: (r[block]["lut"] * rates[1] * c["lut_toggle"]
                                           + r[block]["ff"] * rates[0] * c["ff_toggle"]) * events
    if design.fp32:
        source = "FP32 lane"
        out["array"] = toggle("array", design.activity.rates, cost.terms)
        out["lanes"] = 0.0
        core_rates = design.core_activity.rates(kind)[0].core
        out["dsp"] = cost.terms * design.lanes * design.dsp_per_pe * c["dsp_op"]
    else:
        rates, source = design.activity.rates(kind)
        out["array"] = toggle("array", rates.array, cost.terms)
        out["lanes"] = toggle("lanes", rates.lanes, cost.lane_cycles + cost.out_words)
        core_rates = rates.core
        out["dsp"] = cost.lane_cycles * design.config.cols * design.dsp_per_lane * c["dsp_op"]
    out["control"] = toggle("core", core_rates, cost.cycles)
    out["softmax"] = 0.0
    if design.softmax is not None and cost.softmax_cycles:
        # the path's logic at the unit's measured rates while its SOFTMAXes run, its DSP and ROM / buffer
        # reads, and the tile store: every score written once and read once
        work = design.softmax.work(cost.softmax_cycles, cost.softmax_beats, cost.softmax_keys, c)
        # (with a grid bias, every key also reads its lane's bias table; with relative positions, its width
        # term and at most a height term)
        store_bits = 2 * design.softmax.widths.score_bits + (BIAS_BITS if design.config.softmax_bias_side else 0) \
            + (RELATIVE_PAIR_BITS if design.config.softmax_relative_side else 0)
        out["softmax"] = work["logic"] + work["dsp"] + work["bram"] + cost.softmax_keys * store_bits * c["ebr_bit"]
    out["clock"] = sum(b["ff"] for b in r.values()) * (cost.cycles if clock_cycles is None else clock_cycles) \
        * c["ff_clock"]
    words = 3 * cost.terms + cost.out_words + sum(cost.load_beats.values()) + cost.store_beats
    out["bram"] = words * bus * c["ebr_bit"]
    bits = cost.bytes * 8
    out["sdram"] = bits * c["sdram_bit"]
    out["io"] = bits * c["io_bit"]
    return out, source


def static_pj(seconds: float, c: dict) -> float:
    return (c["fpga_static"] + c["sdram_static"]) * 1e-3 * seconds / PJ
