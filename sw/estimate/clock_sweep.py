"""The moonshot against the subject's clock. Until a core is routed for the board its clock is an assumption;
this retimes the subject across a range of clocks, the FP32 designs held at their own clocks, and gives the
speed-up and energy ratio against the iso-resource bracket at each and the clocks where both reach the
target (numpy only)."""

from __future__ import annotations

import re
from typing import Callable

SWEEP_MHZ = tuple(range(20, 301))
# netlist names inside the PE array or the lanes (hw/core/compute.py, lane.py, pe.py), the parts an FP32
# design of the same architecture replaces
COMPUTE_CELLS = re.compile(r"\.(array|lanes?\d+|pe_\d+_\d+)\.")


def lower_ratios(ends: dict[str, dict], s: dict) -> tuple[float, float]:
    """Speed-up and energy ratio of the totals ``s`` against the lower end of ``ends`` for each."""
    return (min(b["seconds"] / s["seconds"] for b in ends.values()),
            min(b["energy_pj"] / s["energy_pj"] for b in ends.values()))


def clock_sweep(retime: Callable[[float], dict], ends: dict[str, dict], target: float,
                clocks: tuple[float, ...] = SWEEP_MHZ, held: Callable[[float], dict] | None = None) -> dict:
    """``retime(mhz)``: the subject's image + box totals (``seconds``, ``energy_pj``) at that clock;
    ``ends``: the bracket's designs (label -> the same totals at their own clocks). Per clock the lower
    ratio of the ends for each metric; ``bands``: the runs of clocks where both reach ``target``.
    ``held(mhz)``: the ends again with each clock held to ``mhz`` where that is lower (``*_held``: the
    ratios against them), for a bracket whose designs share the core's control and so its clock."""
    points = []
    for mhz in clocks:
        s = retime(mhz)
        speedup, energy = lower_ratios(ends, s)
        points.append({"mhz": mhz, "speedup": speedup, "energy_ratio": energy})
        if held is not None:
            points[-1]["speedup_held"], points[-1]["energy_ratio_held"] = lower_ratios(held(mhz), s)
    bands, start = [], None
    for i, p in enumerate(points):
        ok = p["speedup"] >= target and p["energy_ratio"] >= target
        if ok and start is None:
            start = p["mhz"]
        if start is not None and (not ok or i == len(points) - 1):
            bands.append((start, p["mhz"] if ok else points[i - 1]["mhz"]))
            start = None
    best = lambda key: max(points, key=lambda p: p[key])  # noqa: E731
    return {"points": points, "bands": bands, "target": target, "against": sorted(ends),
            "best_speedup": best("speedup"), "best_energy": best("energy_ratio")}


def sweep_text(sweep: dict, clock_mhz: float, built: dict | None, routed: bool = False) -> str:
    """One sentence: the clocks where the moonshot holds, or what the best clock gives when none does;
    ``built``: the largest core built for the board (``boards.largest_build``), if any; ``routed``: the
    report's clock is this core's own post-route Fmax."""
    lo, hi = sweep["points"][0]["mhz"], sweep["points"][-1]["mhz"]
    head = f" Against the core's clock ({lo:g} to {hi:g} MHz, the FP32 designs at their own clocks): "
    if sweep["bands"]:
        body = "the moonshot holds from " + ", and from ".join(f"{a:g} to {b:g} MHz" for a, b in sweep["bands"])
    else:
        bs, pts = sweep["best_speedup"], sweep["points"]
        flat = len(pts) > 10 and pts[-1]["speedup"] < 1.005 * pts[-11]["speedup"]
        body = (f"no clock reaches the moonshot: the speed-up is at most {bs['speedup']:.2f}x (at {bs['mhz']:g} MHz"
                + (", where the memory's roof holds it" if flat else "") + ")")
    be = sweep["best_energy"]
    if sweep["points"][-1]["energy_ratio"] < 0.995 * be["energy_ratio"]:
        # the clock tree toggles through every cycle spent waiting on the memory, and a faster clock
        # spends more cycles waiting while the static energy shrinks only with the time saved
        body += (f"; the energy ratio peaks at {be['mhz']:g} MHz ({be['energy_ratio']:.2f}x): above it the clock's "
                 "energy over the cycles spent waiting on the memory grows faster than the static energy shrinks")
    tail = f"; the report's ratios take {clock_mhz:g} MHz"
    if routed:
        tail += ", this core's post-route Fmax on the board"
    elif built is not None:
        tail += f", and the largest core built for the board reaches {built['fmax_mhz']:g} MHz post-route"
    return head + body + tail + "."


def held_text(ratios: tuple[float, float], clock_mhz: float, critical_path: dict | None) -> str:
    """The moonshot's ratios with the bracket's clocks held to the core's (``ratios``: speed-up, energy
    ratio), and the routed core's critical path that argues for it when there is one."""
    why = "a design of the same architecture carries the same control, buffers and DMA"
    if critical_path:
        ends = (critical_path["from"], critical_path["to"])
        where = ("but this core's routed critical path touches its PE array or lanes, which the FP32 design "
                 "replaces" if any(COMPUTE_CELLS.search(e) for e in ends) else "and this core's routed critical "
                 "path lies there")
        why += (f", {where}: from `{ends[0]}` to `{ends[1]}`, {critical_path['routing']:g} of its "
                f"{critical_path['total_ns']:g} ns in routing")
    return (f" With the FP32 designs' clocks held to the core's {clock_mhz:g} MHz ({why}): {ratios[0]:.2f}x speed "
            f"and {ratios[1]:.2f}x energy, dotted in the clock plot.")
