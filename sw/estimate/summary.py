"""From per-design runs to the numbers the report states: per image and per box latency, throughput and
energy, the ratios against each baseline, the moonshot check and its limiting factor (numpy only)."""

from __future__ import annotations

from .ceiling import ceiling_against, time_above_ceiling
from .energy import ENERGY_PARTS, PJ
from .projection import UNIT_MODES, against, host_step_projection, softmax_unit_projection
from .projection import ratio as _ratio  # summarize's loops use ``ratio`` for a baseline's ratios
from .resources import STORE_LANES, rel
from .sources import PUBLISHED

MOONSHOT = 10.0
BASELINES = ("fp32", "fp32_small", "fp32_roomy", "int8")
# The moonshot's baseline is the iso-resource FP32 design; the cycle model takes power-of-two arrays, so
# it lies between these two (more lanes than fit, and fewer): each ratio is taken against the end that
# gives the lower one. More lanes finish compute-bound layers sooner; fewer FFs cost less clock energy.
MOONSHOT_BRACKET = ("fp32", "fp32_small")



def image_box(run) -> dict:
    e, d = run.totals["encoder"], run.totals["decoder"]
    return {k: e.get(k, 0) + d.get(k, 0) for k in e.keys() | d.keys()}


def _design_summary(run, host: dict | None, cpu_watts: float) -> dict:
    e, d, both = run.totals["encoder"], run.totals["decoder"], image_box(run)
    out = {"label": run.design.label, "clock_mhz": run.design.clock_mhz, "pes": run.design.config.pes,
           "analysis_cache": run.analysis.cache, "analysis_from_cache": run.analysis.from_cache,
           "refusals": [{"key": r["key"], "refusal": r["refusal"], "grown": r["grown"]} for r in run.rows if r["refusal"]]}
    for name, t in (("image", e), ("box", d), ("image_box", both)):
        out[name] = {"seconds": t["seconds"], "core_s": t["core_s"], "memory_s": t["memory_s"],
                     "memory_bound_share": t["memory_bound_s"] / t["seconds"] if t["seconds"] else 0.0,
                     "cycles": t["cycles"], "macs": t["macs"], "bytes": t["bytes"],
                     "utilization": t["macs"] / (run.design.config.pes * t["cycles"]) if t["cycles"] else 0.0,
                     "energy_j": t["energy_pj"] * PJ,
                     "energy_parts_j": {k: t[k] * PJ for k in ENERGY_PARTS}}
    if host:
        h = host["encoder_s"] + host["decoder_s"]
        out["end_to_end"] = {"seconds": both["seconds"] + h, "host_s": h,
                             "energy_j": both["energy_pj"] * PJ + cpu_watts * h,
                             "images_per_s_sequential": 1 / (both["seconds"] + h),
                             "images_per_s_pipelined": 1 / max(e["seconds"] + d["seconds"], h)}
    out["throughput"] = {"images_per_s": _ratio(1, e["seconds"]), "boxes_per_s": _ratio(1, d["seconds"])}
    return out


def _limits(subject, base, projected: dict) -> dict:
    """Factors of the speed-up against one baseline (one image and one box, accelerator only); ``projected``:
    the subject's host-step and softmax-unit projections (``_projected``), taken against this baseline."""
    s, b = image_box(subject), image_box(base)
    sd, bd = subject.design, base.design
    pe = sd.config.pes / bd.config.pes
    clock = sd.clock_mhz / bd.clock_mhz
    util = (s["macs"] / (sd.config.pes * s["cycles"])) / (b["macs"] / (bd.config.pes * b["cycles"]))
    ideal = (b["core_s"]) / s["core_s"]
    board = b["seconds"] / s["seconds"]
    bytes_ratio = _ratio(b["bytes"], s["bytes"])
    mem_share = s["memory_bound_s"] / s["seconds"] if s["seconds"] else 0.0
    parts_s = {k: s[k] for k in ENERGY_PARTS}
    parts_b = {k: b[k] for k in parts_s}
    top_s = max(parts_s, key=parts_s.get)
    top_b = max(parts_b, key=parts_b.get)
    traffic = {k: {"subject": s[f"bytes_{k}"], "baseline": b[f"bytes_{k}"],
                   "ratio": _ratio(b[f"bytes_{k}"], s[f"bytes_{k}"])} for k in ("act", "wgt", "param", "store")}
    # Upper bounds on the bytes ratio, the speed-up's limit while the subject is memory-bound: the same
    # loads with the outputs packed densely at their widths, then with every output a code of the subject's
    # activation width (what on-chip host steps would store); the baseline as it is.
    loads = s["bytes"] - s["bytes_store"]
    code_bits = sd.config.act_bits
    bounds = {"dense_outputs": _ratio(b["bytes"], loads + s["bytes_store_dense"]),
              "code_outputs": _ratio(b["bytes"], loads + s["out_elements"] * code_bits / 8),
              "code_bits": code_bits,
              "dense_store_share": _ratio(s["bytes_store_dense"], s["bytes_store"]),
              "by_step": [against(st, b) for st in projected["by_step"]],
              "softmax_unit": [row | {mode: against(row[mode], b) for mode in UNIT_MODES}
                               for row in projected["softmax_unit"]]}
    return {"label": bd.label, "traffic": traffic, "bytes_bounds": bounds, "pe_ratio": pe, "clock_ratio": clock,
            "utilization_ratio": util,
            "speedup_core_memory": ideal, "speedup_board": board, "bytes_ratio": bytes_ratio,
            "subject_memory_bound_share": mem_share,
            "baseline_memory_bound_share": b["memory_bound_s"] / b["seconds"] if b["seconds"] else 0.0,
            "energy_top_subject": top_s, "energy_top_subject_share": parts_s[top_s] / s["energy_pj"],
            "energy_top_baseline": top_b, "energy_top_baseline_share": parts_b[top_b] / b["energy_pj"],
            "energy_ratio_by_part": {k: _ratio(parts_b[k], parts_s[k]) for k in parts_s}}


def _projected(subject, model: str, softmax_units: dict | None) -> dict:
    """The subject's projections, which do not depend on the baseline: host steps moved on chip one after
    another, and the softmax on chip with each built unit (SAM ViT's encoder QK^T also computing the
    relative-position term on the core)."""
    code_bits = subject.design.config.act_bits
    relative = frozenset({"encoder"}) if model.startswith("sam_vit") else frozenset()
    units = softmax_unit_projection(subject, code_bits, relative_parts=relative, **softmax_units) \
        if softmax_units else []
    return {"by_step": host_step_projection(subject, code_bits), "softmax_unit": units}


def _step_text(first: bool, st: dict) -> str:
    if st.get("on_chip"):
        return (f"{st['step']} is on chip (the core's output lookup writes its result as codes, "
                f"{st['store_share']:.0%} of the stored bytes)")
    return (f"{st['step']} on chip (its inputs {st['store_share']:.0%} of the stored bytes) "
            f"{'would take it' if first else 'then'} to {st['bytes_ratio']:.2f}x "
            f"({st['speedup']:.2f}x speed, {st['energy_ratio']:.2f}x energy at most)")


def _all_steps_text(last: dict) -> str:
    """Whether moving every host step on chip could reach the moonshot, and what would limit it then;
    ``last``: the all-steps projection (``projection.host_step_projection``'s last row), its ratios the
    lower of the bracket's two ends."""
    reach = last["speedup"] >= MOONSHOT and last["energy_ratio"] >= MOONSHOT
    return (f"with every host step on chip (each unit free, the core's cycles as now) at most "
            f"{last['speedup']:.2f}x speed and {last['energy_ratio']:.2f}x energy against the iso-resource bracket: "
            f"the moonshot is {'within' if reach else 'out of'} reach of moving host steps on chip alone (then "
            f"{last['memory_bound_share']:.0%} of the time memory-bound, the largest energy part "
            f"{last['energy_top']} at {last['energy_top_share']:.0%})")


def _bounds_text(bounds: dict, last: dict) -> str:
    return (f"the bytes ratio would be {bounds['dense_outputs']:.2f}x with every output packed densely (the "
            f"outputs' elements fill {bounds['dense_store_share']:.0%} of the words the core stores: columns are "
            f"padded to whole blocks of the array, and rows of a word or more are not packed) and {bounds['code_outputs']:.2f}x with every "
            f"output a {bounds['code_bits']}-bit code (what moving the host steps on chip would store), the loads "
            "unchanged: " + "; ".join(_step_text(not any(not b.get("on_chip") for b in bounds["by_step"][:i]), st)
                                      for i, st in enumerate(bounds["by_step"][:-1]))
            + "; beyond that only on-chip reuse across layers cuts the bytes; " + _all_steps_text(last))


def _moonshot(model: str, ratios: dict, labels: dict, board: str, above: dict, seconds: dict) -> dict:
    """The moonshot check against the iso-resource bracket (``MOONSHOT_BRACKET``): per metric the lower
    ratio of the two ends, now, with every host step on chip, and at the subject's MAC ceiling (``above``:
    ``ceiling.time_above_ceiling``; ``seconds``: design key -> its image + box seconds)."""
    ends = [k for k in MOONSHOT_BRACKET if k in ratios]
    low = lambda value: min(ends, key=value)  # noqa: E731
    speed_key = low(lambda k: ratios[k]["image_box"]["speedup"])
    energy_key = low(lambda k: ratios[k]["image_box"]["energy_ratio"])
    steps = {k: ratios[k]["limits"]["bytes_bounds"]["by_step"][-1] for k in ends}
    last = dict(steps["fp32"] if "fp32" in steps else steps[ends[0]])
    last["speedup"] = min(st["speedup"] for st in steps.values())
    last["energy_ratio"] = min(st["energy_ratio"] for st in steps.values())
    units = {k: ratios[k]["limits"]["bytes_bounds"]["softmax_unit"] for k in ends}
    with_unit = []
    for i, row in enumerate(units[ends[0]]):
        low_row = {key: row[key] for key in ("lanes", "lut", "ebr", "fits", "over", "fmax_mhz", "clock_mhz",
                                             "on_chip_keys", "spare_ebr", "score_bits")}
        low_row.update({key: row.get(key) for key in ("store_lut", "store_ff", "store_source")})
        for mode in UNIT_MODES:
            low_row[mode] = {m: min(units[k][i][mode][m] for k in ends) for m in ("speedup", "energy_ratio")}
            for share in ("unit_share", "relative_share", "on_chip_share"):
                low_row[mode][share] = units[ends[0]][i][mode][share]
        with_unit.append(low_row)
    moon = {"speedup": ratios[speed_key]["image_box"]["speedup"], "speedup_against": labels[speed_key],
            "energy_ratio": ratios[energy_key]["image_box"]["energy_ratio"], "energy_against": labels[energy_key],
            "bracket": [labels[k] for k in ends], "target": MOONSHOT, "all_steps_on_chip": last,
            "softmax_unit": with_unit}
    moon["reached"] = moon["speedup"] >= MOONSHOT and moon["energy_ratio"] >= MOONSHOT
    moon["ceiling"] = ceiling_against(above, {labels[k]: seconds[k] for k in ends}, MOONSHOT)
    moon["above_ceiling"] = above
    lim = ratios["fp32" if "fp32" in ratios else ends[0]]["limits"]
    moon["text"] = (_limit_text(model, moon, lim, board) + _ceiling_text(above, moon["ceiling"])
                    + _unit_text(with_unit))
    return moon


def duration(seconds: float, ms_digits: int = 0) -> str:
    """Seconds from 10 s up, milliseconds below (the report's tables keep ``ms_digits`` of them)."""
    return f"{seconds:.1f} s" if seconds >= 10 else f"{seconds * 1e3:.{ms_digits}f} ms"


def _ceiling_text(above: dict, ceiling: dict) -> str:
    """How far the subject is from its MAC ceiling, what the moonshot needs there, and the classes that
    spend the most time above it."""
    over = above["seconds"] - above["ideal_s"]
    head = (f" At its MAC ceiling ({above['pes']} PEs at {above['clock_mhz']:g} MHz, every PE busy every cycle "
            f"on the layers' own MACs, no wait on the memory: {duration(above['ideal_s'])} for one image and one box) "
            f"the core would give at most {ceiling['speedup']:.2f}x speed against {ceiling['against']}")
    if ceiling["speedup"] < MOONSHOT:
        need = (f", short of the moonshot even there: it needs {ceiling['pes_needed']:,.0f} PEs at this clock, or "
                f"{ceiling['clock_mhz_needed']:.0f} MHz with these PEs")
    else:
        need = (f"; the moonshot needs the time above the ceiling cut to "
                f"{duration(above['ideal_s'] * (ceiling['speedup'] / MOONSHOT - 1))} or less")
    top = ", ".join(f"{c['part']} {c['class']} {duration(c['seconds'] - c['ideal_s'])} (PEs idle "
                    f"{duration(c['pe_idle_s'])}, memory {duration(c['memory_wait_s'])})" for c in above["classes"][:3])
    return (f"{head}{need}. Now {duration(above['seconds'])}, {duration(over)} above the ceiling: PEs idle "
            f"{duration(above['pe_idle_s'])}, waiting on memory {duration(above['memory_wait_s'])}; the most above it: "
            f"{top}.")


def _unit_text(rows: list[dict]) -> str:
    """The softmax on chip with the built unit costed: the lane count that gives the most, beside the core."""
    if not rows:
        return ""
    best = max(rows, key=lambda r: min(r["overlap"]["speedup"], r["overlap"]["energy_ratio"]))
    over = best["over"]
    parts = "core, unit and its tile store" if best.get("store_lut") is not None else "core and unit"
    fit = (f"{parts} fit the device" if best["fits"] else
           f"{parts} need {max(over['lut'], 0)} LUT4 and {max(over['ebr'], 0)} DP16KD more than the device has")
    slow = (f", and the unit's routed Fmax ({best['fmax_mhz']:g} MHz) is below the {best['clock_mhz']:g} MHz clock"
            if best["fmax_mhz"] < best["clock_mhz"] else "")
    return (f" With the softmax unit built and costed (its cycles, logic and energy; best of {len(rows)} lane counts: "
            f"{best['lanes']} lanes, working beside the core) the softmax on chip gives {best['overlap']['speedup']:.2f}x "
            f"speed and {best['overlap']['energy_ratio']:.2f}x energy against the bracket with the scores kept on "
            f"chip (a unit holding a tile's rows, where the built one holds 3), and "
            f"{best['memory']['speedup']:.2f}x / {best['memory']['energy_ratio']:.2f}x with them written to memory "
            f"and read back by the unit as built; with on chip only the rows whose tile fits the block RAMs left "
            f"(up to {best['on_chip_keys']} keys: {best['hybrid']['on_chip_share']:.0%} of the scores), "
            f"{best['hybrid']['speedup']:.2f}x / {best['hybrid']['energy_ratio']:.2f}x; {fit}{slow}."
            + _fitting_text(rows))


def _fitting_text(rows: list[dict]) -> str:
    """The best place a unit that fits beside the core (LUT4 and block RAM, at the clock) can take: the
    hybrid, whose stores take only the block RAMs left."""
    fitting = [r for r in rows if r["fits"] and r["fmax_mhz"] >= r["clock_mhz"]]
    if not fitting:
        return " No lane count of the unit fits beside this core at its clock."
    best = max(fitting, key=lambda r: min(r["hybrid"]["speedup"], r["hybrid"]["energy_ratio"]))
    return (f" The best that fits beside this core at its clock: {best['lanes']} lanes, hybrid, "
            f"{best['hybrid']['speedup']:.2f}x speed and {best['hybrid']['energy_ratio']:.2f}x energy "
            f"({best['hybrid']['on_chip_share']:.0%} of the scores on chip, rows up to {best['on_chip_keys']} "
            f"keys in {max(best['spare_ebr'], 0)} DP16KD).")


def _limit_text(model: str, moon: dict, lim: dict, board: str) -> str:
    speed, energy, reached = moon["speedup"], moon["energy_ratio"], moon["reached"]
    mem = lim["subject_memory_bound_share"]
    t = lim["traffic"]
    total = sum(v["subject"] for v in t.values())
    names = {"act": "input activations", "wgt": "weights", "param": "descriptors", "store": "outputs"}
    split = ", ".join(f"{names[k]} {v['subject'] / total:.0%} ({v['ratio']:.1f}x fewer than FP32)"
                      for k, v in sorted(t.items(), key=lambda kv: -kv[1]["subject"]) if v["subject"])
    if mem > 0.5:
        speed_limit = (f"{mem:.0%} of the W4 core's time on {board} is bounded by the external memory, so the "
                       f"speed-up follows the bytes ratio ({lim['bytes_ratio']:.2f}x fewer bytes than FP32: {split}), "
                       "not the "
                       f"compute ratio ({lim['speedup_core_memory']:.2f}x with the core's own memory = "
                       f"{lim['pe_ratio']:.2f}x PEs x {lim['clock_ratio']:.2f}x clock x "
                       f"{lim['utilization_ratio']:.2f}x utilization); "
                       f"{_bounds_text(lim['bytes_bounds'], moon['all_steps_on_chip'])}")
    else:
        speed_limit = (f"the speed-up is the compute ratio: {lim['pe_ratio']:.2f}x PEs x {lim['clock_ratio']:.2f}x "
                       f"clock x {lim['utilization_ratio']:.2f}x utilization = {lim['speedup_core_memory']:.2f}x "
                       f"with the core's own memory ({mem:.0%} of the time memory-bound on {board}); "
                       f"{_bounds_text(lim['bytes_bounds'], moon['all_steps_on_chip'])}")
    energy_limit = (f"energy: the W4 core's largest part is {lim['energy_top_subject']} "
                    f"({lim['energy_top_subject_share']:.0%}), the FP32 array's {lim['energy_top_baseline']} "
                    f"({lim['energy_top_baseline_share']:.0%})")
    verdict = "reached" if reached else "not reached"
    return (f"{model}: moonshot (>= {MOONSHOT:g}x speed and energy vs iso-resource FP32) {verdict}: "
            f"{speed:.2f}x speed (against {moon['speedup_against']}), {energy:.2f}x energy (against "
            f"{moon['energy_against']}), each the lower of the bracket {' and '.join(moon['bracket'])}, between "
            f"which the iso-resource design lies; against {lim['label']}: {speed_limit}; {energy_limit}.")


def stores_by_lanes(resources) -> dict:
    """lanes -> the synthesis summary (and its source) of the subject core's tile store for a unit of that
    many lanes, where one was synthesized."""
    return {n: {**resources.get(f"subject_store{n}"), "source": resources.sources[f"subject_store{n}"]}
            for n in STORE_LANES if resources.get(f"subject_store{n}")}


def summarize(opts, board, designs, models, measured, coeff_records, resources, inp, checks, notes) -> dict:
    cpu_watts = coeff_records["cpu_watts"].value
    out = {"command": opts.command, "board": {"name": board.name, "memory_bytes_per_s": board.memory_bytes_per_s,
                                              "memory_source": board.memory_source, "device": board.device},
           "designs": {}, "models": {}, "coefficients": {k: v.to_json() for k, v in coeff_records.items()},
           "resources": {"sources": resources.sources, "missing": resources.missing},
           "measured": measured, "crosschecks": checks, "published": PUBLISHED, "notes": notes,
           "inputs": {k: rel(v) for k, v in inp["files"].items()}}
    out["activity_checks"] = []
    for key in ("subject", "int8"):
        data = designs[key].activity.data
        cases = data["cases"]
        out["activity_checks"].append({
            "design": designs[key].label, "pes": f"{data['config']['rows']}x{data['config']['cols']}",
            "file": rel(designs[key].activity.path), "cases": len(cases),
            "equal": sum(c["cycles"] == c["model_cycles"] for c in cases)})
    for key, d in designs.items():
        out["designs"][key] = {"label": d.label, "config": d.config.to_dict(), "config_digest": d.config.digest,
                               "clock_mhz": d.clock_mhz, "clock_source": d.clock_source, "resources": d.resources,
                               "lut4": d.lut, "lutram": d.lutram, "ff": d.ff, "dsp": d.dsp, "ebr": d.ebr,
                               "notes": d.resource_notes,
                               "activity": rel(d.activity.path) if d.activity else None,
                               "fp32_lanes": d.lanes if d.fp32 else None,
                               "fp32_bound": d.mapping.lanes_bound if d.mapping else None}
    softmax_units = None
    # a core with the softmax path computes its softmaxes itself: no second unit is projected beside it
    if inp.get("softmax_units") and not designs["subject"].config.softmax_lanes:
        softmax_units = {"units": inp["softmax_units"], "coeff": {k: v.value for k, v in coeff_records.items()},
                         "device": board.device, "stores": stores_by_lanes(resources)}
    for model, runs in models.items():
        host = measured.get("host_subject") if model == "litemedsam" else None
        cpu = measured.get(f"cpu_{model}")
        m = {"designs": {k: _design_summary(r, host, cpu_watts) for k, r in runs.items()}, "ratios": {},
             "rows": {k: r.rows for k, r in runs.items()}, "notes": runs["subject"].analysis.notes}
        s = runs["subject"]
        projected = _projected(s, model, softmax_units)
        for base in BASELINES:
            if base not in runs:
                continue
            b = runs[base]
            ratio = {}
            for unit, get in (("image", lambda r: r.totals["encoder"]), ("box", lambda r: r.totals["decoder"]),
                              ("image_box", image_box)):
                ts, tb = get(s), get(b)
                ratio[unit] = {"speedup": _ratio(tb["seconds"], ts["seconds"]),
                               "speedup_cycle_model_memory": _ratio(tb["core_s"], ts["core_s"]),
                               "energy_ratio": _ratio(tb["energy_pj"], ts["energy_pj"]),
                               "energy_ratio_dynamic": _ratio(tb["energy_pj"] - tb["static"],
                                                              ts["energy_pj"] - ts["static"])}
            if host:
                es, eb = m["designs"]["subject"]["end_to_end"], m["designs"][base]["end_to_end"]
                ratio["end_to_end"] = {"speedup": _ratio(eb["seconds"], es["seconds"]),
                                       "energy_ratio": _ratio(eb["energy_j"], es["energy_j"])}
            ratio["limits"] = _limits(s, b, projected)
            m["ratios"][base] = ratio
        if cpu:
            cpu_s = cpu["encoder_s"] + cpu["decoder_s"]
            cpu_j = cpu_s * cpu_watts
            acc = m["designs"]["subject"]["image_box"]
            cpu_ratio = {"cpu_s": cpu_s, "cpu_j": cpu_j, "threads": cpu["threads"],
                         "speedup_accelerator_only": _ratio(cpu_s, acc["seconds"]),
                         "energy_ratio_accelerator_only": _ratio(cpu_j, acc["energy_j"])}
            if host:
                e2e = m["designs"]["subject"]["end_to_end"]
                cpu_ratio.update(speedup=_ratio(cpu_s, e2e["seconds"]), energy_ratio=_ratio(cpu_j, e2e["energy_j"]))
            m["ratios"]["cpu"] = cpu_ratio
        if any(k in m["ratios"] for k in MOONSHOT_BRACKET):
            seconds = {k: d["image_box"]["seconds"] for k, d in m["designs"].items()}
            m["moonshot"] = _moonshot(model, m["ratios"], {k: d.label for k, d in designs.items()}, board.name,
                                      time_above_ceiling(s), seconds)
        out["models"][model] = m
    return out
