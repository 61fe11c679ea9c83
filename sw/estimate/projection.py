"""What moving the host steps on chip would give, one step after another (numpy only).

A host step moved on chip lets the core write the next layer's codes instead of the outputs the step
reads: those outputs become dense codes of the core's activation width. Per invocation, the external
bytes change by that much; the memory time and the SDRAM and I/O energy follow the bytes, the clock's
and the static energy the time (the longer of the core's and the memory's, as ``perf.call_time``). The
core's cycles and the rest of its energy stay as they are, and the on-chip unit's own cycles, logic and
energy are not counted: each row is what the step could give at most were its unit free, and the loads
unchanged.
"""

from __future__ import annotations

import dataclasses

from sw.ref.log_softmax import REL_BITS

from .resources import LUTRAM_SITES
from .softmax_unit import invocation_store, relative_position_macs, tile_row_keys

# The host steps in the order they could move on chip, cheapest first: an elementwise step into the next
# layer's codes is a lookup on each output; the softmax needs its row's maximum and sum; the rest
# (LayerNorm, residual adds) mixes a token's channels or two tensors. Each reads the outputs whose
# ``read_by`` (hw.compiler.model.output_reader) it names; the last row packs the outputs that already are
# codes densely, so the cumulative bound ends with every output a dense code. Outputs read by ``lookup``
# went through the core's output lookup: that step is on chip already (``on_chip``), its outputs codes.
HOST_STEPS = (("the elementwise GELU / ReLU", ("gelu", "relu", "lookup")), ("the softmax", ("softmax",)),
              ("LayerNorm, residual adds and the rest", ("host",)),
              ("(no host step: the outputs that already are codes, packed densely)", None))
ON_CHIP = {"lookup"}
BYTE_PARTS = ("sdram", "io")      # energy that follows the external bytes
TIME_PARTS = ("clock", "static")  # energy that follows the time
CORE_PARTS = ("array", "lanes", "control", "dsp", "bram")   # energy that follows the core's work
# The softmax unit's place: ``serial`` and ``overlap`` keep the scores on chip, the unit working after the
# core or beside it; that needs the unit to hold the R rows of a tile (the array emits a tile's rows
# interleaved, K keys each), where the built unit holds 3 rows. ``memory``: the scores go to external
# memory as now and the unit, beside the core, reads each row back whole, as the built unit takes them,
# and writes the codes. ``hybrid``: a QK^T whose tile store (``softmax_unit.tile_store_ebr``: the R rows of
# a tile as the core's integer sums) fits the device's block RAMs left beside core and unit keeps its scores
# on chip, beside the core; the others go through memory. Wherever the scores stay on chip, the store's
# block-RAM accesses count in the unit's energy.
UNIT_MODES = ("serial", "overlap", "memory", "hybrid")


def ratio(a, b):
    """a / b, or None where b is zero (a part the design does not have)."""
    return a / b if b else None


def _project(run, taken: set, code_bits: int, unit=None, coeff: dict | None = None, mode: str = "serial",
             relative_parts: frozenset = frozenset(), spare_ebr: int = 0) -> dict:
    """Image + box totals of ``run`` with the outputs read by ``taken`` stored as dense codes; with ``unit``
    (``softmax_unit.SoftmaxUnitCost``) the softmax's scores also pass that unit, after the core's time or
    (``overlap``) beside it, and its logic, DSP, block RAM and clock energy count (part ``softmax_unit``);
    QK^T invocations of ``relative_parts`` (SAM ViT's encoder) also compute the relative-position term on
    the core (``softmax_unit`` module docstring). ``mode``: one of ``UNIT_MODES``; ``spare_ebr``: the block
    RAMs the ``hybrid`` mode's tile stores may take."""
    tot = {"seconds": 0.0, "bytes": 0.0, "store": 0.0, "memory_bound_s": 0.0, "unit_s": 0.0, "relative_s": 0.0,
           "scores": 0, "scores_on_chip": 0, "energy": {}}
    clock_hz = run.design.clock_mhz * 1e6
    for r, row in zip(run.analysis.results, run.rows):
        cost, n = r.cost, r.count
        store = cost.out_elements * code_bits / 8 if r.read_by in taken else cost.write_bytes
        moved = cost.bytes - cost.write_bytes + store
        on_chip = False
        if unit is not None and r.read_by == "softmax":
            tile = invocation_store(r.key, cost.out_elements, run.design.config, r.part in relative_parts)
            on_chip = mode in ("serial", "overlap") or (mode == "hybrid" and tile["ebr"] <= spare_ebr)
            tot["scores"] += cost.out_elements * n
            tot["scores_on_chip"] += cost.out_elements * n if on_chip else 0
            if not on_chip:
                moved += 2 * cost.write_bytes      # the scores written as now, then read back by the unit
        scale = moved / cost.bytes if cost.bytes else 0.0
        memory_s = row["memory_s"] * scale
        energy = dict(row["energy_pj"])
        core_s = row["core_s"]
        if unit is not None and r.read_by == "softmax" and r.part in relative_parts:
            passes = -(-REL_BITS // run.design.config.weight_bits)
            more = 1 + passes * relative_position_macs(r.key, cost.out_elements) / cost.macs
            core_s *= more
            energy.update({k: energy[k] * more for k in CORE_PARTS if k in energy})
            tot["relative_s"] += (core_s - row["core_s"]) * n
        seconds = max(core_s, memory_s)
        if unit is not None:
            energy["softmax_unit"] = 0.0
            if r.read_by == "softmax":
                u = unit.call(r.key, cost.out_elements, coeff)
                unit_s = u["cycles"] / clock_hz
                seconds = seconds + unit_s if mode == "serial" else max(seconds, unit_s)
                energy["softmax_unit"] = u["logic"] + u["dsp"] + u["bram"]
                if on_chip:
                    energy["softmax_unit"] += tile["bits_moved"] * coeff["ebr_bit"]
                tot["unit_s"] += unit_s * n
            energy["softmax_unit"] += unit.ff * seconds * clock_hz * coeff["ff_clock"]
        for k, v in energy.items():
            if k in BYTE_PARTS:
                v = v * scale
            elif k in TIME_PARTS and row["seconds"]:
                v = v * seconds / row["seconds"]
            tot["energy"][k] = tot["energy"].get(k, 0.0) + v * n
        tot["seconds"] += seconds * n
        tot["bytes"] += moved * n
        tot["store"] += cost.write_bytes * n if r.read_by in taken else 0.0
        tot["memory_bound_s"] += seconds * n if memory_s > core_s else 0.0
    return tot


def host_step_projection(subject, code_bits: int) -> list[dict]:
    """Per host step, cumulative: the outputs it reads (``readers``), their share of the subject's stored
    bytes now, and the subject's image + box ``totals`` (seconds, bytes, energy_pj) with them and every
    earlier step's on chip; also the memory-bound share and the largest energy part then. ``against``
    turns the totals into ratios against a baseline."""
    readers = {r.read_by for r in subject.analysis.results}
    store_now = sum(r.cost.write_bytes * r.count for r in subject.analysis.results)
    out, done = [], set()
    before = _project(subject, done, code_bits)
    for name, steps in HOST_STEPS:
        take = (set(steps) if steps else readers) & readers - done
        done |= take
        p = _project(subject, done, code_bits)
        energy = sum(p["energy"].values())
        top = max(p["energy"], key=p["energy"].get)
        out.append({"step": name, "readers": sorted(take),
                    "store_share": (p["store"] - before["store"]) / store_now if store_now else 0.0,
                    "totals": {"seconds": p["seconds"], "bytes": p["bytes"], "energy_pj": energy},
                    "memory_bound_share": p["memory_bound_s"] / p["seconds"] if p["seconds"] else 0.0,
                    "energy_top": top, "energy_top_share": p["energy"][top] / energy if energy else 0.0,
                    "on_chip": bool(take) and take <= ON_CHIP})
        before = p
    return out


def softmax_unit_projection(subject, code_bits: int, units: list, coeff: dict, device: dict,
                            relative_parts: frozenset = frozenset(), stores: dict | None = None) -> list[dict]:
    """Per built softmax unit (``softmax_unit.SoftmaxUnitCost``, one per lane count): the GELU / ReLU and the
    softmax on chip (as ``host_step_projection``'s second row), the unit's cycles, logic and energy now
    counted, its time after the core's (``serial``) or beside it (``overlap``, the core going on while the
    unit works), or beside it with the scores through external memory (``memory``) or, where a tile's rows
    fit the block RAMs left, on chip (``hybrid``, its longest rows ``on_chip_keys``; ``UNIT_MODES``); per
    mode the subject's ``totals`` (seconds, energy_pj) and the unit's share of the time, and what core and
    unit need beyond the device's LUT4 (LUT RAM counted in the LUT4 sites it takes) and block RAMs
    (``device``: lut4, ebr). ``stores``: lanes -> the synthesis of the tile store built for that unit
    (``hw.softmax.score_store``, its largest rows); where there is one its LUT4 count in the fit and its LUT4
    and FF in the unit's logic energy where scores stay on chip (its block RAMs are the ``hybrid`` mode's,
    priced per invocation by ``tile_store_ebr``); where there is none the store's logic is not counted
    (``store_lut`` None)."""
    readers = {r.read_by for r in subject.analysis.results}
    taken = {s for name, steps in HOST_STEPS[:2] for s in steps} & readers
    core_lut = subject.design.lut + LUTRAM_SITES * subject.design.lutram
    widest = max((invocation_store(r.key, r.cost.out_elements, subject.design.config, False)["score_bits"]
                  for r in subject.analysis.results if r.read_by == "softmax"), default=0)
    out = []
    for unit in units:
        store = (stores or {}).get(unit.widths.lanes)
        store_lut = store["lut4"] + LUTRAM_SITES * store.get("lutram", 0) if store else None
        over = {"lut": core_lut + unit.lut + (store_lut or 0) - device["lut4"],
                "ebr": (subject.design.ebr or 0) + unit.ebr - device["ebr"]}
        costed = dataclasses.replace(unit, lut=unit.lut + store_lut, ff=unit.ff + store["ff"]) if store else unit
        row = {"lanes": unit.widths.lanes, "max_keys": unit.widths.max_keys, "lut": unit.lut, "ff": unit.ff,
               "store_lut": store_lut, "store_ff": store["ff"] if store else None,
               "store_source": store["source"] if store else None,
               "dsp": unit.dsp, "ebr": unit.ebr, "fmax_mhz": unit.fmax_mhz, "core_lut": core_lut,
               "core_ebr": subject.design.ebr, "over": over, "fits": max(over.values()) <= 0,
               "clock_mhz": subject.design.clock_mhz}
        spare = device["ebr"] - (subject.design.ebr or 0) - unit.ebr
        row["spare_ebr"], row["score_bits"] = spare, widest
        row["on_chip_keys"] = tile_row_keys(subject.design.config.rows, subject.design.config.cols, widest, spare)
        for mode in UNIT_MODES:
            # no store where every score goes through external memory
            stored = mode in ("serial", "overlap") or (mode == "hybrid" and row["on_chip_keys"] > 0)
            p = _project(subject, taken, code_bits, costed if stored else unit, coeff, mode=mode,
                         relative_parts=relative_parts, spare_ebr=spare)
            energy = sum(p["energy"].values())
            row[mode] = {"totals": {"seconds": p["seconds"], "energy_pj": energy},
                         "unit_share": p["unit_s"] / p["seconds"] if p["seconds"] else 0.0,
                         "relative_share": p["relative_s"] / p["seconds"] if p["seconds"] else 0.0,
                         "unit_energy_share": p["energy"]["softmax_unit"] / energy if energy else 0.0,
                         "on_chip_share": p["scores_on_chip"] / p["scores"] if p["scores"] else 0.0}
        out.append(row)
    return out


def against(projected: dict, baseline: dict) -> dict:
    """``projected`` (a row with the subject's ``totals``) with the speed-up, energy ratio and, where the
    totals have bytes, the bytes ratio against ``baseline`` (its image + box totals) instead of the totals."""
    t = projected["totals"]
    ratios = {"speedup": ratio(baseline["seconds"], t["seconds"]),
              "energy_ratio": ratio(baseline["energy_pj"], t["energy_pj"])}
    if "bytes" in t:
        ratios = {"bytes_ratio": ratio(baseline["bytes"], t["bytes"]), **ratios}
    out = {}
    for k, v in projected.items():     # the ratios where the totals were, so the JSON reads as before
        out.update(ratios if k == "totals" else {k: v})
    return out
