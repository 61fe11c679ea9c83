"""``samhw estimate``: speed and energy of a bundle on the core, against the FP32 array, the INT8 core
and the CPU, from the cycle model, measured activity and measured CPU time (numpy only; the measured
inputs come from ``measure.py``'s files).

    result = run_estimate(EstimateOptions(bundle="runs/bundle_ahcptq_w4a4", core="w4-16x16", out="docs"))
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from hw.core.config import PRESETS, load_core_config
from hw.core.softmax_driver import softmax_widths
from hw.units.block_ram import EBR_BITS
from sw.bundle import load_bundle
from sw.errors import SamhwError
from sw.models.sam_vit_config import VARIANTS

from . import fp32 as fp32_map
from .activity import CoreActivity, LaneActivity
from .analyze import Analysis, cached_analysis
from .boards import BOARDS, board_builds, core_clock, largest_build, own_build
from .clock_sweep import clock_sweep, held_text, lower_ratios, sweep_text
from .designs import Design, core_blocks, fp32_blocks, scaled_array, to_totals
from .energy import ENERGY_PARTS, dynamic_pj, static_pj
from .perf import call_time
from .resources import INT8_CORE, LUTRAM_SITES, REFERENCE_CORE, ROOT, core_name, load_resources
from .sam_vit import SAM_VIT_B, vit_workload
from .sam_vit import source_digest as vit_source_digest
from .softmax_unit import SoftmaxUnitCost
from .sources import coefficients
from .summary import BASELINES, MOONSHOT, MOONSHOT_BRACKET, image_box
from .workload import bundle_workload


PARTS = ("encoder", "decoder")
TRAFFIC = ("act", "wgt", "param", "store")


@dataclass
class EstimateOptions:
    bundle: str
    core: str = "w4-16x16"
    board: str = "ulx3s-85f"
    out: str = "docs"
    inputs: str = "docs/estimate_inputs"
    int8_bundle: str = "runs/bundle_minmax_w8a8"
    clock_mhz: float | None = None
    fpga_static_mw: float | None = None
    cpu_watts: float | None = None
    recompute: bool = False
    vit: bool = True
    command: str = ""
    log: object = print


@dataclass
class DesignRun:
    design: Design
    analysis: Analysis
    rows: list = field(default_factory=list)     # per invocation
    totals: dict = field(default_factory=dict)   # part -> sums


def _need(path: Path, what: str, how: str) -> Path:
    if not path.is_file():
        raise SamhwError(f"{path}: {what} not found; measure it first with {how}")
    return path


def _inputs(opts: EstimateOptions) -> dict:
    folder = ROOT / opts.inputs if not Path(opts.inputs).is_absolute() else Path(opts.inputs)
    how = f"'samhw estimate {opts.bundle} --core {opts.core} --measure'"
    core = load_core_config(opts.core)
    name = core_name(opts.core)
    files = {
        "activity_subject": folder / f"activity_{name}.json",
        "activity_int8": folder / f"activity_{INT8_CORE}.json",
        "activity_fp32": folder / "activity_fp32_lane.json",
        "cpu_litemedsam": folder / "cpu_litemedsam.json",
        "cpu_sam_vit_b": folder / "cpu_sam_vit_b.json",
        "host_subject": folder / f"host_{Path(opts.bundle).name}.json",
        "resources": folder / "synthesis.json",
    }
    unit_files = (folder / "softmax_unit_synthesis.json", folder / "activity_softmax_unit.json")
    units = SoftmaxUnitCost.variants(*unit_files) if all(f.is_file() for f in unit_files) else []
    if units:
        files.update(softmax_unit_synthesis=unit_files[0], activity_softmax_unit=unit_files[1])
    return {"folder": folder, "files": files, "how": how, "core": core, "core_name": name, "softmax_units": units}


def _designs(opts: EstimateOptions, inp: dict, resources, coeff: dict, log) -> tuple[dict, list]:
    notes = []
    files = inp["files"]
    subject_cfg = inp["core"]
    clock, clock_source = core_clock(opts.board, opts.clock_mhz, inp["core"].digest)
    def need(role):
        if resources.get(role) is None:
            how = (f"python scripts/core_synth.py --config {opts.core} --block {role.removeprefix('subject_')} "
                   f"--out build/core_synth_{inp['core_name']}" if role.startswith("subject_")
                   else "the synthesis scripts")
            raise SamhwError(f"{files['resources']}: no synthesis summary '{role}' for the {inp['core_name']} core "
                             f"(nor under build/); run {how}, then --measure resources")
        return resources.get(role)

    path = need(f"subject_path{subject_cfg.softmax_lanes}") if subject_cfg.softmax_lanes else None
    w4 = core_blocks(need("subject_core"), need("subject_array"), need("subject_pair"), subject_cfg.cols, path)
    act_subject = CoreActivity.load(_need(files["activity_subject"], "core activity", inp["how"]))
    split = [resources.sources["subject_array"], resources.sources["subject_pair"]]
    softmax = None
    if path is not None:
        split.append(resources.sources[f"subject_path{subject_cfg.softmax_lanes}"])
        units = inp["softmax_units"]
        if not units:
            raise SamhwError(f"{inp['folder']}: the softmax path is priced with the unit's measured activity "
                             "(softmax_unit_synthesis.json, activity_softmax_unit.json), which is missing")
        softmax = units[0].path(path, softmax_widths(subject_cfg))
    subject = Design("subject", f"{opts.core} core", subject_cfg, clock, clock_source, w4, need("subject_core")["dsp"],
                     need("subject_core")["ebr"], [f"synthesis: {resources.sources['subject_core']} (block split: "
                                                   f"{', '.join(split)})"], act_subject,
                     lutram=need("subject_core").get("lutram", 0), softmax=softmax)
    int8_cfg = PRESETS[INT8_CORE]
    act_int8 = CoreActivity.load(_need(files["activity_int8"], "INT8 core activity", inp["how"]))
    reference = core_blocks(need("w4_core"), need("w4_array"), need("w4_pair"), int8_cfg.cols)
    int8_blocks = scaled_array(reference, need("w4_pe"), need("w8_pe"))
    scaled_note = (f"the {REFERENCE_CORE} core's blocks with the PE array scaled by one W8 PE "
                   f"({resources.sources['w8_pe']}) / one W4 PE ({resources.sources['w4_pe']})")
    if resources.get("w8_core"):
        # Synthesized whole, the W8 core comes out below its PE array synthesized alone (logic shared across
        # the blocks), so its blocks are not measured apart: the scaled split, brought to the measured totals.
        w8 = need("w8_core")
        int8_blocks = to_totals(int8_blocks, w8["lut4"], w8["ff"])
        int8_dsp, int8_ebr, int8_lutram = w8["dsp"], w8["ebr"], w8.get("lutram", 0)
        int8_note = (f"synthesis: {resources.sources['w8_core']} (its totals; split into PE array, lanes and the "
                     f"rest as {scaled_note})")
    else:
        int8_dsp, int8_ebr, int8_lutram = need("w4_core")["dsp"], None, 0
        int8_note = f"no synthesis of {INT8_CORE}: {scaled_note}"
    int8 = Design("int8", f"{INT8_CORE} core (INT8)", int8_cfg, clock, f"same as the {opts.core} core (assumed)",
                  int8_blocks, int8_dsp, int8_ebr, [int8_note], act_int8, lutram=int8_lutram)
    lane_array = need("fp32_4x4")
    lut_per_lane = lane_array["lut4"] / 16
    # the lanes' LUT RAM (lane_ram "lut") is theirs to give up too, in the LUT4 sites it takes
    lane_ram_sites = LUTRAM_SITES * need("subject_pair").get("lutram", 0) * subject_cfg.cols // 2
    budget = need("subject_core")["lut4"] - w4["core"]["lut"] + lane_ram_sites
    lane_ram_text = f" + {lane_ram_sites} LUT4 sites of the lanes' LUT RAM" if lane_ram_sites else ""
    bound = fp32_map.lanes_by_resources(budget, inp["device"]["dsp"], lut_per_lane, 3)
    act_fp32 = LaneActivity.load(_need(files["activity_fp32"], "FP32 lane activity", inp["how"]))
    fp32_clock = lane_array["fmax_mhz"]
    designs = {"subject": subject, "int8": int8}
    rows, cols = fp32_map.fp32_array(bound["lanes"])
    small = (rows // 2, cols) if rows >= cols else (rows, cols // 2)
    fitting = fp32_map.FITTING_SHRINK
    variants = [("fp32", rows, cols, fitting, ""), ("fp32_small", *small, fitting, ""),
                ("fp32_roomy", rows, cols, 1, f", {fitting}x buffers")]
    for key, r, c, shrink, suffix in variants:
        config = fp32_map.fp32_model_config(int8_cfg, r, c, shrink)
        mapping = fp32_map.Fp32Mapping(config, bound, r, c)
        blocks = fp32_blocks(w4, lane_array, 16, r * c)
        over = "exceeds" if r * c > bound["lanes"] else "fits within"
        designs[key] = Design(
            key, f"FP32 {r}x{c} ({r * c} lanes{suffix})", config, fp32_clock,
            f"measured: routed Fmax of the FP32 4x4 lane array ({resources.sources['fp32_4x4']})", blocks,
            r * c * 3, None,
            [f"{r * c} FP32 lanes ({over} the iso-resource bound of {bound['lanes']} lanes: {bound['by_lut']} by LUT4 "
             f"= ({need('subject_core')['lut4']} core LUT4 - {w4['core']['lut']} outside the PE array and lanes"
             f"{lane_ram_text}) / "
             f"{lut_per_lane:.0f} per lane, {bound['by_dsp']} by MULT18X18D = {inp['device']['dsp']} / 3)",
             f"per lane: the 4x4 lane array's LUT4 and FF / 16 ({resources.sources['fp32_4x4']}); the rest of the "
             f"design: the {opts.core} core's control, buffers and DMA",
             _fp32_buffer_note(config, inp["device"])],
            act_fp32, act_subject, mapping, True, r * c)
    return designs, notes


def _fp32_buffer_note(config, device: dict) -> str:
    floats = config.bus_bits // fp32_map.MODEL_CODE_BITS
    words = (config.act_words, config.wgt_words, config.out_words)
    mbit = sum(words) * floats * fp32_map.FP32_BITS / 1e6
    device_mbit = device["ebr"] * EBR_BITS / 1e6
    fits = "fits in" if mbit <= device_mbit else "exceeds"
    return (f"ACT / WGT / OUT buffers of {' / '.join(map(str, words))} words of {floats} float32: {mbit:.2f} Mbit, "
            f"which {fits} the {device['part']}'s {device['ebr']} block RAMs ({device_mbit:.2f} Mbit)")


def _run(design: Design, analysis: Analysis, board, coeff: dict) -> DesignRun:
    run = DesignRun(design, analysis)
    zero = lambda: {"seconds": 0.0, "core_s": 0.0, "memory_s": 0.0, "cycles": 0, "macs": 0, "bytes": 0,
                    "terms": 0, "memory_bound_s": 0.0, **{k: 0.0 for k in ENERGY_PARTS},
                    **{f"bytes_{k}": 0 for k in TRAFFIC}, "bytes_store_dense": 0.0, "out_elements": 0}
    run.totals = {p: zero() for p in PARTS}
    for r in analysis.results:
        t = call_time(r.cost, design.clock_mhz, board.memory_bytes_per_s)
        dyn, source = dynamic_pj(design, r.cost, r.kind, coeff, t["seconds"] * design.clock_mhz * 1e6)
        dyn["static"] = static_pj(t["seconds"], coeff)
        row = {"key": r.key, "layer": r.layer, "op": r.op, "kind": r.kind, "part": r.part, "count": r.count,
               "macs": r.cost.macs, "cycles": r.cost.cycles, "bytes": r.cost.bytes, "terms": r.cost.terms,
               "utilization": r.cost.macs / (design.config.pes * r.cost.cycles) if r.cost.cycles else 0.0,
               **t, "energy_pj": dyn, "activity_from": source, "refusal": r.refusal, "grown": r.grown}
        run.rows.append(row)
        tot = run.totals[r.part]
        for k in ("seconds", "core_s", "memory_s"):
            tot[k] += t[k] * r.count
        tot["memory_bound_s"] += t["seconds"] * r.count if t["bound"] == "memory" else 0.0
        for k in ("cycles", "macs", "bytes", "terms"):
            tot[k] += row[k] * r.count
        for k, v in dyn.items():
            tot[k] += v * r.count
        for k in ("act", "wgt", "param"):
            tot[f"bytes_{k}"] += r.cost.load_beats[k] * r.cost.bus_bytes * r.count
        tot["bytes_store"] += r.cost.write_bytes * r.count
        tot["bytes_store_dense"] += r.cost.dense_store_bytes * r.count
        tot["out_elements"] += r.cost.out_elements * r.count
        # by the host step that reads them (the bytes ratio's bounds per step moved on chip, summary.py)
        for k, v in ((f"bytes_store_read_by_{r.read_by}", r.cost.write_bytes),
                     (f"out_elements_read_by_{r.read_by}", r.cost.out_elements)):
            tot[k] = tot.get(k, 0) + v * r.count
    for tot in run.totals.values():
        tot["energy_pj"] = sum(tot[k] for k in ENERGY_PARTS)
    return run


def run_estimate(opts: EstimateOptions) -> dict:
    start = time.perf_counter()
    log = opts.log
    if opts.board not in BOARDS:
        raise SamhwError(f"unknown board '{opts.board}' (boards: {', '.join(BOARDS)})")
    board = BOARDS[opts.board]
    inp = _inputs(opts)
    inp["device"] = board.device
    coeff_records = coefficients()
    if opts.fpga_static_mw is not None:
        coeff_records["fpga_static"] = _given(coeff_records["fpga_static"], opts.fpga_static_mw, "--fpga-static-mw")
    if opts.cpu_watts is not None:
        coeff_records["cpu_watts"] = _given(coeff_records["cpu_watts"], opts.cpu_watts, "--cpu-watts")
    coeff = {k: v.value for k, v in coeff_records.items()}
    resources = load_resources(inp["files"]["resources"], core=inp["core_name"], digest=inp["core"].digest)
    designs, notes = _designs(opts, inp, resources, coeff, log)
    cache = inp["folder"] / "analyses"
    read = not opts.recompute

    bundle = load_bundle(opts.bundle)
    subject_workload = bundle_workload(bundle, None if opts.recompute else cache)
    log(f"{len(subject_workload.calls)} invocations of {subject_workload.name} "
        + (f"(list from {Path(subject_workload.cache).name})" if subject_workload.cache
           else f"recorded in {subject_workload.record_seconds:.1f} s"))
    int8_path = Path(opts.int8_bundle)
    int8_bundle = load_bundle(int8_path) if int8_path.is_dir() else None
    int8_identity = None
    if int8_bundle is not None:
        from hw.compiler.model import bundle_identity
        int8_identity = bundle_identity(int8_bundle)
    int8_cache: dict = {}

    def int8_workload():
        if "w" not in int8_cache:
            if int8_bundle is None:
                raise SamhwError(f"{int8_path}: the INT8 bundle is needed (its analyses are not cached)")
            int8_cache["w"] = bundle_workload(int8_bundle, None if opts.recompute else cache)
        return int8_cache["w"]

    models = {}
    # LiteMedSAM (the bundle's model); every analysis from the cache when its key matches
    analyses = {"subject": cached_analysis("litemedsam_subject", subject_workload.identity, designs["subject"].config,
                                           lambda: subject_workload, None, cache, read)}
    a = analyses["subject"]
    log(f"{designs['subject'].label}: {len(a.results)} invocations, "
        + (f"from {Path(a.cache).name}" if a.from_cache else f"timed in {a.seconds:.1f} s"))
    if int8_identity is None:
        raise SamhwError(f"{int8_path}: INT8 bundle not found (--int8-bundle)")
    for key in BASELINES:
        d = designs[key]
        analyses[key] = cached_analysis(f"litemedsam_{key}", int8_identity, d.config, int8_workload, d.mapping, cache,
                                        read)
        log(f"{d.label}: " + (f"from {Path(analyses[key].cache).name}" if analyses[key].from_cache
                              else f"timed in {analyses[key].seconds:.1f} s"))
    models["litemedsam"] = {k: _run(designs[k], a, board, coeff) for k, a in analyses.items()}
    if opts.vit:
        vit = {}
        for key in ("subject", *BASELINES):
            d = designs[key]
            ident = {"shapes": repr(VARIANTS[SAM_VIT_B]), "code": vit_source_digest(),
                     "template": subject_workload.identity if key == "subject" else int8_identity}
            build = ((lambda: vit_workload(bundle, subject_workload)) if key == "subject"
                     else (lambda: vit_workload(int8_bundle, int8_workload())))
            vit[key] = cached_analysis(f"sam_vit_b_{key}", ident, d.config, build, d.mapping, cache, read)
            log(f"sam_vit_b on {d.label}: " + (f"from {Path(vit[key].cache).name}" if vit[key].from_cache
                                                else f"timed in {vit[key].seconds:.1f} s"))
        models["sam_vit_b"] = {k: _run(designs[k], a, board, coeff) for k, a in vit.items()}

    measured = _measured(inp, opts)
    workloads = {Path(opts.bundle).resolve(): lambda: subject_workload}
    if int8_bundle is not None:
        workloads[int8_path.resolve()] = int8_workload
    checks = _crosschecks(workloads, log)
    result = _summarize(opts, board, designs, models, measured, coeff_records, resources, inp, checks, notes)
    _measured_clock_bracket(opts.board, designs["subject"], models, board, coeff, result)
    _sweep_clock(opts.board, designs["subject"], models, board, coeff, result)
    result["wall_s"] = time.perf_counter() - start
    return result


def _given(record, value, flag):
    import dataclasses
    return dataclasses.replace(record, value=float(value), status="given", derivation=f"given with {flag}")


def _measured(inp: dict, opts: EstimateOptions) -> dict:
    out = {}
    for key in ("cpu_litemedsam", "cpu_sam_vit_b", "host_subject"):
        path = inp["files"][key]
        out[key] = json.loads(path.read_text()) if path.is_file() else None
        if out[key] is not None:
            out[key]["file"] = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    return out


def _crosschecks(workloads: dict, log) -> list:
    """Cosim reports of the estimate's bundles: their layers' cycles through the estimate's path vs the RTL's."""
    from .crosscheck import crosscheck, parse_cosim_report

    out = []
    for path in sorted((ROOT / "docs").glob("core_cosim_*.md")):
        report = parse_cosim_report(path)
        if report is None or report["config"] is None:
            continue
        workload = workloads.get((ROOT / report["bundle"]).resolve())
        if workload is None:
            continue
        rows = crosscheck(report, workload())
        out.append({"report": str(path.relative_to(ROOT)), "core": report["core"], "rows": rows})
        log(f"cross-check {path.name} ({report['core']}): {sum(r['equal'] for r in rows)}/{len(rows)} layers' "
            "cycles equal the RTL's")
    return out


def _measured_clock_bracket(board_name: str, subject: Design, models: dict, board, coeff: dict, result: dict) -> None:
    """When the subject's clock is assumed, its ratios against the FP32 array again at the post-route Fmax of
    the largest core built for the board: what the assumption is worth."""
    largest = largest_build(board_builds(board_name))
    if not subject.clock_source.startswith("assumed") or largest is None:
        return
    slower = dataclasses.replace(subject, clock_mhz=largest["fmax_mhz"])
    for model, runs in models.items():
        s, b = image_box(_run(slower, runs["subject"].analysis, board, coeff)), image_box(runs["fp32"])
        result["models"][model]["measured_clock"] = {
            **largest, "speedup": b["seconds"] / s["seconds"], "energy_ratio": b["energy_pj"] / s["energy_pj"],
            "against": runs["fp32"].design.label}


def _sweep_clock(board_name: str, subject: Design, models: dict, board, coeff: dict, result: dict) -> None:
    """The moonshot's ratios with the subject retimed across a range of clocks (``clock_sweep``), appended
    to the moonshot's text: the clock its verdict rests on; where the core's clock is below the FP32
    designs', its ratios again with theirs held to it."""
    builds = board_builds(board_name)
    built = largest_build(builds)
    routed = subject.clock_source.startswith("post-route")
    own = own_build(builds, subject.config.digest) if routed else None
    for model, runs in models.items():
        moon = result["models"][model].get("moonshot")
        if moon is None:
            continue
        bracket = [runs[k] for k in MOONSHOT_BRACKET if k in runs]
        ends = {r.design.label: image_box(r) for r in bracket}

        def held(mhz, bracket=bracket, ends=ends):
            return {r.design.label: ends[r.design.label] if r.design.clock_mhz <= mhz else image_box(
                _run(dataclasses.replace(r.design, clock_mhz=mhz), r.analysis, board, coeff)) for r in bracket}
        retime = lambda mhz, a=runs["subject"].analysis: image_box(  # noqa: E731
            _run(dataclasses.replace(subject, clock_mhz=mhz), a, board, coeff))
        sweep = clock_sweep(retime, ends, MOONSHOT, held=held)
        moon["clock_sweep"] = {**sweep, "clock_mhz": subject.clock_mhz, "built": built}
        moon["text"] += sweep_text(sweep, subject.clock_mhz, built, routed)
        if any(r.design.clock_mhz > subject.clock_mhz for r in bracket):
            ratios = lower_ratios(held(subject.clock_mhz), image_box(runs["subject"]))
            moon["held_clock"] = {"speedup": ratios[0], "energy_ratio": ratios[1], "clock_mhz": subject.clock_mhz}
            moon["text"] += held_text(ratios, subject.clock_mhz, own[1].get("critical_path") if own else None)


def _summarize(opts, board, designs, models, measured, coeff_records, resources, inp, checks, notes) -> dict:
    from .summary import summarize
    return summarize(opts, board, designs, models, measured, coeff_records, resources, inp, checks, notes)
