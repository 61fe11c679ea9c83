"""docs/estimate.md and estimate.json from ``run_estimate``'s result: every number is read from the
result, none is typed here."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from hw.core.config import CoreConfig
from sw.atomic_file import write_atomic

from .activity import class_of
from .energy import ENERGY_PARTS
from .plots import MODELS, ORDER, write_plots
from .resources import LUTRAM_SITES
from .summary import BASELINES, MOONSHOT_BRACKET, duration



def _x(v, digits=2):
    return "n/a" if v is None else f"{v:.{digits}f}x"


def _s(v):
    return "n/a" if v is None else duration(v, 1)


def _j(v):
    return "n/a" if v is None else (f"{v * 1e3:.1f} mJ" if v < 1 else f"{v:.2f} J")


def _rel(path, out: Path):
    try:
        return str(Path(path).resolve().relative_to(out.resolve().parent)) if path else "—"
    except ValueError:
        return str(path)


def _headline(result, model) -> list[str]:
    m = result["models"][model]
    r, d = m["ratios"], result["designs"]
    s = m["designs"]["subject"]
    lines = [f"### {MODELS[model]}", ""]
    lines += [f"{d['subject']['label']}: one image and one box take {_s(s['image_box']['seconds'])} on the core "
              f"({s['image_box']['memory_bound_share']:.0%} of it bounded by the {result['board']['name']} memory) "
              f"and {_j(s['image_box']['energy_j'])}.", ""]
    lines += ["| against | speed-up (image + box) | energy ratio | speed-up, core's own memory | "
              "speed-up per image | per box | end to end (host steps included) |", "|---|---|---|---|---|---|---|"]
    for key in BASELINES:
        if key not in r:
            continue
        x = r[key]
        e2e = x.get("end_to_end")
        lines.append(f"| {d[key]['label']} | {_x(x['image_box']['speedup'])} | {_x(x['image_box']['energy_ratio'])} | "
                     f"{_x(x['image_box']['speedup_cycle_model_memory'])} | {_x(x['image']['speedup'])} | "
                     f"{_x(x['box']['speedup'])} | "
                     f"{(_x(e2e['speedup']) + ' speed, ' + _x(e2e['energy_ratio']) + ' energy') if e2e else 'n/a'} |")
    if "cpu" in r:
        c = r["cpu"]
        lines.append(f"| CPU, float model, torch, {c['threads']} thread(s) ({_s(c['cpu_s'])}) | "
                     f"{_x(c.get('speedup'))} (end to end) | {_x(c.get('energy_ratio'))} (end to end) | — | — | — | "
                     f"accelerator only: {_x(c['speedup_accelerator_only'])} speed, "
                     f"{_x(c['energy_ratio_accelerator_only'])} energy |")
    lines.append("")
    if "moonshot" in m:
        lines += [f"**{m['moonshot']['text']}**", ""]
        ends = [m["ratios"][k]["limits"] for k in MOONSHOT_BRACKET if k in m["ratios"]]
        lines += _host_step_bounds(m["ratios"]["fp32"]["limits"], d["fp32"]["label"], ends)
        lines += _ceiling_table(m["moonshot"], d["subject"]["label"])
        lines += (_softmax_path_text(d["subject"], m["rows"]["subject"]) if d["subject"]["config"].get("softmax_lanes")
                  else _softmax_unit_table(m["moonshot"], d["subject"]["label"], result["board"]["device"]))
        rows = m["moonshot"].get("softmax_unit") or []
        if model.startswith("sam_vit") and rows:
            shares = ", ".join(f"{r['overlap']['relative_share']:.1%} ({r['lanes']} lanes)" for r in rows)
            lines += ["SAM ViT adds a relative-position term to each row's logits, a function of the query. The "
                      "unit takes it on its bias input; its integer form is in `sw/ref/log_softmax.py` (16-bit "
                      "table codes, integer dot products with the query codes; its codes equal the float step's but "
                      "for rare flips by one on a tiny random SAM ViT, tests/test_log_softmax.py). The table above "
                      "counts those dot products on the core, before the unit, as more of each QK^T's work (16-bit "
                      "table codes in 16 / weight-bits passes): their share of the time, working beside the unit: "
                      f"{shares}.", ""]
    c = m.get("measured_clock")
    if c:
        lines += [f"The {d['subject']['label']}'s clock is assumed ({_fmt_mhz(d['subject']['clock_mhz'])}); at "
                  f"{_fmt_mhz(c['fmax_mhz'])}, the post-route Fmax of the largest core built for the board "
                  f"({c['pes_label']} PEs, `{c['path']}`), it gives {_x(c['speedup'])} speed and "
                  f"{_x(c['energy_ratio'])} energy against {c['against']}.", ""]
    return lines


def _host_step_bounds(limits: dict, baseline: str, ends: list[dict]) -> list[str]:
    """What each host step moved on chip would allow (sw/estimate/projection.py), against ``baseline`` and,
    per metric, against the lower of the iso-resource bracket's ends (``ends``: their limits)."""
    bounds = limits["bytes_bounds"]
    low = lambda i, metric: min(e["bytes_bounds"]["by_step"][i][metric] for e in ends)  # noqa: E731
    lines = [f"Host steps moved on chip, one after another (their inputs stored as dense {bounds['code_bits']}-bit "
             f"codes, the loads unchanged), against {baseline}: the bytes ratio, now {_x(limits['bytes_ratio'])}, "
             "and the speed-up and energy ratio they would give at most, each unit free (its cycles, logic and "
             "energy not counted, the core's cycles as now; memory time, SDRAM and I/O energy follow the bytes, "
             "clock and static energy the time).", "",
             "| host step moved on chip | outputs it reads (`read_by`) | their share of the stored bytes now | "
             "bytes ratio at most | speed-up at most | energy ratio at most | speed-up / energy ratio at most "
             "against the bracket's lower end (the moonshot's) | memory-bound share then | largest energy part then |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, st in enumerate(bounds["by_step"]):
        step = st["step"] + (" (on chip: the core's output lookup)" if st.get("on_chip") else "")
        lines.append(f"| {step} | {', '.join(st['readers']) or '—'} | {st['store_share']:.0%} | "
                     f"{_x(st['bytes_ratio'])} | {_x(st['speedup'])} | {_x(st['energy_ratio'])} | "
                     f"{_x(low(i, 'speedup'))} / {_x(low(i, 'energy_ratio'))} | "
                     f"{st['memory_bound_share']:.0%} | {st['energy_top']} ({st['energy_top_share']:.0%}) |")
    return lines + ["", "The softmax's integer form, what its unit would compute, is `sw/ref/log_softmax.py`; "
                    "`scripts/log_softmax_study.py` measures it against the float step.", ""]


def _ceiling_table(moon: dict, subject: str) -> list[str]:
    """Per layer class, the subject's time against its MAC ceiling (``sw/estimate/ceiling.py``)."""
    above, ceiling = moon["above_ceiling"], moon["ceiling"]
    over = above["seconds"] - above["ideal_s"]
    lines = [f"Where the {subject}'s time above its MAC ceiling goes ({above['pes']} PEs at "
             f"{_fmt_mhz(above['clock_mhz'])}, every PE busy every cycle on the layers' own MACs and no wait on the "
             f"memory; at the ceiling {_x(ceiling['speedup'])} speed against {ceiling['against']}; "
             f"`sw/estimate/ceiling.py`). PEs idle: the core's cycles beyond its MACs' share (padding to the array, "
             "fills and drains, a softmax path's pace); memory: the time the board's memory adds beyond the core's "
             "cycles.", "",
             "| part | class | time | at the ceiling | above it | PEs idle | waiting on memory | share of the time "
             "above the ceiling |", "|---|---|---|---|---|---|---|---|"]
    for c in above["classes"]:
        lines.append(f"| {c['part']} | {c['class']} | {_s(c['seconds'])} | {_s(c['ideal_s'])} | "
                     f"{_s(c['seconds'] - c['ideal_s'])} | {_s(c['pe_idle_s'])} | {_s(c['memory_wait_s'])} | "
                     f"{(c['seconds'] - c['ideal_s']) / over if over else 0:.0%} |")
    lines.append(f"| all | | {_s(above['seconds'])} | {_s(above['ideal_s'])} | {_s(over)} | "
                 f"{_s(above['pe_idle_s'])} | {_s(above['memory_wait_s'])} | 100% |")
    return lines + [""]


def _softmax_path_text(subject: dict, rows: list[dict]) -> list[str]:
    """What a core with the softmax path computes on chip, from the subject's invocation rows."""
    on_chip = [r for r in rows if r["op"] == "probs"]
    total = sum(r["seconds"] * r["count"] for r in rows)
    share = sum(r["seconds"] * r["count"] for r in on_chip) / total if total else 0.0
    kinds = ", ".join(sorted({r["kind"] for r in on_chip})) or "none"
    side = subject["config"].get("softmax_bias_side", 0)
    relative = subject["config"].get("softmax_relative_side", 0)
    grid = (f" and a grid bias for windows of up to {side} x {side} (TinyViT's attention biases, docs/core.md "
            "\"Grid bias\")") if side else ""
    if relative:
        grid = (f" and SAM ViT's relative-position terms on a {relative} x {relative} grid (each query's terms "
                "computed by the host from its codes and loaded with its tile, docs/core.md \"Relative positions\")")
    left = ("SAM ViT's relative positions; rows shorter than a key block" if side else
            f"TinyViT's attention biases; SAM ViT's relative positions on grids other than {relative} x {relative}; "
            "rows shorter than a key block" if relative else
            "logits with a bias: TinyViT's attention biases, SAM ViT's relative positions; rows shorter than a key "
            "block")
    return [f"The {subject['label']} has the softmax path ({subject['config']['softmax_lanes']} keys a beat, "
            f"docs/core.md \"Softmax path\"){grid}: the numbers above are the core's own, with "
            f"{len(on_chip)} attention invocations ({kinds}) computing QK^T and the softmax on chip and storing "
            f"codes, {share:.2%} of the core's time. The softmaxes it does not take ({left}) stay on the host: "
            "the table's softmax row is what moving them too would give at most. No second unit is projected "
            "beside this core.", ""]


def _softmax_unit_table(moon: dict, subject: str, device: dict) -> list[str]:
    """The softmax on chip with its built unit costed (``projection.softmax_unit_projection``), each ratio
    the lower of the iso-resource bracket's ends."""
    rows = moon.get("softmax_unit") or []
    if not rows:
        return ["No softmax unit costed: its synthesis (`scripts/softmax_unit_synth.py`) and activity "
                "(`scripts/softmax_unit_cosim.py`) are not in the estimate's inputs.", ""]
    lines = ["The softmax unit built (`hw.softmax.LogSoftmaxUnit`, bit-exact with `sw/ref/log_softmax.py` in "
             "Verilator on real scores: docs/softmax_unit_cosim.md; synthesis: docs/softmax_unit_synthesis.md) "
             "and costed: the GELU / ReLU and the softmax on chip as in the second row above, now with the unit's "
             f"cycles (its cycle model) at the {subject}'s clock, and its logic, DSP, block RAM and clock energy "
             "(measured activity). `serial`: the core waits while the unit works through a QK^T's rows; "
             "`overlap`: the core goes on beside it. Both keep the scores on chip, which needs a unit that holds "
             "the R rows of a tile (the array emits them interleaved, K keys at a time), where the built unit "
             "holds 3 rows. `memory`: the scores go to external memory as now, and the unit, beside the core, "
             "reads each row back whole (as the built unit takes them) and writes the codes: the scores' bytes "
             "twice more. `hybrid`: on chip, beside the core, the QK^T invocations whose tile store fits the "
             "block RAMs the device has left beside core and unit, the others through memory. The store holds a "
             "tile's R rows as the core's integer scores, the unit's input before its requantization to logits "
             "(`softmax_unit.tile_store_ebr`: one memory per lane of the array's K, R x keys / K scores of the "
             "width a sum of d products of the core's codes needs; SAM ViT's relative-position terms, 2 x side "
             "per row, beside them). Wherever the scores stay on chip (serial, overlap, hybrid), the store's "
             "accesses count in the unit's energy (each score written and read once). LUT4 counts LUT RAM as "
             f"the {LUTRAM_SITES} LUT4 sites of each 16 x 4 cell. {_store_text(rows)} Each ratio is the lower of "
             "the bracket's ends (the moonshot's).", "",
             f"| lanes | unit LUT4 | unit DP16KD | store LUT4 | core + unit + store beyond the device's "
             f"{device['lut4']} LUT4 / "
             f"{device['ebr']} DP16KD | unit's routed Fmax | "
             "serial: speed-up / energy ratio | the unit's share of the time | overlap: speed-up / energy ratio "
             "| the unit's share of the time | memory: speed-up / energy ratio | the unit's share of the time | "
             "hybrid: speed-up / energy ratio | hybrid: block RAMs left for the store, longest rows on chip "
             "(scores of the widest d), share of the scores on chip |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fit = "fits" if r["fits"] else f"{max(r['over']['lut'], 0)} / {max(r['over']['ebr'], 0)} over"
        slow = " (below the clock)" if r["fmax_mhz"] < r["clock_mhz"] else ""
        store = "not built" if r.get("store_lut") is None else r["store_lut"]
        lines.append(f"| {r['lanes']} | {r['lut']} | {r['ebr']} | {store} | {fit} | {r['fmax_mhz']:g} MHz{slow} | "
                     f"{_x(r['serial']['speedup'])} / {_x(r['serial']['energy_ratio'])} | "
                     f"{r['serial']['unit_share']:.0%} | {_x(r['overlap']['speedup'])} / "
                     f"{_x(r['overlap']['energy_ratio'])} | {r['overlap']['unit_share']:.0%} | "
                     f"{_x(r['memory']['speedup'])} / {_x(r['memory']['energy_ratio'])} | "
                     f"{r['memory']['unit_share']:.0%} | {_x(r['hybrid']['speedup'])} / "
                     f"{_x(r['hybrid']['energy_ratio'])} | {max(r['spare_ebr'], 0)} DP16KD, {r['on_chip_keys']} keys "
                     f"({r['score_bits']}-bit), "
                     f"{r['hybrid']['on_chip_share']:.0%} |")
    return lines + [""]


def _store_text(rows: list[dict]) -> str:
    """Whether the tile store's logic is counted: built and synthesized for this core, or priced in block RAM only."""
    sources = sorted({r["store_source"] for r in rows if r.get("store_source")})
    if not sources:
        return ("The store is priced in block RAM only: no synthesis of it for this core (`python "
                "scripts/core_synth.py --block store`), so its logic is not counted.")
    return ("The store is built (`hw.softmax.score_store`) and synthesized beside this core for its largest rows "
            f"({', '.join(sources)}): its LUT4 count in the fit, its LUT4 and FF in the unit's logic energy where "
            "scores stay on chip.")


def _fmt_mhz(v) -> str:
    return f"{v:g} MHz"


def _designs_table(result) -> list[str]:
    lines = ["| design | PE array | clock | clock from | LUT4 | FF | MULT18X18D | DP16KD | resources from |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key in ORDER:
        d = result["designs"].get(key)
        if d is None:
            continue
        c = d["config"]
        lines.append(f"| {d['label']} | {c['rows']}x{c['cols']} | {d['clock_mhz']:g} MHz | {d['clock_source']} | "
                     f"{d['lut4']} | {d['ff']} | {d['dsp']} | {d['ebr'] if d['ebr'] is not None else '—'} | "
                     f"{'; '.join(d['notes'])} |")
    return lines + [""]


def _fit_text(subject: dict, device: dict) -> list[str]:
    """Whether the subject core fits the board's FPGA by its synthesis counts (LUT RAM in the LUT4 sites it
    takes), a fact its ratios do not show."""
    sites = subject["lut4"] + LUTRAM_SITES * subject.get("lutram", 0)
    ebr = subject["ebr"] or 0
    over = {"LUT4 sites": sites - device["lut4"], "DP16KD": ebr - device["ebr"]}
    verdict = ("it fits, with " + " and ".join(f"{-v:,} {k}" for k, v in over.items()) + " to spare"
               if max(over.values()) <= 0 else
               "it does not fit: " + " and ".join(f"{v:,} {k}" for k, v in over.items() if v > 0) + " over, so its "
               "ratios are those of a design larger than the device")
    return [f"By synthesis counts the {subject['label']} takes {sites:,} LUT4 sites ({subject['lut4']:,} LUT4 and "
            f"{LUTRAM_SITES} per DPR16X4) and {ebr} DP16KD of the {device['part']}'s {device['lut4']:,} and "
            f"{device['ebr']}: {verdict}; nothing of it is placed.", ""]


def _timing_table(result, model) -> list[str]:
    m = result["models"][model]
    lines = ["| design | per image | per box | image + box | memory-bound share | cycles (image + box) | "
             "MAC utilization | external bytes | energy (image + box) | images/s | boxes/s | end to end (host "
             "steps included) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in ORDER:
        s = m["designs"].get(key)
        if s is None:
            continue
        e2e = s.get("end_to_end")
        lines.append(
            f"| {result['designs'][key]['label']} | {_s(s['image']['seconds'])} | {_s(s['box']['seconds'])} | "
            f"{_s(s['image_box']['seconds'])} | {s['image_box']['memory_bound_share']:.0%} | "
            f"{s['image_box']['cycles']:,} | {s['image_box']['utilization']:.3f} | "
            f"{s['image_box']['bytes'] / 1e6:,.1f} MB | {_j(s['image_box']['energy_j'])} | "
            f"{s['throughput']['images_per_s']:.3g} | {s['throughput']['boxes_per_s']:.3g} | "
            + (f"{_s(e2e['seconds'])} ({_s(e2e['host_s'])} host), {_j(e2e['energy_j'])}, "
               f"{e2e['images_per_s_sequential']:.3g} img/s ({e2e['images_per_s_pipelined']:.3g} pipelined)"
               if e2e else "—") + " |")
    return lines + [""]


def _energy_table(result, model) -> list[str]:
    m = result["models"][model]
    # the softmax path's column only where a design has one
    parts = [k for k in ENERGY_PARTS if k != "softmax"
             or any(s["image_box"]["energy_parts_j"].get(k) for s in m["designs"].values())]
    lines = ["| design | " + " | ".join(parts) + " | total |", "|---|" + "---|" * (len(parts) + 1)]
    for key in ORDER:
        s = m["designs"].get(key)
        if s is None:
            continue
        p = s["image_box"]["energy_parts_j"]
        lines.append(f"| {result['designs'][key]['label']} | " + " | ".join(_j(p[k]) for k in parts)
                     + f" | {_j(s['image_box']['energy_j'])} |")
    return lines + [""]


def _sensitivity(result, model) -> list[str]:
    """Energy ratio vs each FP32 design with one group of coefficients changed (energy is linear in each)."""
    m = result["models"][model]
    s = m["designs"]["subject"]["image_box"]
    cases = [("as estimated", {}), ("logic toggles (array, lanes, control) x 0.5", {k: 0.5 for k in ("array", "lanes", "control")}),
             ("logic toggles x 2", {k: 2.0 for k in ("array", "lanes", "control")}), ("no clock energy", {"clock": 0.0}),
             ("SDRAM energy / 4", {"sdram": 0.25}), ("SDRAM energy x 0", {"sdram": 0.0}),
             ("block RAM x 2", {"bram": 2.0}), ("DSP x 4 (FPGA factor on hard blocks)", {"dsp": 4.0})]
    extra_static = [0.1, 0.5]
    keys = [k for k in BASELINES if k in m["designs"]]
    lines = ["| coefficients | " + " | ".join(f"energy ratio vs {result['designs'][k]['label']}" for k in keys) + " |",
             "|---|" + "---|" * len(keys)]

    def energy(parts, scale, static_w=0.0, seconds=0.0):
        return sum(parts[k] * scale.get(k, 1.0) for k in ENERGY_PARTS) + static_w * seconds

    for name, scale in cases:
        cells = [_x(energy(m["designs"][k]["image_box"]["energy_parts_j"], scale)
                    / energy(s["energy_parts_j"], scale)) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for watts in extra_static:
        cells = [_x(energy(m["designs"][k]["image_box"]["energy_parts_j"], {}, watts, m["designs"][k]["image_box"]["seconds"])
                    / energy(s["energy_parts_j"], {}, watts, s["seconds"])) for k in keys]
        lines.append(f"| FPGA static power {watts * 1e3:g} mW added | " + " | ".join(cells) + " |")
    return lines + [""]


def _kind_table(result, model) -> list[str]:
    rows = result["models"][model]["rows"]
    keys = [k for k in ORDER if k in rows]
    agg = defaultdict(lambda: defaultdict(lambda: [0, 0, 0.0, 0]))
    for key in keys:
        for r in rows[key]:
            k = agg[(r["part"], class_of(r["kind"]))][key]
            k[0] += r["macs"] * r["count"]
            k[1] += r["cycles"] * r["count"]
            k[2] += r["seconds"] * r["count"]
            k[3] += r["bytes"] * r["count"]
    lines = ["| part | class | " + " | ".join(f"{result['designs'][k]['label']}: Mcycles / util / MB / time"
                                            for k in keys) + " |", "|---|---|" + "---|" * len(keys)]
    for (part, cls), by in sorted((k, v) for k, v in agg.items() if k[1] and any(v.values())):
        if not any(by[k][1] for k in keys):
            continue
        cells = []
        for k in keys:
            macs, cycles, secs, b = by[k]
            pes = result["designs"][k]["config"]["rows"] * result["designs"][k]["config"]["cols"]
            cells.append(f"{cycles / 1e6:,.2f} / {macs / (pes * cycles) if cycles else 0:.2f} / {b / 1e6:,.1f} / "
                         f"{_s(secs)}")
        lines.append(f"| {part} | {cls} | " + " | ".join(cells) + " |")
    return lines + [""]


def _layer_table(result, model, limit=None) -> list[str]:
    rows = result["models"][model]["rows"]
    others = {k: {r["key"]: r for r in rows[k]} for k in ("int8", "fp32") if k in rows}
    lines = ["| invocation | kind | runs | MMAC | cycles | util | MB | core | memory | bound | energy | "
             + " | ".join(f"{result['designs'][k]['label']} cycles / bound" for k in others) + " |",
             "|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(others)]
    for r in rows["subject"][:limit]:
        extra = []
        for k, by in others.items():
            o = by.get(r["key"])
            extra.append(f"{o['cycles']:,} / {o['bound']}" if o else "—")
        grown = f" (timed with {r['grown']})" if r["grown"] else ""
        lines.append(f"| `{r['key']}`{grown} | {r['kind']} | {r['count']} | {r['macs'] / 1e6:,.1f} | {r['cycles']:,} | "
                     f"{r['utilization']:.2f} | {r['bytes'] / 1e6:,.2f} | {_s(r['core_s'])} | {_s(r['memory_s'])} | "
                     f"{r['bound']} | {_j(sum(r['energy_pj'].values()) * 1e-12)} | " + " | ".join(extra) + " |")
    return lines + [""]


def _coefficients(result) -> list[str]:
    lines = ["| coefficient | value | unit | status | source | how |", "|---|---|---|---|---|---|"]
    for c in result["coefficients"].values():
        lines.append(f"| `{c['name']}` | {c['value']:.4g} | {c['unit']} | {c['status']} | {c['source']} | "
                     f"{c['derivation']} |")
    return lines + [""]


def _measured(result, out) -> list[str]:
    m = result["measured"]
    lines = []
    host = m.get("host_subject")
    if host:
        lines.append(f"- Host steps ({host['implementation']}, this machine, median of {host['repeats']}): "
                     f"{_s(host['encoder_s'])} per image, {_s(host['decoder_s'])} per box — `{host['file']}` "
                     f"({host['bundle']}).")
    for key in ("cpu_litemedsam", "cpu_sam_vit_b"):
        c = m.get(key)
        if c:
            lines.append(f"- CPU baseline {c['model']} ({c['weights']}): torch {c['torch']}, {c['threads']} "
                         f"thread(s) of {c['logical_cpus']} ({c['cpu']}), input {c['input_size']}x{c['input_size']}, "
                         f"median of {c['repeats']} after {c['warmup']} warm-up: encoder {_s(c['encoder_s'])}, "
                         f"decoder {_s(c['decoder_s'])} — `{c['file']}`.")
    for key in ("subject", "int8", "fp32"):
        d = result["designs"].get(key)
        if d and d.get("activity"):
            lines.append(f"- Activity of {d['label']}: `{_rel(d['activity'], out)}`.")
    return lines + [""]


def _crosschecks(result) -> list[str]:
    lines = []
    for c in result["crosschecks"]:
        equal = sum(r["equal"] for r in c["rows"])
        lines += [f"`{c['report']}` (core `{c['core']}`): {equal} of {len(c['rows'])} co-simulated layers have the "
                  "same cycle count through the estimate's path (compile + `hw.core.timing`) as the RTL's cycle "
                  "counter.", "", "| layer | kind | RTL cycles | estimate cycles | equal |", "|---|---|---|---|---|"]
        lines += [f"| `{r['layer']}`{' ' + r['op'] if r['op'] else ''} | {r['kind']} | {r['rtl_cycles']:,} | "
                  f"{r['estimate_cycles']:,} | {'yes' if r['equal'] else 'NO'} |" for r in c["rows"]]
        lines.append("")
    if not lines:
        lines = ["No co-simulation report of these bundles in docs/ (`samhw simulate BUNDLE --report ...`).", ""]
    for a in result.get("activity_checks", []):
        lines += [f"The activity runs of {a['design']} with a {a['pes']} PE array (`{a['file']}`): the RTL's cycle "
                  f"counter equals the cycle model on {a['equal']} of {a['cases']} real layer slices.", ""]
    return lines


def write_report(result: dict, out: Path, stem: str = "estimate") -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(result, out, stem)
    d = result["designs"]
    fp, roomy = d["fp32"], d["fp32_roomy"]
    fp_config = CoreConfig.from_dict(fp["config"])
    fp_cols = fp_config.cols
    board = result["board"]
    lines = [f"# Speed and energy from cycle counts: {d['subject']['label']} against FP32, INT8 and the CPU", "",
             f"Generated by `{result['command']}` in {result['wall_s']:.0f} s; do not edit by hand. Numbers: "
             f"[{stem}.json]({stem}.json).", ""]
    lines += ["## Summary", ""]
    for model in MODELS:
        if model in result["models"]:
            lines += _headline(result, model)
    lines += ["Speed-up = baseline time / our time; energy ratio = baseline energy / our energy (> 1: ours is "
              f"faster / uses less). \"Image + box\" is the encoder once and the decoder for one box, on the core only "
              f"(host steps excluded) and with the {board['name']} memory as the roof; \"core's own memory\" is the "
              "cycle model's bus alone (one bus word per cycle). End to end adds the host steps measured on this "
              "machine (the same for every design).", ""]
    lines += ["Published FPGA results, for comparison (their baselines are not ours):", "",
              "| work | model | speed-up | energy | their baseline | source |", "|---|---|---|---|---|---|"]
    lines += [f"| {p['work']} | {p['model']} | {p['speedup']}x | {p['energy']}x ({p['energy_metric']}) | "
              f"{p['baseline']} | {p['source']} |" for p in result["published"]]
    lines += ["", f"Ours: against {fp['label']} on the same LFE5U-85F, same architecture, compiler, tiling and cycle "
              "model (below); LiteMedSAM (bundled weights) and SAM ViT-B shapes, not SAM-L.", ""]
    lines += ["## Designs", "", *_designs_table(result), *_fit_text(d["subject"], board["device"]),
              f"Board `{board['name']}`: external memory {board['memory_bytes_per_s'] / 1e6:g} MB/s "
              f"({board['memory_source']}), the roof every design shares; the cycle model's own memory moves "
              f"{d['subject']['config']['bus_bits']} bits per cycle." if board["memory_bytes_per_s"] else
              f"Board `{board['name']}`: {board['memory_source']}.", ""]
    lines += ["### The FP32 baseline", "",
              f"FP32 lanes (`hw.fp32.Fp32MacLane`, bit-exact with numpy float32, tests/test_fp32.py) take the place "
              f"of the PE array and the integer lanes; everything else (control, buffers, DMA, compiler, tiling, cycle "
              f"model) is the core's. Lane cost and clock are measured (docs/fp32_lane.md, read from "
              f"`{result['resources']['sources'].get('fp32_4x4')}`). {fp['notes'][0]}. The cycle "
              f"model takes power-of-two arrays only, so the baseline is given the next power of two "
              f"({fp['label']}, more than fits: it finishes compute-bound layers sooner, so the speed-up against it "
              f"is conservative) and, as a bracket, {d['fp32_small']['label']} (which fits, with fewer FFs to clock "
              f"while it waits on the memory); an FP32 design at the bound lies between the two, so the moonshot "
              f"takes, for speed and for energy, the lower ratio of the two.", "",
              "How it maps onto the cycle model (`sw/estimate/fp32.py`): the W8A8 uniform bundle's invocations (one "
              "MAC segment per GEMM, as an FP32 dot product) compiled for an 8-bit configuration in which each code "
              "stands for one float32; every LOAD of activations or weights moved 4x (4-byte operands: 8x the bytes "
              "of W4 codes) and every STORE by the words a row of float32 takes over the words the 8-bit program's row "
              f"takes (the core writes each output row vector into whole bus words, or packs the rows of a narrow "
              f"output several to a word: {fp_cols} float32 take {fp_config.out_words_per_row(32)} "
              f"{fp_config.bus_bits}-bit word(s), {fp_config.rows_per_out_word(8)} rows of {fp_cols} 8-bit codes "
              f"share one) before the cycle model times them. "
              f"Its {fp['notes'][2]} (the INT8 core's block RAM bits); the invocations whose smallest job does "
              f"not fit them are timed with the buffers grown and listed below. {roomy['label']} keeps the INT8 "
              f"core's depths in words instead: {roomy['notes'][2]}, so it reloads less than any FP32 design on "
              "this FPGA could; it stands beside the baseline as a bracket. An FP32 lane "
              "keeps 6 sums in flight (latency 15, interleave 6), one product per cycle when a tile gives it 6 "
              "outputs, as the cycle model's one term per PE per cycle assumes.", ""]
    lines += ["## Latency, throughput, energy", ""]
    for model in MODELS:
        if model not in result["models"]:
            continue
        m = result["models"][model]
        lines += [f"### {MODELS[model]}", ""]
        lines += [f"- {n}" for n in m["notes"]]
        lines += ["", *_timing_table(result, model), "Energy per image + box, by part:", "",
                  *_energy_table(result, model), "Energy ratio when the coefficients move:", "",
                  *_sensitivity(result, model), "Per layer class (all invocations of one image and one box):", "",
                  *_kind_table(result, model)]
        for key in ORDER:
            refusals = m["designs"].get(key, {}).get("refusals")
            if refusals:
                lines += [f"The compiler refuses {len(refusals)} invocation(s) on {d[key]['label']}; each is timed "
                          "with the data buffers grown (the larger design it needs):", ""]
                lines += [f"- {x['refusal']} -> timed with {x['grown']}" for x in refusals] + [""]
    lines += ["## Energy coefficients", "",
              "Dynamic energy = toggles x coefficient per resource (LUT4, FF data and clock, MULT18X18D, block RAM, "
              "SDRAM and its I/O), from measured activity; the clock's every FF for every cycle of the time on the "
              "board (the clock runs on while the core waits on the memory); static = power x time "
              "(`sw/estimate/energy.py`). The "
              "FPGA-specific per-resource energies are not public (Lattice's Power Calculator holds them), so the "
              "logic coefficients are ASIC energies scaled by the FPGA/ASIC gap, labelled as such:", "",
              *_coefficients(result)]
    lines += ["## Measured inputs", "",
              "Activity: Verilator toggle coverage (`--coverage-toggle`, `sim/core_runner.py`) of the core's RTL with "
              "a 4x4 PE array on real slices of one layer of each kind (`sim/core_activity.py`, run by `samhw estimate ... --measure activity`), and of one "
              "FP32 lane on real float32 operands (`python -m sim.fp32_activity`); rates are toggles per bit per "
              "event (issued term for the PE array, lane-busy cycle for the lanes, cycle for the rest), applied to "
              "the full design's synthesized LUT4 and FF counts by block (`sw/estimate/activity.py`). The core runs "
              "at the same toggle rate per PE on 16x16 as on 4x4 for the same layer kind: an assumption.", "",
              *_measured(result, out)]
    lines += ["## Cycle counts against the RTL", "", *_crosschecks(result)]
    lines += ["## Every invocation (LiteMedSAM)", "", *_layer_table(result, "litemedsam")]
    if "sam_vit_b" in result["models"]:
        lines += ["## Every invocation (SAM ViT-B shapes)", "", *_layer_table(result, "sam_vit_b")]
    lines += ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    lines += ["## Assumed, not measured", "",
              f"- Clocks: {d['subject']['label']} {d['subject']['clock_source']}; {fp['label']}: {fp['clock_source']} "
              "(a larger array routes slower); INT8 core: the W4 core's clock.",
              "- Energy coefficients marked derived or assumed above; no FPGA static power by default.",
              "- The board memory is taken at its peak rate, and a memory-bound layer is assumed to overlap its "
              "compute fully.",
              f"- Toggle rates of a 4x4 core on slices applied to the {d['subject']['config']['rows']}x"
              f"{d['subject']['config']['cols']} core on whole layers.",
              "- The FP32 designs are tiled by the integer core's compiler; an invocation it refuses on their "
              "buffers is timed with grown buffers (listed above), which favours the FP32 baseline. Their OUT "
              "words hold as many output rows as the 8-bit program packs into one (8 columns: 4 rows of 8-bit codes, "
              "what a word of 32 float32 holds, but 2 of 16-bit host codes and 1 of 32-bit scores), which favours "
              "ours where the OUT buffer limits an FP32 job.",
              *([f"- The INT8 core's resources (no synthesis of {d['int8']['config']['rows']}x"
                 f"{d['int8']['config']['cols']} W8 exists yet; its PE array alone would exceed the LFE5U-85F's LUT4)."]
                if d["int8"]["ebr"] is None else
                [f"- The INT8 core is synthesized, not placed: its {d['int8']['lut4']} LUT4 exceed the LFE5U-85F's "
                 "(a baseline to compare with, not a design for this board)."]),
              "- SAM ViT-B: shapes only (random weight codes, the template bundle's formats), not an exported bundle.",
              ""]
    text = "\n".join(lines)
    write_atomic(out / f"{stem}.md", text)
    write_atomic(out / f"{stem}.json", json.dumps(result, indent=1, default=str) + "\n")
    return [out / f"{stem}.md", out / f"{stem}.json", *plots]
