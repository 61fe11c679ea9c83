"""The subject's MAC ceiling: every PE busy every cycle on the layers' own MACs and no wait on the external
memory, time = MACs / (PEs x clock). From it: the speed-up that ceiling allows against the moonshot's
baselines, the PEs or clock the moonshot needs even there, and, per layer class, where the time above the
ceiling goes: PEs idle within the core's cycles (padding, fills, drains, a softmax path's pace) or the core
waiting on the board's memory (numpy only)."""

from __future__ import annotations

from collections import defaultdict

from .activity import class_of


def time_above_ceiling(run) -> dict:
    """One image and one box on ``run``'s design: its time, the ceiling's time and, per (part, class), the
    seconds above the ceiling split into PE idle (``core_s`` beyond the MACs' share) and memory wait
    (``seconds`` beyond ``core_s``); classes in decreasing time above the ceiling."""
    pes, hz = run.design.config.pes, run.design.clock_mhz * 1e6
    by = defaultdict(lambda: {"seconds": 0.0, "ideal_s": 0.0, "pe_idle_s": 0.0, "memory_wait_s": 0.0})
    for r in run.rows:
        # a depthwise conv's reduction is its 9 taps: it idles the array as no dense conv does
        c = by[(r["part"], class_of(r["kind"]) + (" depthwise" if "depthwise" in r["kind"] else ""))]
        ideal = r["macs"] / (pes * hz)
        c["seconds"] += r["seconds"] * r["count"]
        c["ideal_s"] += ideal * r["count"]
        c["pe_idle_s"] += (r["core_s"] - ideal) * r["count"]
        c["memory_wait_s"] += (r["seconds"] - r["core_s"]) * r["count"]
    classes = sorted(({"part": p, "class": k, **v} for (p, k), v in by.items()),
                     key=lambda c: c["ideal_s"] - c["seconds"])
    return {"pes": pes, "clock_mhz": run.design.clock_mhz,
            "seconds": sum(c["seconds"] for c in classes), "ideal_s": sum(c["ideal_s"] for c in classes),
            "pe_idle_s": sum(c["pe_idle_s"] for c in classes),
            "memory_wait_s": sum(c["memory_wait_s"] for c in classes), "classes": classes}


def ceiling_against(above: dict, baseline_s: dict[str, float], target: float) -> dict:
    """The speed-up the ceiling allows against each baseline (``baseline_s``: label -> seconds for the same
    image and box), its lowest, and what the target needs at the ceiling: PEs at this clock, or a clock
    with these PEs."""
    ideal = above["ideal_s"]
    speedups = {k: s / ideal for k, s in baseline_s.items()}
    low = min(speedups, key=speedups.get)
    need = target * ideal / baseline_s[low]   # the ceiling's time must shrink by this factor's inverse
    return {"speedups": speedups, "speedup": speedups[low], "against": low,
            "pes_needed": above["pes"] * need, "clock_mhz_needed": above["clock_mhz"] * need}
